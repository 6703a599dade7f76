/* Every exported function of the C ABI, through the real compiled library: valid use, NULL arguments,
 * zero-length and too-small buffers, garbage input, a full handshake and message exchange between two
 * identities created here, and nodes on loopback (channels between nodes, listeners, mailboxes with
 * timeouts and pollable descriptors, a relay reached by name, shutdown). */
#define _GNU_SOURCE /* memmem, strcasestr (the secret scan); includes POSIX 2008 */

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "check.h"

#define NOW 1800000000u
#define BIG 4096

/* Accepts any peer that proves an identity: said explicitly, never implied by NULL. */
static const char *const TRUST_ANY[] = {LATCHKEY_TRUST_ANY};

static const char *const CORE_NAMES[] = {
    "Ok",          "DecodeError",   "BufferTooSmall", "MessageTooLarge",    "KeyNotFound",
    "WrongKeyType", "InvalidPublicKey", "InvalidSignature", "InvalidHistory", "HistoryMismatch",
    "InvalidAttestation", "Expired", "UntrustedPeer", "DecryptFailed", "Replay",
    "StaleMessage", "TooFarAhead", "NonceExhausted", "InvalidState", "VaultError",
    "CryptoError",
};

static bool starts_with(const char *text, const char *prefix) {
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

static bool contains(const uint8_t *bytes, size_t len, const char *needle) {
    size_t needle_len = strlen(needle);
    for (size_t i = 0; i + needle_len <= len; i++) {
        if (memcmp(bytes + i, needle, needle_len) == 0) {
            return true;
        }
    }
    return false;
}

static void test_version_and_error_names(void) {
    const char *version = latchkey_version();
    CHECK(version != NULL && strlen(version) >= 5 && version[0] >= '0' && version[0] <= '9');
    CHECK(strchr(version, '.') != NULL);

    /* Core codes are 0, -1 ... -20 and keep the core's names. */
    for (int i = 0; i <= 20; i++) {
        CHECK(strcmp(latchkey_error_name(-i), CORE_NAMES[i]) == 0);
    }
    CHECK(LATCHKEY_ERR_UNTRUSTED_PEER == -12);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_NULL_ARGUMENT), "NullArgument") == 0);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_INVALID_UTF8), "InvalidUtf8") == 0);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_INVALID_ARGUMENT), "InvalidArgument") == 0);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_PANIC), "Panic") == 0);
    CHECK(strcmp(latchkey_error_name(1), "Unknown") == 0);
    CHECK(strcmp(latchkey_error_name(-24), "Unknown") == 0);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_HISTORY_ROLLBACK), "HistoryRollback") == 0);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_HISTORY_FORK), "HistoryFork") == 0);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_KEY_LIFETIME_EXCEEDED), "KeyLifetimeExceeded") == 0);
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_UNKNOWN_PEER), "UnknownPeer") == 0);
    CHECK(strcmp(latchkey_error_name(INT32_MIN), "Unknown") == 0);
}

static void test_last_error(void) {
    size_t count = 0;
    CHECK_STATUS(latchkey_vault_key_count(NULL, &count), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(strcmp(latchkey_last_error(), "NullArgument: `vault` must not be NULL") == 0);
    /* Reading it twice does not clear it. */
    CHECK(starts_with(latchkey_last_error(), "NullArgument"));

    const LatchkeyVault *vault = NULL;
    CHECK_OK(latchkey_vault_new(&vault));
    CHECK(strcmp(latchkey_last_error(), "") == 0);

    /* The rule (docs/C-API.md): every function clears it on entry, the _free functions too (they return no
     * status, so a message left over would describe an earlier call); only the four information functions
     * leave it alone, so a status can be named and its message read in any order. */
    CHECK_STATUS(latchkey_vault_key_count(NULL, &count), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(latchkey_version()[0] != '\0');
    CHECK(strcmp(latchkey_error_name(LATCHKEY_ERR_NULL_ARGUMENT), "NullArgument") == 0);
    CHECK(latchkey_error_description(LATCHKEY_ERR_NULL_ARGUMENT)[0] != '\0');
    CHECK(starts_with(latchkey_last_error(), "NullArgument"));
    latchkey_identity_free(NULL);
    CHECK(strcmp(latchkey_last_error(), "") == 0);
    CHECK_STATUS(latchkey_vault_key_count(NULL, &count), LATCHKEY_ERR_NULL_ARGUMENT);
    latchkey_vault_free(vault);
    CHECK(strcmp(latchkey_last_error(), "") == 0);
    CHECK_STATUS(latchkey_vault_key_count(NULL, &count), LATCHKEY_ERR_NULL_ARGUMENT);
    latchkey_handshake_free(NULL);
    latchkey_channel_free(NULL);
    CHECK(strcmp(latchkey_last_error(), "") == 0);
}

static void test_vault(void) {
    CHECK_STATUS(latchkey_vault_new(NULL), LATCHKEY_ERR_NULL_ARGUMENT);

    const LatchkeyVault *vault = NULL;
    CHECK_OK(latchkey_vault_new(&vault));
    REQUIRE(vault != NULL);
    size_t count = 99;
    CHECK_OK(latchkey_vault_key_count(vault, &count));
    CHECK(count == 0);
    CHECK_STATUS(latchkey_vault_key_count(vault, NULL), LATCHKEY_ERR_NULL_ARGUMENT);

    const LatchkeyIdentity *identity = NULL;
    CHECK_OK(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &identity));
    CHECK_OK(latchkey_vault_key_count(vault, &count));
    CHECK(count == 2); /* the signing key and the channel static key */

    /* The identity keeps its keys when the vault handle goes first. */
    latchkey_vault_free(vault);
    char identifier[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0;
    CHECK_OK(latchkey_identity_identifier(identity, identifier, sizeof identifier, &len));
    latchkey_identity_free(identity);

    latchkey_vault_free(NULL);
}

static void test_identity_create_and_identifier(void) {
    const LatchkeyVault *vault = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    const LatchkeyIdentity *identity = (const LatchkeyIdentity *)vault; /* garbage the call must reset */

    CHECK_STATUS(latchkey_identity_create(NULL, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &identity),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(identity == NULL);
    CHECK_STATUS(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_create(vault, 7, 0, 0, NOW, &identity), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(identity == NULL);
    CHECK(starts_with(latchkey_last_error(), "InvalidArgument: unknown signing algorithm 7"));

    const LatchkeyIdentity *p256 = NULL;
    CHECK_OK(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ECDSA_P256, 3600, 600, NOW, &p256));
    CHECK(p256 != NULL);

    /* The system clock (now = 0) works too. */
    CHECK_OK(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &identity));
    REQUIRE(identity != NULL);

    /* Size query, too small (nothing written), exact fit. */
    char buffer[LATCHKEY_IDENTIFIER_SIZE + 8];
    size_t len = 12345;
    CHECK_STATUS(latchkey_identity_identifier(identity, NULL, 0, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    memset(buffer, 'X', sizeof buffer);
    CHECK_STATUS(latchkey_identity_identifier(identity, buffer, LATCHKEY_IDENTIFIER_SIZE - 1, &len),
                 LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    CHECK(buffer[0] == 'X' && buffer[LATCHKEY_IDENTIFIER_SIZE - 2] == 'X');
    CHECK(starts_with(latchkey_last_error(), "BufferTooSmall"));
    CHECK_OK(latchkey_identity_identifier(identity, buffer, LATCHKEY_IDENTIFIER_SIZE, &len));
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    CHECK(strlen(buffer) == LATCHKEY_IDENTIFIER_SIZE - 1 && starts_with(buffer, "lk"));
    CHECK(strspn(buffer + 2, "0123456789abcdef") == 64);

    char other[LATCHKEY_IDENTIFIER_SIZE];
    CHECK_OK(latchkey_identity_identifier(p256, other, sizeof other, &len));
    CHECK(strcmp(buffer, other) != 0);

    CHECK_STATUS(latchkey_identity_identifier(NULL, buffer, sizeof buffer, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_identifier(identity, buffer, sizeof buffer, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_identifier(identity, NULL, sizeof buffer, &len), LATCHKEY_ERR_NULL_ARGUMENT);

    size_t changes = 0;
    CHECK_OK(latchkey_identity_change_count(identity, &changes));
    CHECK(changes == 1);
    CHECK_STATUS(latchkey_identity_change_count(NULL, &changes), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_change_count(identity, NULL), LATCHKEY_ERR_NULL_ARGUMENT);

    latchkey_identity_free(identity);
    latchkey_identity_free(p256);
    latchkey_identity_free(NULL);
    latchkey_vault_free(vault);
}

static void fill_pattern(uint8_t *bytes, size_t len, uint8_t start) {
    for (size_t i = 0; i < len; i++) {
        bytes[i] = (uint8_t)(start + i);
    }
}

static void test_identity_from_secrets(void) {
    const LatchkeyVault *vault = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    uint8_t seed[33], secret[33];
    fill_pattern(seed, sizeof seed, 1);
    fill_pattern(secret, sizeof secret, 100);
    const LatchkeyIdentity *a = NULL, *b = NULL, *bad = NULL;

    CHECK_STATUS(latchkey_identity_from_secrets(vault, seed, 31, secret, 32, 0, 0, NOW, &bad),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(latchkey_last_error(), "InvalidArgument: `signing_seed` must be 32 bytes, got 31") == 0);
    CHECK_STATUS(latchkey_identity_from_secrets(vault, seed, 32, secret, 33, 0, 0, NOW, &bad),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_identity_from_secrets(vault, seed, 0, secret, 32, 0, 0, NOW, &bad),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_identity_from_secrets(vault, NULL, 32, secret, 32, 0, 0, NOW, &bad),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_from_secrets(vault, seed, 32, NULL, 32, 0, 0, NOW, &bad),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_from_secrets(NULL, seed, 32, secret, 32, 0, 0, NOW, &bad),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, NOW, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(bad == NULL);

    /* Same secrets and time: same identifier and byte-identical history. */
    CHECK_OK(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 31536000, 86400, NOW, &a));
    CHECK_OK(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 31536000, 86400, NOW, &b));
    REQUIRE(a != NULL && b != NULL);
    char ida[LATCHKEY_IDENTIFIER_SIZE], idb[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0;
    CHECK_OK(latchkey_identity_identifier(a, ida, sizeof ida, &len));
    CHECK_OK(latchkey_identity_identifier(b, idb, sizeof idb, &len));
    CHECK(strcmp(ida, idb) == 0);
    uint8_t ha[BIG], hb[BIG];
    size_t la = 0, lb = 0;
    CHECK_OK(latchkey_identity_export_history(a, ha, sizeof ha, &la));
    CHECK_OK(latchkey_identity_export_history(b, hb, sizeof hb, &lb));
    CHECK(la == lb && la > 0 && memcmp(ha, hb, la) == 0);

    latchkey_identity_free(a);
    latchkey_identity_free(b);
    latchkey_vault_free(vault);
}

static void test_history_and_rotation(void) {
    const LatchkeyVault *vault = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    const LatchkeyIdentity *identity = NULL, *stranger = NULL;
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &identity) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &stranger) == LATCHKEY_OK);

    char identifier[LATCHKEY_IDENTIFIER_SIZE], checked[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0;
    CHECK_OK(latchkey_identity_identifier(identity, identifier, sizeof identifier, &len));

    /* Export: size query, too small leaves the buffer untouched, then the real thing. */
    uint8_t first[BIG], rotated[BIG], foreign[BIG];
    size_t first_len = 0, rotated_len = 0, foreign_len = 0, needed = 0;
    CHECK_STATUS(latchkey_identity_export_history(identity, NULL, 0, &needed), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(needed > 64 && needed < BIG);
    memset(first, 0xEE, sizeof first);
    CHECK_STATUS(latchkey_identity_export_history(identity, first, needed - 1, &len),
                 LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == needed && first[0] == 0xEE && first[needed - 2] == 0xEE);
    CHECK_OK(latchkey_identity_export_history(identity, first, needed, &first_len));
    CHECK(first_len == needed);
    CHECK_STATUS(latchkey_identity_export_history(NULL, first, sizeof first, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_export_history(identity, first, sizeof first, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_OK(latchkey_identity_export_history(stranger, foreign, sizeof foreign, &foreign_len));

    /* The history alone proves the identifier. */
    CHECK_OK(latchkey_history_identifier(first, first_len, checked, sizeof checked, &len));
    CHECK(strcmp(checked, identifier) == 0);
    CHECK_STATUS(latchkey_history_identifier(first, first_len, checked, 10, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    CHECK_STATUS(latchkey_history_identifier(NULL, 0, checked, sizeof checked, &len), LATCHKEY_ERR_DECODE_ERROR);
    CHECK_STATUS(latchkey_history_identifier(NULL, 5, checked, sizeof checked, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_history_identifier(first, first_len, checked, sizeof checked, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    {
        const uint8_t garbage[] = {0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02};
        LatchkeyStatus status = latchkey_history_identifier(garbage, sizeof garbage, checked, sizeof checked, &len);
        CHECK(status == LATCHKEY_ERR_DECODE_ERROR || status == LATCHKEY_ERR_INVALID_HISTORY);
        CHECK(len == 0);
        /* A history with one flipped bit in its signed body no longer verifies. */
        uint8_t tampered[BIG];
        memcpy(tampered, first, first_len);
        tampered[first_len / 2] ^= 0x01;
        CHECK(latchkey_history_identifier(tampered, first_len, checked, sizeof checked, &len) < 0);
        /* Truncated. */
        CHECK(latchkey_history_identifier(first, first_len - 1, checked, sizeof checked, &len) < 0);
    }

    /* Rotation: bad seed lengths change nothing; a fresh and a seeded rotation each append a change. */
    uint8_t seed[32];
    fill_pattern(seed, sizeof seed, 42);
    CHECK_STATUS(latchkey_identity_rotate(identity, seed, 31, NOW + 10), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_identity_rotate(identity, NULL, 32, NOW + 10), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_identity_rotate(NULL, NULL, 0, NOW + 10), LATCHKEY_ERR_NULL_ARGUMENT);
    size_t changes = 0;
    CHECK_OK(latchkey_identity_change_count(identity, &changes));
    CHECK(changes == 1);
    CHECK_OK(latchkey_identity_rotate(identity, NULL, 0, NOW + 10));
    CHECK_OK(latchkey_identity_rotate(identity, seed, sizeof seed, NOW + 20));
    CHECK_OK(latchkey_identity_change_count(identity, &changes));
    CHECK(changes == 3);
    CHECK_OK(latchkey_identity_identifier(identity, checked, sizeof checked, &len));
    CHECK(strcmp(checked, identifier) == 0); /* the identifier survives rotation */
    CHECK_OK(latchkey_identity_export_history(identity, rotated, sizeof rotated, &rotated_len));
    CHECK(rotated_len > first_len);

    /* A peer that knew the first history accepts the rotated one, and nothing else. */
    CHECK_OK(latchkey_verify_history_update(first, first_len, rotated, rotated_len, checked, sizeof checked, &len));
    CHECK(strcmp(checked, identifier) == 0);
    CHECK_OK(latchkey_verify_history_update(first, first_len, first, first_len, checked, sizeof checked, &len));
    CHECK_STATUS(latchkey_verify_history_update(rotated, rotated_len, first, first_len, checked, sizeof checked, &len),
                 LATCHKEY_ERR_HISTORY_MISMATCH);
    CHECK_STATUS(latchkey_verify_history_update(first, first_len, foreign, foreign_len, checked, sizeof checked, &len),
                 LATCHKEY_ERR_HISTORY_MISMATCH);
    CHECK_STATUS(latchkey_verify_history_update(first, first_len, rotated, rotated_len, NULL, 0, &len),
                 LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    CHECK_STATUS(latchkey_verify_history_update(NULL, 3, rotated, rotated_len, checked, sizeof checked, &len),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_verify_history_update(first, first_len, NULL, 3, checked, sizeof checked, &len),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_verify_history_update(first, first_len, rotated, 0, checked, sizeof checked, &len),
                 LATCHKEY_ERR_DECODE_ERROR);
    CHECK_STATUS(latchkey_verify_history_update(first, first_len, rotated, rotated_len, checked, sizeof checked, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    {
        uint8_t garbage[64];
        fill_pattern(garbage, sizeof garbage, 7);
        CHECK(latchkey_verify_history_update(first, first_len, garbage, sizeof garbage, checked, sizeof checked, &len) < 0);
    }

    latchkey_identity_free(identity);
    latchkey_identity_free(stranger);
    latchkey_vault_free(vault);
}

/* Two identities and handshakes that trust each other, ready to run. */
typedef struct {
    const LatchkeyVault *vault;
    const LatchkeyIdentity *alice, *bob;
    char alice_id[LATCHKEY_IDENTIFIER_SIZE], bob_id[LATCHKEY_IDENTIFIER_SIZE];
    LatchkeyHandshake *initiator, *responder;
} Pair;

static void pair_identities(Pair *pair) {
    size_t len = 0;
    memset(pair, 0, sizeof *pair);
    REQUIRE(latchkey_vault_new(&pair->vault) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_create(pair->vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &pair->alice) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_create(pair->vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &pair->bob) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_identifier(pair->alice, pair->alice_id, LATCHKEY_IDENTIFIER_SIZE, &len) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_identifier(pair->bob, pair->bob_id, LATCHKEY_IDENTIFIER_SIZE, &len) == LATCHKEY_OK);
}

static void pair_free(Pair *pair) {
    latchkey_handshake_free(pair->initiator);
    latchkey_handshake_free(pair->responder);
    latchkey_identity_free(pair->alice);
    latchkey_identity_free(pair->bob);
    latchkey_vault_free(pair->vault);
}

static void test_handshake_arguments(void) {
    Pair pair;
    pair_identities(&pair);
    LatchkeyHandshake *handshake = (LatchkeyHandshake *)&pair; /* garbage the call must reset */
    const char *trusted[] = {pair.bob_id};

    CHECK_STATUS(latchkey_handshake_new(NULL, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &handshake),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(handshake == NULL);
    CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_new(pair.alice, 2, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &handshake),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, 99, TRUST_ANY, 1, NOW, &handshake),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, NULL, 1, NOW, &handshake),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    {
        const char *with_null[] = {pair.bob_id, NULL};
        CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, with_null, 2, NOW, &handshake),
                     LATCHKEY_ERR_NULL_ARGUMENT);
        const char *not_utf8[] = {"lk\xff\xfe"};
        CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, not_utf8, 1, NOW, &handshake),
                     LATCHKEY_ERR_INVALID_UTF8);
        const char *malformed[] = {"lk1234"};
        CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, malformed, 1, NOW, &handshake),
                     LATCHKEY_ERR_DECODE_ERROR);
        const char *empty[] = {""};
        CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, empty, SIZE_MAX, NOW, &handshake),
                     LATCHKEY_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, empty, 1, NOW, &handshake),
                     LATCHKEY_ERR_DECODE_ERROR);
    }
    CHECK(handshake == NULL);

    CHECK_OK(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, trusted, 1, NOW, &handshake));
    REQUIRE(handshake != NULL);

    uint8_t secret[32], out[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t len = 0;
    bool finished = true;
    fill_pattern(secret, sizeof secret, 9);
    CHECK_STATUS(latchkey_handshake_is_finished(NULL, &finished), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_is_finished(handshake, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_OK(latchkey_handshake_is_finished(handshake, &finished));
    CHECK(!finished);
    CHECK_STATUS(latchkey_handshake_step(NULL, NULL, 0, out, sizeof out, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_step(handshake, NULL, 0, out, sizeof out, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_step(handshake, NULL, 0, NULL, sizeof out, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_step(handshake, NULL, 5, out, sizeof out, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_hash(NULL, out, sizeof out, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_hash(handshake, out, 31, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_HANDSHAKE_HASH_LEN);
    CHECK_OK(latchkey_handshake_hash(handshake, out, sizeof out, &len));
    CHECK(len == LATCHKEY_HANDSHAKE_HASH_LEN);

    LatchkeyChannel *channel = (LatchkeyChannel *)&pair;
    CHECK_STATUS(latchkey_handshake_into_channel(handshake, &channel), LATCHKEY_ERR_INVALID_STATE);
    CHECK(channel == NULL);
    CHECK_STATUS(latchkey_handshake_into_channel(NULL, &channel), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_into_channel(handshake, NULL), LATCHKEY_ERR_NULL_ARGUMENT);

    /* An initiator must write first: a message handed to it now is out of turn. */
    {
        const uint8_t early[] = {1, 2, 3};
        CHECK_STATUS(latchkey_handshake_step(handshake, early, sizeof early, out, sizeof out, &len),
                     LATCHKEY_ERR_INVALID_STATE);
    }
    latchkey_handshake_free(handshake);

    /* A responder cannot start, and refuses garbage instead of a first message. */
    CHECK_OK(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &handshake));
    CHECK_STATUS(latchkey_handshake_step(handshake, NULL, 0, out, sizeof out, &len), LATCHKEY_ERR_INVALID_STATE);
    {
        uint8_t garbage[31];
        fill_pattern(garbage, sizeof garbage, 200);
        LatchkeyStatus status = latchkey_handshake_step(handshake, garbage, sizeof garbage, out, sizeof out, &len);
        CHECK(status < 0 && status != LATCHKEY_ERR_PANIC);
        CHECK(len == 0);
    }
    latchkey_handshake_free(handshake);
    CHECK_OK(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &handshake));
    {
        /* Length 0 means "no input", whatever the pointer: a responder still needs the first message. */
        const uint8_t none[1] = {0};
        CHECK_STATUS(latchkey_handshake_step(handshake, none, 0, out, sizeof out, &len), LATCHKEY_ERR_INVALID_STATE);
    }
    latchkey_handshake_free(handshake);
    latchkey_handshake_free(NULL);
    pair_free(&pair);
}

/* Runs initiator and responder to completion, using a too-small buffer once to exercise pending messages. */
static void run_handshake(Pair *pair, uint32_t suite, bool check_pending) {
    const char *alice_trusts[] = {pair->bob_id};
    const char *bob_trusts[] = {pair->alice_id};
    REQUIRE(latchkey_handshake_new(pair->alice, LATCHKEY_ROLE_INITIATOR, suite, alice_trusts, 1, NOW, &pair->initiator) == LATCHKEY_OK);
    REQUIRE(latchkey_handshake_new(pair->bob, LATCHKEY_ROLE_RESPONDER, suite, bob_trusts, 1, NOW, &pair->responder) == LATCHKEY_OK);

    static uint8_t m1[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m2[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN],
        m3[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], none[16];
    size_t l1 = 0, l2 = 0, l3 = 0, l4 = 99;
    bool finished = false;

    if (check_pending) {
        size_t needed = 0;
        CHECK_STATUS(latchkey_handshake_step(pair->initiator, NULL, 0, NULL, 0, &needed), LATCHKEY_ERR_BUFFER_TOO_SMALL);
        CHECK(needed == 32); /* m1 is the bare ephemeral key */
        /* The message waits; feeding input now is refused and does not lose it. */
        const uint8_t stray[] = {1};
        CHECK_STATUS(latchkey_handshake_step(pair->initiator, stray, 1, m1, sizeof m1, &l1), LATCHKEY_ERR_INVALID_STATE);
        /* Collected with no input (a non-NULL pointer with length 0 is no input too). */
        CHECK_OK(latchkey_handshake_step(pair->initiator, stray, 0, m1, needed, &l1));
        CHECK(l1 == needed);
    } else {
        CHECK_OK(latchkey_handshake_step(pair->initiator, NULL, 0, m1, sizeof m1, &l1));
    }
    CHECK_OK(latchkey_handshake_step(pair->responder, m1, l1, m2, sizeof m2, &l2));
    CHECK(l2 > 32);
    CHECK_OK(latchkey_handshake_is_finished(pair->initiator, &finished));
    CHECK(!finished);
    CHECK_OK(latchkey_handshake_step(pair->initiator, m2, l2, m3, sizeof m3, &l3));
    CHECK(l3 > 0);
    CHECK_OK(latchkey_handshake_is_finished(pair->initiator, &finished));
    CHECK(finished);
    CHECK_OK(latchkey_handshake_step(pair->responder, m3, l3, none, sizeof none, &l4));
    CHECK(l4 == 0); /* nothing more to send */
    CHECK_OK(latchkey_handshake_is_finished(pair->responder, &finished));
    CHECK(finished);
}

static void test_handshake_and_channel(uint32_t suite) {
    Pair pair;
    pair_identities(&pair);
    run_handshake(&pair, suite, suite == LATCHKEY_SUITE_CHACHAPOLY);

    uint8_t hash_i[32], hash_r[32], hash_ci[32], hash_cr[32];
    size_t len = 0;
    CHECK_OK(latchkey_handshake_hash(pair.initiator, hash_i, sizeof hash_i, &len));
    CHECK_OK(latchkey_handshake_hash(pair.responder, hash_r, sizeof hash_r, &len));
    CHECK(memcmp(hash_i, hash_r, 32) == 0);

    LatchkeyChannel *alice = NULL, *bob = NULL, *again = NULL;
    CHECK_OK(latchkey_handshake_into_channel(pair.initiator, &alice));
    CHECK_OK(latchkey_handshake_into_channel(pair.responder, &bob));
    REQUIRE(alice != NULL && bob != NULL);
    CHECK_STATUS(latchkey_handshake_into_channel(pair.initiator, &again), LATCHKEY_ERR_INVALID_STATE);
    CHECK(again == NULL);
    {
        uint8_t out[64];
        CHECK_STATUS(latchkey_handshake_step(pair.initiator, NULL, 0, out, sizeof out, &len), LATCHKEY_ERR_INVALID_STATE);
        CHECK_STATUS(latchkey_handshake_hash(pair.initiator, out, sizeof out, &len), LATCHKEY_ERR_INVALID_STATE);
    }

    /* What each side proved about the other. */
    char peer[LATCHKEY_IDENTIFIER_SIZE];
    CHECK_OK(latchkey_channel_peer_identifier(alice, peer, sizeof peer, &len));
    CHECK(strcmp(peer, pair.bob_id) == 0);
    CHECK_OK(latchkey_channel_peer_identifier(bob, peer, sizeof peer, &len));
    CHECK(strcmp(peer, pair.alice_id) == 0);
    CHECK_STATUS(latchkey_channel_peer_identifier(bob, peer, 3, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    CHECK_STATUS(latchkey_channel_peer_identifier(NULL, peer, sizeof peer, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_channel_peer_identifier(bob, peer, sizeof peer, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_OK(latchkey_channel_handshake_hash(alice, hash_ci, sizeof hash_ci, &len));
    CHECK_OK(latchkey_channel_handshake_hash(bob, hash_cr, sizeof hash_cr, &len));
    CHECK(len == 32 && memcmp(hash_ci, hash_cr, 32) == 0 && memcmp(hash_ci, hash_i, 32) == 0);
    CHECK_STATUS(latchkey_channel_handshake_hash(alice, hash_ci, 0, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(latchkey_channel_handshake_hash(NULL, hash_ci, 32, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    {
        uint8_t history[BIG], expected[BIG];
        size_t history_len = 0, expected_len = 0;
        CHECK_OK(latchkey_channel_peer_history(alice, history, sizeof history, &history_len));
        CHECK_OK(latchkey_identity_export_history(pair.bob, expected, sizeof expected, &expected_len));
        CHECK(history_len == expected_len && memcmp(history, expected, history_len) == 0);
        CHECK_STATUS(latchkey_channel_peer_history(alice, NULL, 0, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
        CHECK(len == history_len);
        CHECK_STATUS(latchkey_channel_peer_history(NULL, history, sizeof history, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    }

    /* Messages both ways; frames carry their nonce in the first 8 bytes (big-endian). */
    uint8_t frame[256], plain[256];
    size_t frame_len = 0, plain_len = 0;
    for (int i = 0; i < 50; i++) {
        char text[64];
        int text_len = snprintf(text, sizeof text, "ding dong %d", i);
        LatchkeyChannel *from = (i % 2 == 0) ? alice : bob;
        LatchkeyChannel *to = (i % 2 == 0) ? bob : alice;
        CHECK_OK(latchkey_channel_encrypt(from, (const uint8_t *)text, (size_t)text_len, frame, sizeof frame, &frame_len));
        CHECK(frame_len == (size_t)text_len + LATCHKEY_FRAME_OVERHEAD);
        CHECK(frame[7] == (uint8_t)(i / 2) && frame[0] == 0);
        CHECK(!contains(frame, frame_len, "ding")); /* not plaintext on the wire */
        CHECK_OK(latchkey_channel_decrypt(to, frame, frame_len, plain, sizeof plain, &plain_len));
        CHECK(plain_len == (size_t)text_len && memcmp(plain, text, plain_len) == 0);
    }

    /* Too small for encryption: needed size reported, nothing written, no nonce spent. */
    const uint8_t hello[] = "hello";
    memset(frame, 0xAB, sizeof frame);
    CHECK_STATUS(latchkey_channel_encrypt(alice, hello, 5, frame, 5 + LATCHKEY_FRAME_OVERHEAD - 1, &frame_len),
                 LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(frame_len == 5 + LATCHKEY_FRAME_OVERHEAD);
    CHECK(frame[0] == 0xAB && frame[27] == 0xAB);
    CHECK_STATUS(latchkey_channel_encrypt(alice, hello, 5, NULL, 0, &frame_len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK_OK(latchkey_channel_encrypt(alice, hello, 5, frame, sizeof frame, &frame_len));
    CHECK(frame[7] == 25); /* the 26th frame from alice: nonces 0..24 were used above */

    /* Too small for decryption: needed size reported, and the frame still decrypts afterwards. */
    CHECK_STATUS(latchkey_channel_decrypt(bob, frame, frame_len, plain, 4, &plain_len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(plain_len == 5);
    CHECK_OK(latchkey_channel_decrypt(bob, frame, frame_len, plain, 5, &plain_len));
    CHECK(plain_len == 5 && memcmp(plain, "hello", 5) == 0);

    /* Replay is refused; so is a tampered frame, which leaves the channel working. */
    CHECK_STATUS(latchkey_channel_decrypt(bob, frame, frame_len, plain, sizeof plain, &plain_len), LATCHKEY_ERR_REPLAY);
    CHECK_OK(latchkey_channel_encrypt(alice, hello, 5, frame, sizeof frame, &frame_len));
    frame[frame_len - 1] ^= 0x80;
    memset(plain, 0x55, sizeof plain);
    CHECK_STATUS(latchkey_channel_decrypt(bob, frame, frame_len, plain, sizeof plain, &plain_len), LATCHKEY_ERR_DECRYPT_FAILED);
    CHECK(plain_len == 0 && plain[0] == 0); /* the output was wiped, not left with unauthenticated bytes */
    frame[frame_len - 1] ^= 0x80;
    CHECK_OK(latchkey_channel_decrypt(bob, frame, frame_len, plain, sizeof plain, &plain_len));

    /* Zero-length plaintext is a valid message. */
    CHECK_OK(latchkey_channel_encrypt(bob, NULL, 0, frame, sizeof frame, &frame_len));
    CHECK(frame_len == LATCHKEY_FRAME_OVERHEAD);
    CHECK_OK(latchkey_channel_decrypt(alice, frame, frame_len, NULL, 0, &plain_len));
    CHECK(plain_len == 0);

    /* Truncated (shorter than a header and tag) and garbage frames fail authentication. */
    CHECK_STATUS(latchkey_channel_decrypt(alice, frame, 3, plain, sizeof plain, &plain_len), LATCHKEY_ERR_DECRYPT_FAILED);
    CHECK_STATUS(latchkey_channel_decrypt(alice, NULL, 0, plain, sizeof plain, &plain_len), LATCHKEY_ERR_DECRYPT_FAILED);
    {
        uint8_t garbage[100];
        fill_pattern(garbage, sizeof garbage, 3);
        LatchkeyStatus status = latchkey_channel_decrypt(alice, garbage, sizeof garbage, plain, sizeof plain, &plain_len);
        CHECK(status == LATCHKEY_ERR_DECRYPT_FAILED || status == LATCHKEY_ERR_TOO_FAR_AHEAD);
    }

    /* Plaintext over the limit. */
    {
        size_t big_len = LATCHKEY_MAX_PLAINTEXT_LEN + 1;
        uint8_t *big = calloc(big_len + LATCHKEY_FRAME_OVERHEAD, 1);
        uint8_t *big_out = calloc(big_len + LATCHKEY_FRAME_OVERHEAD, 1);
        REQUIRE(big != NULL && big_out != NULL);
        CHECK_STATUS(latchkey_channel_encrypt(alice, big, big_len, big_out, big_len + LATCHKEY_FRAME_OVERHEAD, &frame_len),
                     LATCHKEY_ERR_MESSAGE_TOO_LARGE);
        CHECK_OK(latchkey_channel_encrypt(alice, big, big_len - 1, big_out, big_len + LATCHKEY_FRAME_OVERHEAD, &frame_len));
        CHECK(frame_len == LATCHKEY_MAX_PLAINTEXT_LEN + LATCHKEY_FRAME_OVERHEAD);
        CHECK_OK(latchkey_channel_decrypt(bob, big_out, frame_len, big, big_len, &plain_len));
        CHECK(plain_len == LATCHKEY_MAX_PLAINTEXT_LEN);
        free(big);
        free(big_out);
    }

    /* Lengths no real buffer can have are refused, not trusted. */
    CHECK_STATUS(latchkey_channel_encrypt(alice, hello, SIZE_MAX, frame, sizeof frame, &frame_len),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_channel_decrypt(bob, frame, sizeof frame, plain, SIZE_MAX, &plain_len),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_history_identifier(hello, SIZE_MAX / 2 + 1, peer, sizeof peer, &len),
                 LATCHKEY_ERR_INVALID_ARGUMENT);

    /* NULL arguments. */
    CHECK_STATUS(latchkey_channel_encrypt(NULL, hello, 5, frame, sizeof frame, &frame_len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_channel_encrypt(alice, NULL, 5, frame, sizeof frame, &frame_len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_channel_encrypt(alice, hello, 5, frame, sizeof frame, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_channel_encrypt(alice, hello, 5, NULL, sizeof frame, &frame_len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_channel_decrypt(NULL, frame, frame_len, plain, sizeof plain, &plain_len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_channel_decrypt(bob, NULL, 30, plain, sizeof plain, &plain_len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_channel_decrypt(bob, frame, frame_len, plain, sizeof plain, NULL), LATCHKEY_ERR_NULL_ARGUMENT);

    latchkey_channel_free(alice);
    latchkey_channel_free(bob);
    latchkey_channel_free(NULL);
    pair_free(&pair);
}

static void test_untrusted_peer_is_refused(void) {
    Pair pair;
    pair_identities(&pair);
    const char *stranger[] = {"lkabababababababababababababababababababababababababababababababab"};
    REQUIRE(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_AESGCM, stranger, 1, NOW, &pair.initiator) == LATCHKEY_OK);
    REQUIRE(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_AESGCM, TRUST_ANY, 1, NOW, &pair.responder) == LATCHKEY_OK);
    static uint8_t m1[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m2[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m3[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t l1 = 0, l2 = 0, l3 = 0;
    CHECK_OK(latchkey_handshake_step(pair.initiator, NULL, 0, m1, sizeof m1, &l1));
    CHECK_OK(latchkey_handshake_step(pair.responder, m1, l1, m2, sizeof m2, &l2));
    CHECK_STATUS(latchkey_handshake_step(pair.initiator, m2, l2, m3, sizeof m3, &l3), LATCHKEY_ERR_UNTRUSTED_PEER);
    CHECK(l3 == 0);
    CHECK(strstr(latchkey_last_error(), pair.bob_id) != NULL);
    LatchkeyChannel *channel = NULL;
    CHECK_STATUS(latchkey_handshake_into_channel(pair.initiator, &channel), LATCHKEY_ERR_INVALID_STATE);
    CHECK(channel == NULL);

    /* Mismatched suites do not complete either. */
    latchkey_handshake_free(pair.initiator);
    latchkey_handshake_free(pair.responder);
    REQUIRE(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_AESGCM, TRUST_ANY, 1, NOW, &pair.initiator) == LATCHKEY_OK);
    REQUIRE(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &pair.responder) == LATCHKEY_OK);
    CHECK_OK(latchkey_handshake_step(pair.initiator, NULL, 0, m1, sizeof m1, &l1));
    CHECK_OK(latchkey_handshake_step(pair.responder, m1, l1, m2, sizeof m2, &l2));
    CHECK(latchkey_handshake_step(pair.initiator, m2, l2, m3, sizeof m3, &l3) == LATCHKEY_ERR_DECRYPT_FAILED);
    pair_free(&pair);
}

/* Runs the three handshake messages; returns the first failing status (LATCHKEY_OK if all passed). */
static LatchkeyStatus exchange(Pair *pair) {
    static uint8_t m1[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m2[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN],
        m3[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t l1 = 0, l2 = 0, l3 = 0, l4 = 0;
    LatchkeyStatus status = latchkey_handshake_step(pair->initiator, NULL, 0, m1, sizeof m1, &l1);
    if (status == LATCHKEY_OK) status = latchkey_handshake_step(pair->responder, m1, l1, m2, sizeof m2, &l2);
    if (status == LATCHKEY_OK) status = latchkey_handshake_step(pair->initiator, m2, l2, m3, sizeof m3, &l3);
    if (status == LATCHKEY_OK) status = latchkey_handshake_step(pair->responder, m3, l3, NULL, 0, &l4);
    return status;
}

static void test_trust_is_never_implied(void) {
    Pair pair;
    pair_identities(&pair);
    CHECK(strcmp(LATCHKEY_TRUST_ANY, "*") == 0);

    /* NULL with count 0 used to mean "any peer": now it is refused, and the message says what to pass. */
    LatchkeyHandshake *handshake = (LatchkeyHandshake *)&pair; /* garbage the call must reset */
    CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, NULL, 0, NOW, &handshake),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(handshake == NULL);
    CHECK(starts_with(latchkey_last_error(), "InvalidArgument: no trust given"));
    CHECK(strstr(latchkey_last_error(), "{LATCHKEY_TRUST_ANY}") != NULL);
    CHECK_STATUS(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_AESGCM, NULL, 0, 0, &handshake),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(handshake == NULL);

    /* "*" is a wildcard only as the whole list: beside an identifier it is a malformed identifier. */
    {
        const char *mixed[] = {LATCHKEY_TRUST_ANY, pair.bob_id};
        CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, mixed, 2, NOW, &handshake),
                     LATCHKEY_ERR_DECODE_ERROR);
        CHECK(handshake == NULL);
        const char *twice[] = {LATCHKEY_TRUST_ANY, LATCHKEY_TRUST_ANY};
        CHECK_STATUS(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, twice, 2, NOW, &handshake),
                     LATCHKEY_ERR_DECODE_ERROR);
    }

    /* {LATCHKEY_TRUST_ANY} on both sides: a channel, and each side learns who the other is. */
    CHECK_OK(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &pair.initiator));
    CHECK_OK(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &pair.responder));
    REQUIRE(pair.initiator != NULL && pair.responder != NULL);
    CHECK_OK(exchange(&pair));
    {
        LatchkeyChannel *to_bob = NULL, *to_alice = NULL;
        char peer[LATCHKEY_IDENTIFIER_SIZE];
        size_t len = 0;
        CHECK_OK(latchkey_handshake_into_channel(pair.initiator, &to_bob));
        CHECK_OK(latchkey_handshake_into_channel(pair.responder, &to_alice));
        CHECK_OK(latchkey_channel_peer_identifier(to_bob, peer, sizeof peer, &len));
        CHECK(strcmp(peer, pair.bob_id) == 0);
        CHECK_OK(latchkey_channel_peer_identifier(to_alice, peer, sizeof peer, &len));
        CHECK(strcmp(peer, pair.alice_id) == 0);
        latchkey_channel_free(to_bob);
        latchkey_channel_free(to_alice);
    }
    latchkey_handshake_free(pair.initiator);
    latchkey_handshake_free(pair.responder);

    /* A non-NULL list with count 0 refuses every peer. */
    {
        const char *nobody[] = {pair.bob_id};
        CHECK_OK(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, nobody, 0, NOW, &pair.initiator));
        CHECK_OK(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &pair.responder));
        CHECK_STATUS(exchange(&pair), LATCHKEY_ERR_UNTRUSTED_PEER);
    }
    pair_free(&pair);
}

static void test_expired_peer_is_refused(void) {
    Pair pair;
    pair_identities(&pair);
    /* Bob's attestation lives 60 s; Alice checks it a day later. */
    const LatchkeyIdentity *short_lived = NULL;
    REQUIRE(latchkey_identity_create(pair.vault, LATCHKEY_ALGORITHM_ED25519, 0, 60, NOW, &short_lived) == LATCHKEY_OK);
    REQUIRE(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW + 86400, &pair.initiator) == LATCHKEY_OK);
    REQUIRE(latchkey_handshake_new(short_lived, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW, &pair.responder) == LATCHKEY_OK);
    static uint8_t m1[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m2[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m3[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t l1 = 0, l2 = 0, l3 = 0;
    CHECK_OK(latchkey_handshake_step(pair.initiator, NULL, 0, m1, sizeof m1, &l1));
    CHECK_OK(latchkey_handshake_step(pair.responder, m1, l1, m2, sizeof m2, &l2));
    CHECK_STATUS(latchkey_handshake_step(pair.initiator, m2, l2, m3, sizeof m3, &l3), LATCHKEY_ERR_EXPIRED);
    latchkey_identity_free(short_lived);
    pair_free(&pair);
}

/* ---- the node API (hosted C): nodes, channels between nodes, listeners, mailboxes, relays ---- */

#define NODE_TIMEOUT_MS 10000u
#define STRANGER "lkabababababababababababababababababababababababababababababababab"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

/* Whether `fd` is readable within `wait_ms` milliseconds. */
static bool fd_readable(int fd, int wait_ms) {
    struct pollfd entry = {.fd = fd, .events = POLLIN, .revents = 0};
    return poll(&entry, 1, wait_ms) == 1 && (entry.revents & POLLIN) != 0;
}

/* A node with a fresh identity (created at the system time: the runtime checks validity against it). */
typedef struct {
    const LatchkeyIdentity *identity;
    const LatchkeyNode *node;
    char id[LATCHKEY_IDENTIFIER_SIZE];
    char address[LATCHKEY_SOCKET_ADDRESS_SIZE];
} TestNode;

static void test_node_start(TestNode *t, const LatchkeyVault *vault, const char *name, uint32_t flags, bool tcp) {
    size_t len = 0;
    memset(t, 0, sizeof *t);
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &t->identity) == LATCHKEY_OK);
    REQUIRE(latchkey_node_new(t->identity, name, flags, &t->node) == LATCHKEY_OK);
    REQUIRE(latchkey_node_identifier(t->node, t->id, sizeof t->id, &len) == LATCHKEY_OK);
    if (tcp) {
        REQUIRE(latchkey_node_listen_tcp(t->node, "127.0.0.1:0", t->address, sizeof t->address, &len) == LATCHKEY_OK);
    }
}

static void test_node_stop(TestNode *t) {
    latchkey_node_free(t->node);
    latchkey_identity_free(t->identity);
}

/* The payload of `message` as a NUL-terminated string in `text` (truncated to fit). */
static const char *payload_text(const LatchkeyMessage *message, char *text, size_t size) {
    size_t len = 0;
    text[0] = '\0';
    if (latchkey_message_payload(message, (uint8_t *)text, size - 1, &len) == LATCHKEY_OK) {
        text[len] = '\0';
    }
    return text;
}

static void test_error_table(void) {
    /* Every code of the one error table, as the header names it (ffi/src/tests.rs checks the header against
     * the table; this checks what the compiled library answers). */
    static const struct {
        LatchkeyStatus status;
        const char *name;
    } table[] = {
        {LATCHKEY_ERR_UNKNOWN_ADDRESS, "UnknownAddress"}, {LATCHKEY_ERR_ADDRESS_IN_USE, "AddressInUse"},
        {LATCHKEY_ERR_QUEUE_FULL, "QueueFull"}, {LATCHKEY_ERR_WORKER_STOPPED, "WorkerStopped"},
        {LATCHKEY_ERR_MALFORMED_MESSAGE, "MalformedMessage"}, {LATCHKEY_ERR_FRAME_TOO_LARGE, "FrameTooLarge"},
        {LATCHKEY_ERR_ACCESS_DENIED, "AccessDenied"}, {LATCHKEY_ERR_TRANSPORT_ERROR, "TransportError"},
        {LATCHKEY_ERR_BAD_ADDRESS, "BadAddress"}, {LATCHKEY_ERR_TIMEOUT, "Timeout"},
        {LATCHKEY_ERR_DELIVERY_FAILED, "DeliveryFailed"}, {LATCHKEY_ERR_CHANNEL_CLOSED, "ChannelClosed"},
        {LATCHKEY_ERR_REFUSED, "Refused"}, {LATCHKEY_ERR_INSECURE, "Insecure"},
        {LATCHKEY_ERR_STORAGE_ERROR, "StorageError"}, {LATCHKEY_ERR_UNKNOWN_IDENTITY, "UnknownIdentity"},
        {LATCHKEY_ERR_IDENTITY_EXISTS, "IdentityExists"}, {LATCHKEY_ERR_NULL_ARGUMENT, "NullArgument"},
        {LATCHKEY_ERR_PANIC, "Panic"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK(strcmp(latchkey_error_name(table[i].status), table[i].name) == 0);
        CHECK(strlen(latchkey_error_description(table[i].status)) > 10);
    }
    CHECK(LATCHKEY_ERR_UNKNOWN_ADDRESS == -30 && LATCHKEY_ERR_IDENTITY_EXISTS == -46);
    CHECK(strcmp(latchkey_error_name(-29), "Unknown") == 0);
    CHECK(strcmp(latchkey_error_name(-99), "Unknown") == 0);
    CHECK(strcmp(latchkey_error_description(LATCHKEY_ERR_TIMEOUT), "A peer did not answer in time.") == 0);
    CHECK(strcmp(latchkey_error_description(LATCHKEY_OK), "Success.") == 0);
    CHECK(strcmp(latchkey_error_description(-99), "Not a Latchkey status code.") == 0);
}

static void test_node_arguments(void) {
    const LatchkeyVault *vault = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    TestNode t;
    test_node_start(&t, vault, "arguments", 0, false);
    const char *only[] = {STRANGER};
    char text[BIG];
    size_t len = 0;
    int fd = -1;
    bool closed = true;
    uint32_t origin = 99;

    /* Constructors: NULL for each pointer, and the out-parameter reset on failure. */
    const LatchkeyNode *node = (const LatchkeyNode *)&t; /* garbage the calls must reset */
    CHECK_STATUS(latchkey_node_new(NULL, "n", 0, &node), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(node == NULL);
    CHECK(strcmp(latchkey_last_error(), "NullArgument: `identity` must not be NULL") == 0);
    CHECK_STATUS(latchkey_node_new(t.identity, NULL, 0, &node), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_new(t.identity, "n", 0, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    node = (const LatchkeyNode *)&t;
    CHECK_STATUS(latchkey_node_new(t.identity, "n", 2, &node), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(node == NULL);
    CHECK(strcmp(latchkey_last_error(), "InvalidArgument: unknown node flags 0x2") == 0);
    CHECK_STATUS(latchkey_node_new(t.identity, "\xff", 0, &node), LATCHKEY_ERR_INVALID_UTF8);

    /* The node's identifier is its identity's. */
    {
        char id[LATCHKEY_IDENTIFIER_SIZE];
        CHECK_OK(latchkey_identity_identifier(t.identity, id, sizeof id, &len));
        CHECK(strcmp(id, t.id) == 0);
        CHECK_STATUS(latchkey_node_identifier(t.node, id, 10, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
        CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
        CHECK_STATUS(latchkey_node_identifier(NULL, id, sizeof id, &len), LATCHKEY_ERR_NULL_ARGUMENT);
        CHECK_STATUS(latchkey_node_identifier(t.node, id, sizeof id, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    }

    /* listen_tcp: NULLs, a too-small buffer refused before binding, no address wanted, bad addresses. */
    CHECK_STATUS(latchkey_node_listen_tcp(NULL, "127.0.0.1:0", text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen_tcp(t.node, NULL, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen_tcp(t.node, "127.0.0.1:0", text, sizeof text, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen_tcp(t.node, "127.0.0.1:0", NULL, 10, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen_tcp(t.node, "127.0.0.1:0", text, 16, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_SOCKET_ADDRESS_SIZE);
    CHECK_OK(latchkey_node_listen_tcp(t.node, "127.0.0.1:0", NULL, 0, NULL));
    CHECK_STATUS(latchkey_node_listen_tcp(t.node, "not an address", text, sizeof text, &len), LATCHKEY_ERR_BAD_ADDRESS);
    CHECK(starts_with(latchkey_last_error(), "BadAddress: "));
    {
        char first[LATCHKEY_SOCKET_ADDRESS_SIZE];
        CHECK_OK(latchkey_node_listen_tcp(t.node, "127.0.0.1:0", first, sizeof first, &len));
        CHECK(len == strlen(first) + 1 && starts_with(first, "127.0.0.1:"));
        CHECK_STATUS(latchkey_node_listen_tcp(t.node, first, text, sizeof text, &len), LATCHKEY_ERR_ADDRESS_IN_USE);
    }

    /* Trust is never implied, for listeners, services, mailboxes, connections and relays alike. */
    const LatchkeyListener *listener = (const LatchkeyListener *)&t;
    CHECK_STATUS(latchkey_node_listen(t.node, "api", NULL, 0, &listener), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(listener == NULL);
    CHECK(starts_with(latchkey_last_error(), "InvalidArgument: no trust given (trusted == NULL"));
    CHECK(strstr(latchkey_last_error(), "{LATCHKEY_TRUST_ANY}") != NULL);
    CHECK_STATUS(latchkey_node_listen(t.node, "api", NULL, 1, &listener), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen(t.node, "api", (const char *const[]){"lk00"}, 1, &listener), LATCHKEY_ERR_DECODE_ERROR);
    CHECK_STATUS(latchkey_node_listen(t.node, "api", (const char *const[]){NULL}, 1, &listener), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(strcmp(latchkey_last_error(), "NullArgument: `trusted[i]` must not be NULL") == 0);
    CHECK_STATUS(latchkey_node_listen(NULL, "api", only, 1, &listener), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen(t.node, NULL, only, 1, &listener), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen(t.node, "api", only, 1, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_listen(t.node, "", only, 1, &listener), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_node_start_echo(t.node, "echo", NULL, 0), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_node_start_echo(NULL, "echo", only, 1), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_start_echo(t.node, NULL, only, 1), LATCHKEY_ERR_NULL_ARGUMENT);
    const LatchkeyMailbox *mailbox = (const LatchkeyMailbox *)&t;
    CHECK_STATUS(latchkey_node_mailbox(t.node, "inbox", NULL, 0, &mailbox), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(mailbox == NULL);
    CHECK_STATUS(latchkey_node_mailbox(NULL, "inbox", only, 1, &mailbox), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_mailbox(t.node, NULL, only, 1, &mailbox), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_mailbox(t.node, "inbox", only, 1, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_register_at_relay(t.node, "127.0.0.1:9", NULL, 0, "me"), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(starts_with(latchkey_last_error(), "InvalidArgument: no trust given (relay_trusted == NULL"));
    CHECK_STATUS(latchkey_node_register_at_relay(t.node, "127.0.0.1:9", (const char *const[]){NULL}, 1, "me"),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(strcmp(latchkey_last_error(), "NullArgument: `relay_trusted[i]` must not be NULL") == 0);
    CHECK_STATUS(latchkey_node_register_at_relay(NULL, "127.0.0.1:9", only, 1, "me"), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_register_at_relay(t.node, NULL, only, 1, "me"), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_register_at_relay(t.node, "127.0.0.1:9", only, 1, NULL), LATCHKEY_ERR_NULL_ARGUMENT);

    /* connect: NULLs (relay_name may be NULL: a direct connection), trust, and a timeout that allows a wait. */
    const LatchkeyNodeChannel *channel = (const LatchkeyNodeChannel *)&t;
    CHECK_STATUS(latchkey_node_connect(t.node, "127.0.0.1:9", NULL, "api", NULL, 0, NODE_TIMEOUT_MS, &channel),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(channel == NULL);
    CHECK_STATUS(latchkey_node_connect(t.node, "127.0.0.1:9", NULL, "api", only, 1, 0, &channel), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(latchkey_last_error(), "InvalidArgument: `timeout_ms` must be at least 1 ms: this call waits for a peer") == 0);
    CHECK_STATUS(latchkey_node_connect(NULL, "127.0.0.1:9", NULL, "api", only, 1, NODE_TIMEOUT_MS, &channel), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_connect(t.node, NULL, NULL, "api", only, 1, NODE_TIMEOUT_MS, &channel), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_connect(t.node, "127.0.0.1:9", NULL, NULL, only, 1, NODE_TIMEOUT_MS, &channel), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_connect(t.node, "127.0.0.1:9", NULL, "api", only, 1, NODE_TIMEOUT_MS, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_connect(t.node, "127.0.0.1:9", "\xff", "api", only, 1, NODE_TIMEOUT_MS, &channel), LATCHKEY_ERR_INVALID_UTF8);
    CHECK(strcmp(latchkey_last_error(), "InvalidUtf8: `relay_name` is not valid UTF-8") == 0);
    CHECK_STATUS(latchkey_node_connect(t.node, "no such host:1", NULL, "api", only, 1, NODE_TIMEOUT_MS, &channel), LATCHKEY_ERR_BAD_ADDRESS);
    CHECK(channel == NULL);
    CHECK_STATUS(latchkey_node_connect(t.node, "127.0.0.1:9", NULL, "api", only, 1, NODE_TIMEOUT_MS, &channel),
                 LATCHKEY_ERR_TRANSPORT_ERROR);
    CHECK_STATUS(latchkey_node_register_at_relay(t.node, "127.0.0.1:9", only, 1, "me"), LATCHKEY_ERR_TRANSPORT_ERROR);

    /* A relay service only on a relay node, and only once it has a channel listener. */
    CHECK_STATUS(latchkey_node_start_relay(t.node), LATCHKEY_ERR_INVALID_STATE);
    CHECK(strcmp(latchkey_last_error(), "InvalidState: only a node created with LATCHKEY_NODE_RELAY can be a relay") == 0);
    CHECK_STATUS(latchkey_node_start_relay(NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    {
        const LatchkeyNode *relay = NULL;
        CHECK_OK(latchkey_node_new(t.identity, "relay", LATCHKEY_NODE_RELAY, &relay));
        CHECK_STATUS(latchkey_node_start_relay(relay), LATCHKEY_ERR_INVALID_STATE);
        CHECK(starts_with(latchkey_last_error(), "InvalidState: start a channel listener first"));
        latchkey_node_free(relay); /* frees without an explicit shutdown */
    }

    /* The handles of listeners, mailboxes, channels and messages: NULL everywhere. */
    const LatchkeyMessage *message = (const LatchkeyMessage *)&t;
    CHECK_STATUS(latchkey_listener_accept(NULL, 0, &channel), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(channel == NULL);
    CHECK_STATUS(latchkey_listener_fd(NULL, &fd), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_listener_close(NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_mailbox_receive(NULL, 0, &message), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(message == NULL);
    CHECK_STATUS(latchkey_mailbox_fd(NULL, &fd), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_mailbox_reply(NULL, NULL, NULL, 0), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_mailbox_close(NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_channel_peer_identifier(NULL, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_channel_send(NULL, "inbox", NULL, 0, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_channel_request(NULL, "echo", NULL, 0, NODE_TIMEOUT_MS, &message), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_channel_close(NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_channel_is_closed(NULL, &closed), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_message_payload(NULL, (uint8_t *)text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_message_origin(NULL, &origin), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_message_peer_identifier(NULL, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_node_shutdown(NULL), LATCHKEY_ERR_NULL_ARGUMENT);

    /* Every _free accepts NULL. */
    latchkey_node_free(NULL);
    latchkey_listener_free(NULL);
    latchkey_mailbox_free(NULL);
    latchkey_node_channel_free(NULL);
    latchkey_message_free(NULL);

    test_node_stop(&t);
    latchkey_vault_free(vault);
}

/* LATCHKEY_OK if `client` (its suite already set) opens a channel to the listener `service` of `server` and
 * gets its payload echoed back through it (service "echo"); otherwise the status of the connect. */
static LatchkeyStatus suite_echo(const TestNode *client, const TestNode *server, const char *service) {
    const char *server_only[] = {server->id};
    const LatchkeyNodeChannel *channel = (const LatchkeyNodeChannel *)client; /* garbage the call must reset */
    LatchkeyStatus status =
        latchkey_node_connect(client->node, server->address, NULL, service, server_only, 1, NODE_TIMEOUT_MS, &channel);
    if (status != LATCHKEY_OK) {
        CHECK(channel == NULL);
        return status;
    }
    const LatchkeyMessage *reply = NULL;
    char text[64];
    CHECK_OK(latchkey_node_channel_request(channel, "echo", (const uint8_t *)"suite", 5, NODE_TIMEOUT_MS, &reply));
    CHECK(reply != NULL && strcmp(payload_text(reply, text, sizeof text), "suite") == 0);
    latchkey_message_free(reply);
    CHECK_OK(latchkey_node_channel_close(channel));
    latchkey_node_channel_free(channel);
    return LATCHKEY_OK;
}

/* latchkey_node_set_suite: a listener takes the node's suite when it starts, a connection when it opens. The
 * same fixed suite on both ends talks, different fixed suites fail with LATCHKEY_ERR_UNSUPPORTED_SUITE, an
 * auto listener accepts both; bad values and NULL are refused and change nothing. */
static void test_node_suite(void) {
    const LatchkeyVault *vault = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    TestNode server, client;
    test_node_start(&server, vault, "server", 0, true);
    test_node_start(&client, vault, "client", 0, false);
    const char *client_only[] = {client.id};
    CHECK(LATCHKEY_NODE_SUITE_AUTO == LATCHKEY_SUITES_BOTH && LATCHKEY_NODE_SUITE_CHACHAPOLY == LATCHKEY_SUITES_CHACHAPOLY &&
          LATCHKEY_NODE_SUITE_AESGCM == LATCHKEY_SUITES_AESGCM);
    const LatchkeyListener *chacha = NULL, *aes = NULL, *still_aes = NULL, *any = NULL;
    CHECK_OK(latchkey_node_start_echo(server.node, "echo", client_only, 1));
    CHECK_OK(latchkey_node_set_suite(server.node, LATCHKEY_NODE_SUITE_CHACHAPOLY));
    CHECK_OK(latchkey_node_listen(server.node, "chacha", client_only, 1, &chacha));
    CHECK_OK(latchkey_node_set_suite(server.node, LATCHKEY_NODE_SUITE_AESGCM));
    CHECK_OK(latchkey_node_listen(server.node, "aes", client_only, 1, &aes));
    /* Bad values and NULL: typed errors, and the choice stays AES-GCM. */
    CHECK_STATUS(latchkey_node_set_suite(server.node, 3), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(strcmp(latchkey_last_error(), "InvalidArgument: unknown node suite 3") == 0);
    CHECK_STATUS(latchkey_node_set_suite(server.node, UINT32_MAX), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_node_set_suite(NULL, LATCHKEY_NODE_SUITE_AUTO), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_OK(latchkey_node_listen(server.node, "still-aes", client_only, 1, &still_aes));
    CHECK_OK(latchkey_node_set_suite(server.node, LATCHKEY_NODE_SUITE_AUTO));
    CHECK_OK(latchkey_node_listen(server.node, "any", client_only, 1, &any));

    CHECK_OK(latchkey_node_set_suite(client.node, LATCHKEY_NODE_SUITE_CHACHAPOLY));
    CHECK_STATUS(suite_echo(&client, &server, "chacha"), LATCHKEY_OK);
    CHECK_STATUS(suite_echo(&client, &server, "aes"), LATCHKEY_ERR_UNSUPPORTED_SUITE);
    CHECK_STATUS(suite_echo(&client, &server, "still-aes"), LATCHKEY_ERR_UNSUPPORTED_SUITE);
    CHECK_STATUS(suite_echo(&client, &server, "any"), LATCHKEY_OK);
    CHECK_OK(latchkey_node_set_suite(client.node, LATCHKEY_NODE_SUITE_AESGCM));
    CHECK_STATUS(suite_echo(&client, &server, "chacha"), LATCHKEY_ERR_UNSUPPORTED_SUITE);
    CHECK_STATUS(suite_echo(&client, &server, "aes"), LATCHKEY_OK);
    CHECK_STATUS(suite_echo(&client, &server, "still-aes"), LATCHKEY_OK);
    CHECK_STATUS(suite_echo(&client, &server, "any"), LATCHKEY_OK);

    latchkey_listener_free(chacha);
    latchkey_listener_free(aes);
    latchkey_listener_free(still_aes);
    latchkey_listener_free(any);
    test_node_stop(&client);
    test_node_stop(&server);
    latchkey_vault_free(vault);
}

/* A doorbell node (listener "api", echo service "echo", mailbox "inbox", all for the phone only) and a phone
 * node with a channel to it, over TCP on loopback. */
static void test_node_channels_and_mailboxes(void) {
    const LatchkeyVault *vault = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    TestNode doorbell, phone;
    test_node_start(&doorbell, vault, "doorbell", 0, true);
    test_node_start(&phone, vault, "phone", 0, false);
    const char *phone_only[] = {phone.id};
    const char *doorbell_only[] = {doorbell.id};
    const char *stranger_only[] = {STRANGER};
    char text[BIG];
    size_t len = 0;

    const LatchkeyListener *listener = NULL;
    const LatchkeyMailbox *inbox = NULL, *replies = NULL;
    CHECK_OK(latchkey_node_listen(doorbell.node, "api", phone_only, 1, &listener));
    CHECK_OK(latchkey_node_start_echo(doorbell.node, "echo", phone_only, 1));
    CHECK_OK(latchkey_node_mailbox(doorbell.node, "inbox", phone_only, 1, &inbox));
    REQUIRE(listener != NULL && inbox != NULL);
    {
        const LatchkeyMailbox *again = (const LatchkeyMailbox *)&doorbell;
        CHECK_STATUS(latchkey_node_mailbox(doorbell.node, "inbox", phone_only, 1, &again), LATCHKEY_ERR_ADDRESS_IN_USE);
        CHECK(again == NULL);
    }
    int inbox_fd = -1, listener_fd = -1;
    CHECK_OK(latchkey_mailbox_fd(inbox, &inbox_fd));
    CHECK_OK(latchkey_listener_fd(listener, &listener_fd));
    CHECK(inbox_fd >= 0 && listener_fd >= 0 && inbox_fd != listener_fd);
    CHECK(!fd_readable(inbox_fd, 0) && !fd_readable(listener_fd, 0));

    /* Nothing there yet: a receive with timeout 0 returns at once, one with 50 ms waits that long. */
    const LatchkeyMessage *message = (const LatchkeyMessage *)&doorbell;
    double start = now_ms();
    CHECK_STATUS(latchkey_mailbox_receive(inbox, 0, &message), LATCHKEY_ERR_TIMEOUT);
    CHECK(message == NULL);
    CHECK(now_ms() - start < 1000);
    CHECK(strcmp(latchkey_last_error(), "Timeout: nothing arrived at the mailbox within 0 ms") == 0);
    start = now_ms();
    CHECK_STATUS(latchkey_mailbox_receive(inbox, 50, &message), LATCHKEY_ERR_TIMEOUT);
    CHECK(now_ms() - start >= 49);
    const LatchkeyNodeChannel *accepted = (const LatchkeyNodeChannel *)&doorbell;
    CHECK_STATUS(latchkey_listener_accept(listener, 20, &accepted), LATCHKEY_ERR_TIMEOUT);
    CHECK(accepted == NULL);

    /* The phone refuses a doorbell it does not trust; the doorbell refuses a phone it does not trust. */
    const LatchkeyNodeChannel *channel = (const LatchkeyNodeChannel *)&doorbell;
    CHECK_STATUS(latchkey_node_connect(phone.node, doorbell.address, NULL, "api", stranger_only, 1, NODE_TIMEOUT_MS, &channel),
                 LATCHKEY_ERR_UNTRUSTED_PEER);
    CHECK(channel == NULL);
    CHECK(strstr(latchkey_last_error(), doorbell.id) != NULL);
    {
        TestNode intruder;
        test_node_start(&intruder, vault, "intruder", 0, false);
        const LatchkeyNodeChannel *refused = NULL;
        LatchkeyStatus status =
            latchkey_node_connect(intruder.node, doorbell.address, NULL, "api", doorbell_only, 1, NODE_TIMEOUT_MS, &refused);
        CHECK(status == LATCHKEY_ERR_REFUSED);
        CHECK(refused == NULL);
        CHECK(strcmp(latchkey_last_error(), "Refused: refused by peer: not trusted") == 0);
        test_node_stop(&intruder);
    }
    CHECK(!fd_readable(listener_fd, 0));

    /* The phone's channel to the doorbell: the doorbell's listener hands it out, with the phone's identity. */
    CHECK_OK(latchkey_node_connect(phone.node, doorbell.address, NULL, "api", doorbell_only, 1, NODE_TIMEOUT_MS, &channel));
    REQUIRE(channel != NULL);
    CHECK_OK(latchkey_node_channel_peer_identifier(channel, text, sizeof text, &len));
    CHECK(strcmp(text, doorbell.id) == 0 && len == LATCHKEY_IDENTIFIER_SIZE);
    CHECK(fd_readable(listener_fd, 5000));
    CHECK_OK(latchkey_listener_accept(listener, 0, &accepted));
    REQUIRE(accepted != NULL);
    CHECK_OK(latchkey_node_channel_peer_identifier(accepted, text, sizeof text, &len));
    CHECK(strcmp(text, phone.id) == 0);
    CHECK(!fd_readable(listener_fd, 0));
    latchkey_node_channel_free(accepted);

    /* A request to the echo service: the reply is a message from the doorbell. */
    const LatchkeyMessage *reply = NULL;
    CHECK_OK(latchkey_node_channel_request(channel, "echo", (const uint8_t *)"ding", 4, NODE_TIMEOUT_MS, &reply));
    REQUIRE(reply != NULL);
    CHECK(strcmp(payload_text(reply, text, sizeof text), "ding") == 0);
    {
        uint32_t origin = 99;
        CHECK_OK(latchkey_message_origin(reply, &origin));
        CHECK(origin == LATCHKEY_ORIGIN_CHANNEL);
        char peer[LATCHKEY_IDENTIFIER_SIZE];
        CHECK_OK(latchkey_message_peer_identifier(reply, peer, sizeof peer, &len));
        CHECK(strcmp(peer, doorbell.id) == 0);
    }
    /* An empty request, and a request nobody answers (the inbox does not reply by itself). */
    {
        const LatchkeyMessage *empty = NULL;
        CHECK_OK(latchkey_node_channel_request(channel, "echo", NULL, 0, NODE_TIMEOUT_MS, &empty));
        CHECK_OK(latchkey_message_payload(empty, NULL, 0, &len));
        CHECK(len == 0);
        latchkey_message_free(empty);
        const LatchkeyMessage *none = (const LatchkeyMessage *)&doorbell;
        start = now_ms();
        CHECK_STATUS(latchkey_node_channel_request(channel, "inbox", (const uint8_t *)"anyone?", 7, 100, &none),
                     LATCHKEY_ERR_TIMEOUT);
        CHECK(none == NULL);
        CHECK(now_ms() - start >= 99);
        CHECK_STATUS(latchkey_node_channel_request(channel, "echo", NULL, 0, 0, &none), LATCHKEY_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(latchkey_node_channel_request(channel, NULL, NULL, 0, NODE_TIMEOUT_MS, &none), LATCHKEY_ERR_NULL_ARGUMENT);
        CHECK_STATUS(latchkey_node_channel_request(channel, "echo", NULL, 3, NODE_TIMEOUT_MS, &none), LATCHKEY_ERR_NULL_ARGUMENT);
        CHECK_STATUS(latchkey_node_channel_request(channel, "echo", NULL, 0, NODE_TIMEOUT_MS, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
        /* The unanswered request is in the inbox: take it (it did arrive, once). */
        const LatchkeyMessage *question = NULL;
        CHECK_OK(latchkey_mailbox_receive(inbox, 5000, &question));
        CHECK(strcmp(payload_text(question, text, sizeof text), "anyone?") == 0);
        latchkey_message_free(question);
    }

    /* A message to the inbox: the descriptor turns readable, the message carries the authenticated origin. */
    CHECK_OK(latchkey_node_channel_send(channel, "inbox", (const uint8_t *)"hello", 5, NULL));
    CHECK(fd_readable(inbox_fd, 5000));
    CHECK_OK(latchkey_mailbox_receive(inbox, 0, &message));
    REQUIRE(message != NULL);
    CHECK(!fd_readable(inbox_fd, 0));
    {
        uint8_t small[2];
        CHECK_STATUS(latchkey_message_payload(message, small, sizeof small, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
        CHECK(len == 5);
        CHECK_STATUS(latchkey_message_payload(message, NULL, 0, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
        CHECK(len == 5);
        CHECK_STATUS(latchkey_message_payload(message, small, sizeof small, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
        CHECK(strcmp(payload_text(message, text, sizeof text), "hello") == 0);
        uint32_t origin = 99;
        CHECK_OK(latchkey_message_origin(message, &origin));
        CHECK(origin == LATCHKEY_ORIGIN_CHANNEL);
        CHECK_STATUS(latchkey_message_origin(message, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
        char peer[LATCHKEY_IDENTIFIER_SIZE];
        CHECK_OK(latchkey_message_peer_identifier(message, peer, sizeof peer, &len));
        CHECK(strcmp(peer, phone.id) == 0);
        CHECK_STATUS(latchkey_message_peer_identifier(message, peer, 5, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
        CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    }
    /* It was sent without a reply address: the reply leaves, and the phone's node drops it. */
    CHECK_OK(latchkey_mailbox_reply(inbox, message, (const uint8_t *)"?", 1));
    latchkey_message_free(message);

    /* With reply_to, the doorbell's reply comes back to the phone's mailbox, from the doorbell. */
    CHECK_OK(latchkey_node_mailbox(phone.node, "replies", doorbell_only, 1, &replies));
    CHECK_OK(latchkey_node_channel_send(channel, "inbox", (const uint8_t *)"ring", 4, replies));
    CHECK_OK(latchkey_mailbox_receive(inbox, 5000, &message));
    REQUIRE(message != NULL);
    CHECK_STATUS(latchkey_mailbox_reply(inbox, NULL, NULL, 0), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_mailbox_reply(inbox, message, NULL, 3), LATCHKEY_ERR_NULL_ARGUMENT);
    /* Misuse: a message through another mailbox, a request's reply through a mailbox. */
    CHECK_STATUS(latchkey_mailbox_reply(replies, message, (const uint8_t *)"x", 1), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(starts_with(latchkey_last_error(), "InvalidArgument: the message was received by another mailbox"));
    CHECK_STATUS(latchkey_mailbox_reply(inbox, reply, (const uint8_t *)"x", 1), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_OK(latchkey_mailbox_reply(inbox, message, (const uint8_t *)"dong", 4));
    latchkey_message_free(message);
    latchkey_message_free(reply);
    CHECK_OK(latchkey_mailbox_receive(replies, 5000, &message));
    REQUIRE(message != NULL);
    CHECK(strcmp(payload_text(message, text, sizeof text), "dong") == 0);
    CHECK_OK(latchkey_message_peer_identifier(message, text, sizeof text, &len));
    CHECK(strcmp(text, doorbell.id) == 0);
    latchkey_message_free(message);
    /* reply_to must be a mailbox of the channel's own node. */
    CHECK_STATUS(latchkey_node_channel_send(channel, "inbox", (const uint8_t *)"x", 1, inbox), LATCHKEY_ERR_INVALID_ARGUMENT);

    /* A send is confirmed by the far end of the channel; a service missing there drops the message, so a
     * request to it times out. */
    /* No such service at the far end: the far end answers UNDELIVERED, so both fail fast (e5253cd). */
    CHECK_STATUS(latchkey_node_channel_send(channel, "nobody", (const uint8_t *)"x", 1, NULL), LATCHKEY_ERR_UNKNOWN_ADDRESS);
    CHECK_STATUS(latchkey_node_channel_request(channel, "nobody", (const uint8_t *)"x", 1, 50, &message),
                 LATCHKEY_ERR_UNKNOWN_ADDRESS);

    /* Closing the phone's channel: it says so, and later sends fail with ChannelClosed. */
    {
        const LatchkeyNodeChannel *second = NULL;
        bool closed = true;
        CHECK_OK(latchkey_node_connect(phone.node, doorbell.address, NULL, "api", doorbell_only, 1, NODE_TIMEOUT_MS, &second));
        REQUIRE(second != NULL);
        CHECK_OK(latchkey_node_channel_is_closed(second, &closed));
        CHECK(!closed);
        CHECK_STATUS(latchkey_node_channel_is_closed(second, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
        CHECK_OK(latchkey_node_channel_close(second));
        CHECK_OK(latchkey_node_channel_close(second));
        CHECK_OK(latchkey_node_channel_is_closed(second, &closed));
        CHECK(closed);
        CHECK_STATUS(latchkey_node_channel_send(second, "inbox", (const uint8_t *)"late", 4, NULL), LATCHKEY_ERR_CHANNEL_CLOSED);
        CHECK(starts_with(latchkey_last_error(), "ChannelClosed: "));
        latchkey_node_channel_free(second);
    }

    /* Closing a mailbox: receives fail with ChannelClosed and the descriptor turns readable; the address is
     * free again. */
    CHECK_OK(latchkey_mailbox_close(replies));
    CHECK_OK(latchkey_mailbox_close(replies));
    CHECK_STATUS(latchkey_mailbox_receive(replies, LATCHKEY_WAIT_FOREVER, &message), LATCHKEY_ERR_CHANNEL_CLOSED);
    CHECK(message == NULL);
    CHECK(strcmp(latchkey_last_error(), "ChannelClosed: the mailbox is closed") == 0);
    {
        int replies_fd = -1;
        CHECK_OK(latchkey_mailbox_fd(replies, &replies_fd));
        CHECK(fd_readable(replies_fd, 0));
        CHECK_STATUS(latchkey_mailbox_fd(replies, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    }
    {
        const LatchkeyMailbox *reopened = NULL; /* while the closed handle still exists */
        CHECK_OK(latchkey_node_mailbox(phone.node, "replies", doorbell_only, 1, &reopened));
        latchkey_mailbox_free(reopened); /* frees an open mailbox, and its address */
    }
    latchkey_mailbox_free(replies);
    CHECK_OK(latchkey_node_mailbox(phone.node, "replies", doorbell_only, 1, &replies));
    latchkey_mailbox_free(replies);

    /* Closing the listener handle stops handing out channels; the doorbell still serves new ones. */
    CHECK_OK(latchkey_listener_close(listener));
    CHECK_STATUS(latchkey_listener_accept(listener, LATCHKEY_WAIT_FOREVER, &accepted), LATCHKEY_ERR_CHANNEL_CLOSED);
    CHECK(fd_readable(listener_fd, 0));
    {
        const LatchkeyNodeChannel *third = NULL;
        CHECK_OK(latchkey_node_connect(phone.node, doorbell.address, NULL, "api", doorbell_only, 1, NODE_TIMEOUT_MS, &third));
        const LatchkeyMessage *echoed = NULL;
        CHECK_OK(latchkey_node_channel_request(third, "echo", (const uint8_t *)"still", 5, NODE_TIMEOUT_MS, &echoed));
        latchkey_message_free(echoed);
        latchkey_node_channel_free(third); /* left open: shutdown closes it */
    }

    /* Shutdown: waiting receives end, the node refuses new work, and a second shutdown is harmless. */
    CHECK_OK(latchkey_node_shutdown(doorbell.node));
    CHECK_OK(latchkey_node_shutdown(doorbell.node));
    CHECK_STATUS(latchkey_mailbox_receive(inbox, LATCHKEY_WAIT_FOREVER, &message), LATCHKEY_ERR_CHANNEL_CLOSED);
    CHECK(fd_readable(inbox_fd, 0));
    CHECK_STATUS(latchkey_node_listen_tcp(doorbell.node, "127.0.0.1:0", text, sizeof text, &len), LATCHKEY_ERR_CHANNEL_CLOSED);
    {
        const LatchkeyListener *late = (const LatchkeyListener *)&doorbell;
        CHECK_STATUS(latchkey_node_listen(doorbell.node, "api2", phone_only, 1, &late), LATCHKEY_ERR_CHANNEL_CLOSED);
        CHECK(late == NULL);
    }
    CHECK_STATUS(latchkey_node_connect(doorbell.node, "127.0.0.1:9", NULL, "api", phone_only, 1, NODE_TIMEOUT_MS, &accepted),
                 LATCHKEY_ERR_CHANNEL_CLOSED);
    /* The phone's channel learns that the doorbell went away. */
    {
        const LatchkeyMessage *late = NULL;
        CHECK(latchkey_node_channel_request(channel, "echo", (const uint8_t *)"x", 1, 2000, &late) != LATCHKEY_OK);
        CHECK(late == NULL);
    }

    latchkey_node_channel_free(channel);
    latchkey_mailbox_free(inbox);
    latchkey_listener_free(listener);
    test_node_stop(&phone);
    test_node_stop(&doorbell);
    latchkey_vault_free(vault);
}

/* A relay node, a doorbell registered at it by name, and a phone that reaches the doorbell by that name. */
static void test_node_relay(void) {
    const LatchkeyVault *vault = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    TestNode relay, doorbell, phone;
    test_node_start(&relay, vault, "relay", LATCHKEY_NODE_RELAY, true);
    test_node_start(&doorbell, vault, "doorbell", 0, false);
    test_node_start(&phone, vault, "phone", 0, false);
    const char *relay_only[] = {relay.id};
    const char *phone_only[] = {phone.id};
    const char *doorbell_only[] = {doorbell.id};
    const char *stranger_only[] = {STRANGER};
    char text[BIG];

    const LatchkeyListener *relay_listener = NULL, *listener = NULL;
    CHECK_OK(latchkey_node_listen(relay.node, "api", TRUST_ANY, 1, &relay_listener));
    CHECK_OK(latchkey_node_start_relay(relay.node));

    const LatchkeyMailbox *inbox = NULL;
    CHECK_OK(latchkey_node_listen(doorbell.node, "api", phone_only, 1, &listener));
    CHECK_OK(latchkey_node_mailbox(doorbell.node, "inbox", phone_only, 1, &inbox));
    CHECK_STATUS(latchkey_node_register_at_relay(doorbell.node, relay.address, stranger_only, 1, "doorbell"),
                 LATCHKEY_ERR_UNTRUSTED_PEER);
    CHECK_OK(latchkey_node_register_at_relay(doorbell.node, relay.address, relay_only, 1, "doorbell"));
    /* The name belongs to the doorbell's identity now. */
    CHECK_STATUS(latchkey_node_register_at_relay(phone.node, relay.address, relay_only, 1, "doorbell"), LATCHKEY_ERR_REFUSED);

    const LatchkeyNodeChannel *channel = NULL;
    CHECK_OK(latchkey_node_connect(phone.node, relay.address, "doorbell", "api", doorbell_only, 1, NODE_TIMEOUT_MS, &channel));
    REQUIRE(channel != NULL);
    {
        size_t len = 0;
        CHECK_OK(latchkey_node_channel_peer_identifier(channel, text, sizeof text, &len));
        CHECK(strcmp(text, doorbell.id) == 0); /* end to end: the doorbell, not the relay */
    }
    const LatchkeyMailbox *replies = NULL;
    CHECK_OK(latchkey_node_mailbox(phone.node, "replies", doorbell_only, 1, &replies));
    CHECK_OK(latchkey_node_channel_send(channel, "inbox", (const uint8_t *)"ring", 4, replies));
    const LatchkeyMessage *message = NULL, *answer = NULL;
    CHECK_OK(latchkey_mailbox_receive(inbox, 5000, &message));
    REQUIRE(message != NULL);
    CHECK(strcmp(payload_text(message, text, sizeof text), "ring") == 0);
    CHECK_OK(latchkey_message_peer_identifier(message, text, sizeof text, &(size_t){0}));
    CHECK(strcmp(text, phone.id) == 0);
    CHECK_OK(latchkey_mailbox_reply(inbox, message, (const uint8_t *)"dong", 4));
    CHECK_OK(latchkey_mailbox_receive(replies, 5000, &answer));
    CHECK(answer != NULL && strcmp(payload_text(answer, text, sizeof text), "dong") == 0);
    latchkey_message_free(message);
    latchkey_message_free(answer);

    /* A name nobody registered gives no channel: the relay says so at once (no timeout). */
    {
        const LatchkeyNodeChannel *nobody = (const LatchkeyNodeChannel *)&relay;
        CHECK_STATUS(latchkey_node_connect(phone.node, relay.address, "nobody", "api", doorbell_only, 1, 5000, &nobody),
                     LATCHKEY_ERR_UNKNOWN_ADDRESS);
        CHECK(nobody == NULL);
    }

    latchkey_node_channel_free(channel);
    latchkey_mailbox_free(replies);
    latchkey_mailbox_free(inbox);
    latchkey_listener_free(listener);
    latchkey_listener_free(relay_listener);
    test_node_stop(&phone);
    test_node_stop(&doorbell);
    test_node_stop(&relay);
    latchkey_vault_free(vault);
}

static size_t key_count(const LatchkeyVault *vault) {
    size_t count = 999;
    CHECK_OK(latchkey_vault_key_count(vault, &count));
    return count;
}

/* A vault holds exactly the keys that live identities use: a failed create or rotate leaves no key, a
 * rotation deletes the rotated-away key, and freeing an identity deletes its keys (once no handshake made
 * from it still needs them). */
static void test_vault_holds_exactly_the_live_keys(void) {
    const LatchkeyVault *vault = NULL;
    const LatchkeyIdentity *identity = (const LatchkeyIdentity *)&vault, *other = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    /* Created at the end of time, the key would expire before it is created: the keys were already
     * generated when that is found, and are deleted again. */
    CHECK_STATUS(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, UINT64_MAX, &identity),
                 LATCHKEY_ERR_INVALID_HISTORY);
    CHECK(identity == NULL);
    CHECK(key_count(vault) == 0);
    CHECK_STATUS(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ECDSA_P256, 0, 0, UINT64_MAX, &identity),
                 LATCHKEY_ERR_INVALID_HISTORY);
    CHECK(key_count(vault) == 0);
    uint8_t seed[32], secret[32];
    fill_pattern(seed, sizeof seed, 1);
    fill_pattern(secret, sizeof secret, 2);
    CHECK_STATUS(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, UINT64_MAX, &identity),
                 LATCHKEY_ERR_INVALID_HISTORY);
    CHECK(key_count(vault) == 0);

    CHECK_OK(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ECDSA_P256, 0, 0, NOW, &identity));
    CHECK(key_count(vault) == 2);
    CHECK_OK(latchkey_identity_rotate(identity, NULL, 0, NOW + 10));
    CHECK(key_count(vault) == 2); /* the rotated-away key is gone */
    CHECK_OK(latchkey_identity_rotate(identity, seed, 32, NOW + 20));
    CHECK(key_count(vault) == 2);
    CHECK_STATUS(latchkey_identity_rotate(identity, NULL, 0, UINT64_MAX), LATCHKEY_ERR_INVALID_HISTORY);
    CHECK_STATUS(latchkey_identity_rotate(identity, secret, 32, UINT64_MAX), LATCHKEY_ERR_INVALID_HISTORY);
    CHECK(key_count(vault) == 2);
    size_t changes = 0;
    CHECK_OK(latchkey_identity_change_count(identity, &changes));
    CHECK(changes == 3);

    /* A handshake keeps the identity's keys alive after the identity handle is freed. */
    CHECK_OK(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &other));
    CHECK(key_count(vault) == 4);
    LatchkeyHandshake *initiator = NULL, *responder = NULL;
    CHECK_OK(latchkey_handshake_new(identity, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW,
                                    &initiator));
    CHECK_OK(latchkey_handshake_new(other, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW,
                                    &responder));
    latchkey_identity_free(identity);
    latchkey_identity_free(other);
    CHECK(key_count(vault) == 4);
    static uint8_t m1[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m2[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN],
        m3[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t l1 = 0, l2 = 0, l3 = 0, l4 = 0;
    CHECK_OK(latchkey_handshake_step(initiator, NULL, 0, m1, sizeof m1, &l1));
    CHECK_OK(latchkey_handshake_step(responder, m1, l1, m2, sizeof m2, &l2));
    CHECK_OK(latchkey_handshake_step(initiator, m2, l2, m3, sizeof m3, &l3));
    CHECK_OK(latchkey_handshake_step(responder, m3, l3, m1, sizeof m1, &l4));
    LatchkeyChannel *channel = NULL;
    CHECK_OK(latchkey_handshake_into_channel(initiator, &channel));
    latchkey_handshake_free(initiator);
    CHECK(key_count(vault) == 2);
    latchkey_handshake_free(responder);
    CHECK(key_count(vault) == 0); /* the channel needs no identity key */
    latchkey_channel_free(channel);
    latchkey_vault_free(vault);
}

/* Out-of-turn calls end the handshake, as latchkey_handshake_step's documentation says. */
static void test_out_of_turn_ends_the_handshake(void) {
    Pair pair;
    pair_identities(&pair);
    static uint8_t m1[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m2[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t l1 = 0, l2 = 0;
    REQUIRE(latchkey_handshake_new(pair.alice, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW,
                                   &pair.initiator) == LATCHKEY_OK);
    REQUIRE(latchkey_handshake_new(pair.bob, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW,
                                   &pair.responder) == LATCHKEY_OK);
    CHECK_OK(latchkey_handshake_step(pair.initiator, NULL, 0, m1, sizeof m1, &l1));
    /* The responder must read m1 first: asked to write, it fails, and stays failed even for the right m1. */
    CHECK_STATUS(latchkey_handshake_step(pair.responder, NULL, 0, m2, sizeof m2, &l2), LATCHKEY_ERR_INVALID_STATE);
    CHECK_STATUS(latchkey_handshake_step(pair.responder, m1, l1, m2, sizeof m2, &l2), LATCHKEY_ERR_INVALID_STATE);
    CHECK(strstr(latchkey_last_error(), "failed earlier") != NULL);
    /* The initiator, waiting for m2, is called with nothing: over as well. */
    CHECK_STATUS(latchkey_handshake_step(pair.initiator, NULL, 0, m2, sizeof m2, &l2), LATCHKEY_ERR_INVALID_STATE);
    CHECK_STATUS(latchkey_handshake_step(pair.initiator, m1, l1, m2, sizeof m2, &l2), LATCHKEY_ERR_INVALID_STATE);
    uint8_t hash[32];
    size_t len = 0;
    CHECK_STATUS(latchkey_handshake_hash(pair.initiator, hash, sizeof hash, &len), LATCHKEY_ERR_INVALID_STATE);
    pair_free(&pair);
}

/* Runs a handshake between two identities trusting any peer; returns the first failing status. */
static LatchkeyStatus handshake_status(const LatchkeyIdentity *initiator_id, const LatchkeyIdentity *responder_id) {
    LatchkeyHandshake *i = NULL, *r = NULL;
    static uint8_t m1[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], m2[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN],
        m3[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t l1 = 0, l2 = 0, l3 = 0, l4 = 0;
    LatchkeyStatus status = latchkey_handshake_new(initiator_id, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_AESGCM,
                                                   TRUST_ANY, 1, NOW, &i);
    if (status == LATCHKEY_OK)
        status = latchkey_handshake_new(responder_id, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_AESGCM, TRUST_ANY, 1,
                                        NOW, &r);
    if (status == LATCHKEY_OK) status = latchkey_handshake_step(i, NULL, 0, m1, sizeof m1, &l1);
    if (status == LATCHKEY_OK) status = latchkey_handshake_step(r, m1, l1, m2, sizeof m2, &l2);
    if (status == LATCHKEY_OK) status = latchkey_handshake_step(i, m2, l2, m3, sizeof m3, &l3);
    if (status == LATCHKEY_OK) status = latchkey_handshake_step(r, m3, l3, m1, sizeof m1, &l4);
    latchkey_handshake_free(i);
    latchkey_handshake_free(r);
    return status;
}

/* An identity's handshakes consult the histories it pinned at earlier contacts: a peer that presents an
 * older (rolled back) or a diverging (forked) history is refused with the error that says which. */
static void test_pinned_histories(void) {
    const LatchkeyVault *vault = NULL;
    const LatchkeyIdentity *me = NULL, *v1 = NULL, *v2 = NULL, *fork = NULL;
    uint8_t seed[32], secret[32], rot_a[32], rot_b[32];
    fill_pattern(seed, 32, 40);
    fill_pattern(secret, 32, 80);
    fill_pattern(rot_a, 32, 120);
    fill_pattern(rot_b, 32, 160);
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    CHECK_OK(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &me));
    CHECK_OK(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, NOW - 100, &v1));
    CHECK_OK(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, NOW - 100, &v2));
    CHECK_OK(latchkey_identity_rotate(v2, rot_a, 32, NOW - 50));
    CHECK_OK(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, NOW - 100, &fork));
    CHECK_OK(latchkey_identity_rotate(fork, rot_b, 32, NOW - 50));
    CHECK_OK(handshake_status(me, v2)); /* first contact: pinned */
    CHECK_STATUS(handshake_status(me, v1), LATCHKEY_ERR_HISTORY_ROLLBACK);
    CHECK_STATUS(handshake_status(v1, me), LATCHKEY_ERR_HISTORY_ROLLBACK);
    CHECK_STATUS(handshake_status(me, fork), LATCHKEY_ERR_HISTORY_FORK);
    CHECK_STATUS(handshake_status(fork, me), LATCHKEY_ERR_HISTORY_FORK);
    CHECK_OK(handshake_status(v2, me));
    latchkey_identity_free(me);
    latchkey_identity_free(v1);
    latchkey_identity_free(v2);
    latchkey_identity_free(fork);
    CHECK(key_count(vault) == 0);
    latchkey_vault_free(vault);
}

static void hex_of(const uint8_t *bytes, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", bytes[i]);
}

/* The secret scan, C part: after failures of every kind made with known secrets, no last-error message holds
 * a secret, as hex (either case) or as raw bytes. */
static void test_secret_scan(void) {
    uint8_t seed[32], secret[32], rotation[32];
    fill_pattern(seed, 32, 0x31);
    fill_pattern(secret, 32, 0x61);
    fill_pattern(rotation, 32, 0x91);
    const uint8_t *secrets[] = {seed, secret, rotation};
    const LatchkeyVault *vault = NULL;
    const LatchkeyIdentity *identity = NULL;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    char messages[16][1024];
    int n = 0;
#define KEEP_ERROR(call)                                                                                               do {                                                                                                                   CHECK((call) != LATCHKEY_OK);                                                                                      snprintf(messages[n++], sizeof messages[0], "%s", latchkey_last_error());                                      } while (0)
    KEEP_ERROR(latchkey_identity_from_secrets(vault, seed, 31, secret, 32, 0, 0, NOW, &identity));
    KEEP_ERROR(latchkey_identity_from_secrets(vault, seed, 32, secret, 33, 0, 0, NOW, &identity));
    KEEP_ERROR(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, UINT64_MAX, &identity));
    CHECK_OK(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, NOW, &identity));
    KEEP_ERROR(latchkey_identity_rotate(identity, rotation, 31, NOW + 1));
    KEEP_ERROR(latchkey_identity_rotate(identity, rotation, 32, UINT64_MAX));
    KEEP_ERROR(latchkey_handshake_step(NULL, seed, 32, rotation, 32, NULL));
    LatchkeyHandshake *handshake = NULL;
    CHECK_OK(latchkey_handshake_new(identity, LATCHKEY_ROLE_RESPONDER, LATCHKEY_SUITE_CHACHAPOLY, TRUST_ANY, 1, NOW,
                                    &handshake));
    uint8_t out[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t len = 0;
    KEEP_ERROR(latchkey_handshake_step(handshake, secret, 31, out, sizeof out, &len)); /* a bad m1 */
    latchkey_handshake_free(handshake);
    LatchkeyHandshake *none = NULL;
    KEEP_ERROR(latchkey_handshake_new(identity, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, NULL, 0, NOW,
                                      &none));
#undef KEEP_ERROR
    for (int m = 0; m < n; m++) {
        CHECK(messages[m][0] != '\0');
        for (size_t s = 0; s < sizeof secrets / sizeof secrets[0]; s++) {
            char hex[65];
            hex_of(secrets[s], 32, hex);
            /* Any 8 consecutive secret bytes, as hex or raw, would be a leak. */
            for (size_t at = 0; at + 8 <= 32; at++) {
                char piece[17];
                memcpy(piece, hex + 2 * at, 16);
                piece[16] = '\0';
                if (strstr(messages[m], piece) != NULL || strcasestr(messages[m], piece) != NULL) {
                    CHECK(!"secret hex in a last-error message");
                    fprintf(stderr, "  message: %s\n", messages[m]);
                }
                if (memmem(messages[m], strlen(messages[m]), secrets[s] + at, 8) != NULL) {
                    CHECK(!"raw secret bytes in a last-error message");
                }
            }
        }
    }
    latchkey_identity_free(identity);
    latchkey_vault_free(vault);
}

/* 65,520 bytes, one over LATCHKEY_MAX_PLAINTEXT_LEN: MESSAGE_TOO_LARGE whatever the buffer (never a needed
 * size that could not succeed), and nothing written to `out`. */
static void test_oversized_plaintext(void) {
    Pair pair;
    pair_identities(&pair);
    run_handshake(&pair, LATCHKEY_SUITE_AESGCM, false);
    LatchkeyChannel *channel = NULL;
    REQUIRE(latchkey_handshake_into_channel(pair.initiator, &channel) == LATCHKEY_OK);
    static uint8_t plaintext[LATCHKEY_MAX_PLAINTEXT_LEN + 1], out[LATCHKEY_MAX_PLAINTEXT_LEN + 1 + LATCHKEY_FRAME_OVERHEAD];
    memset(plaintext, 0x5a, sizeof plaintext);
    memset(out, 0, sizeof out);
    CHECK(sizeof plaintext == 65520);
    size_t len = 99;
    CHECK_STATUS(latchkey_channel_encrypt(channel, plaintext, sizeof plaintext, out, 16, &len), LATCHKEY_ERR_MESSAGE_TOO_LARGE);
    CHECK(len == 0);
    CHECK_STATUS(latchkey_channel_encrypt(channel, plaintext, sizeof plaintext, out, sizeof out, &len),
                 LATCHKEY_ERR_MESSAGE_TOO_LARGE);
    bool clean = true;
    for (size_t i = 0; i < sizeof out; i++) clean = clean && out[i] == 0;
    CHECK(clean);
    /* The largest plaintext succeeds with exactly the size BUFFER_TOO_SMALL reports. */
    CHECK_STATUS(latchkey_channel_encrypt(channel, plaintext, LATCHKEY_MAX_PLAINTEXT_LEN, out, 16, &len),
                 LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_MAX_PLAINTEXT_LEN + LATCHKEY_FRAME_OVERHEAD);
    CHECK_OK(latchkey_channel_encrypt(channel, plaintext, LATCHKEY_MAX_PLAINTEXT_LEN, out, len, &len));
    latchkey_channel_free(channel);
    pair_free(&pair);
}

int main(void) {
    test_version_and_error_names();
    test_last_error();
    test_vault();
    test_vault_holds_exactly_the_live_keys();
    test_out_of_turn_ends_the_handshake();
    test_pinned_histories();
    test_secret_scan();
    test_oversized_plaintext();
    test_identity_create_and_identifier();
    test_identity_from_secrets();
    test_history_and_rotation();
    test_handshake_arguments();
    test_handshake_and_channel(LATCHKEY_SUITE_CHACHAPOLY);
    test_handshake_and_channel(LATCHKEY_SUITE_AESGCM);
    test_untrusted_peer_is_refused();
    test_trust_is_never_implied();
    test_expired_peer_is_refused();
    test_error_table();
    test_node_arguments();
    test_node_channels_and_mailboxes();
    test_node_relay();
    test_node_suite();
    return check_summary("test_api");
}
