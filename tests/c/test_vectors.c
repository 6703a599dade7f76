/* Reproduces the shared test vectors (the JSON files in tests/vectors) byte for byte through the C ABI. The JSON is
 * turned into a line format by vectors_to_lines.py at build time; the expected bytes are the JSON's.
 *
 * Links against the TEST build of the library (cargo feature `test-vectors`): fixing the ephemeral key is a
 * test-only entry point, declared in latchkey_testing.h and absent from the published header and library. */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "latchkey_testing.h"

#define MAX_BYTES 65536
#define MAX_TOKENS 12

typedef struct {
    uint8_t *bytes;
    size_t len;
} Bytes;

/* Decodes hex ("-" is empty). Exits on malformed input: the converter already validated it. */
static Bytes hex(const char *text) {
    Bytes out = {NULL, 0};
    if (strcmp(text, "-") == 0) {
        out.bytes = malloc(1);
        REQUIRE(out.bytes != NULL);
        return out;
    }
    size_t len = strlen(text);
    REQUIRE(len % 2 == 0);
    out.len = len / 2;
    out.bytes = malloc(out.len + 1);
    REQUIRE(out.bytes != NULL);
    for (size_t i = 0; i < out.len; i++) {
        unsigned value = 0;
        if (sscanf(text + 2 * i, "%2x", &value) != 1) {
            fprintf(stderr, "bad hex in vector file: %.40s\n", text);
            exit(1);
        }
        out.bytes[i] = (uint8_t)value;
    }
    return out;
}

static bool bytes_equal(const uint8_t *actual, size_t actual_len, const char *expected_hex) {
    Bytes expected = hex(expected_hex);
    bool equal = actual_len == expected.len && memcmp(actual, expected.bytes, actual_len) == 0;
    if (!equal) {
        fprintf(stderr, "  bytes differ: got %zu bytes, expected %zu (%.40s...)\n", actual_len, expected.len,
                expected_hex);
    }
    free(expected.bytes);
    return equal;
}

static int split(char *line, char **tokens) {
    int count = 0;
    for (char *token = strtok(line, " \n"); token != NULL && count < MAX_TOKENS; token = strtok(NULL, " \n")) {
        tokens[count++] = token;
    }
    return count;
}

static uint64_t number(const char *text) {
    return strtoull(text, NULL, 10);
}

/* State of the identity vector being replayed. */
typedef struct {
    const LatchkeyVault *vault;
    const LatchkeyIdentity *identity;
    uint8_t history[MAX_BYTES];
    size_t history_len;
    uint8_t seed[32], secret[32];
    uint64_t created_at, key_validity, attestation_validity;
    int rotations;
} IdentityRun;

static void load_secret(uint8_t *target, const char *text) {
    Bytes secret = hex(text);
    REQUIRE(secret.len == 32);
    memcpy(target, secret.bytes, 32);
    free(secret.bytes);
}

static void identity_line(IdentityRun *run, char **tokens, int count, int *vectors) {
    size_t len = 0;
    char identifier[LATCHKEY_IDENTIFIER_SIZE];
    if (strcmp(tokens[0], "secrets") == 0 && count == 3) {
        load_secret(run->seed, tokens[1]);
        load_secret(run->secret, tokens[2]);
    } else if (strcmp(tokens[0], "times") == 0 && count == 4) {
        run->created_at = number(tokens[1]);
        run->key_validity = number(tokens[2]);
        run->attestation_validity = number(tokens[3]);
        REQUIRE(latchkey_vault_new(&run->vault) == LATCHKEY_OK);
        CHECK_OK(latchkey_identity_from_secrets(run->vault, run->seed, 32, run->secret, 32, run->key_validity,
                                                run->attestation_validity, run->created_at, &run->identity));
        REQUIRE(run->identity != NULL);
    } else if (strcmp(tokens[0], "identifier") == 0 && count == 2) {
        CHECK_OK(latchkey_identity_identifier(run->identity, identifier, sizeof identifier, &len));
        CHECK(strcmp(identifier, tokens[1]) == 0);
    } else if (strcmp(tokens[0], "history") == 0 && count == 2) {
        CHECK_OK(latchkey_identity_export_history(run->identity, run->history, sizeof run->history, &run->history_len));
        CHECK(bytes_equal(run->history, run->history_len, tokens[1]));
        CHECK_OK(latchkey_history_identifier(run->history, run->history_len, identifier, sizeof identifier, &len));
    } else if (strcmp(tokens[0], "rotation") == 0 && count == 4) {
        uint8_t seed[32];
        static uint8_t rotated[MAX_BYTES];
        size_t rotated_len = 0;
        load_secret(seed, tokens[1]);
        CHECK_OK(latchkey_identity_rotate(run->identity, seed, sizeof seed, number(tokens[2])));
        CHECK_OK(latchkey_identity_export_history(run->identity, rotated, sizeof rotated, &rotated_len));
        CHECK(bytes_equal(rotated, rotated_len, tokens[3]));
        /* A peer holding the previous history accepts this one. */
        CHECK_OK(latchkey_verify_history_update(run->history, run->history_len, rotated, rotated_len, identifier,
                                                sizeof identifier, &len));
        memcpy(run->history, rotated, rotated_len);
        run->history_len = rotated_len;
        run->rotations++;
    } else if (strcmp(tokens[0], "end") == 0) {
        latchkey_identity_free(run->identity);
        latchkey_vault_free(run->vault);
        (*vectors)++;
    } else {
        fprintf(stderr, "unexpected identity line: %s\n", tokens[0]);
        exit(1);
    }
}

/* State of the handshake vector being replayed. */
typedef struct {
    uint32_t suite;
    uint64_t now;
    const LatchkeyVault *vault;
    const LatchkeyIdentity *identities[2];
    char identifiers[2][LATCHKEY_IDENTIFIER_SIZE];
    LatchkeyHandshake *handshakes[2];
    LatchkeyChannel *channels[2];
    int messages;
    int transports;
} HandshakeRun;

enum { INITIATOR = 0, RESPONDER = 1 };

static int side_index(const char *name) {
    if (strcmp(name, "initiator") == 0) {
        return INITIATOR;
    }
    REQUIRE(strcmp(name, "responder") == 0);
    return RESPONDER;
}

static void handshake_side(HandshakeRun *run, char **tokens) {
    int side = side_index(tokens[1]);
    uint8_t seed[32], secret[32], ephemeral[32];
    load_secret(seed, tokens[2]);
    load_secret(secret, tokens[3]);
    load_secret(ephemeral, tokens[4]);
    if (run->vault == NULL) {
        REQUIRE(latchkey_vault_new(&run->vault) == LATCHKEY_OK);
    }
    CHECK_OK(latchkey_identity_from_secrets(run->vault, seed, 32, secret, 32, number(tokens[6]), number(tokens[7]),
                                            number(tokens[5]), &run->identities[side]));
    REQUIRE(run->identities[side] != NULL);
    size_t len = 0;
    CHECK_OK(latchkey_identity_identifier(run->identities[side], run->identifiers[side], LATCHKEY_IDENTIFIER_SIZE,
                                          &len));
    CHECK(strcmp(run->identifiers[side], tokens[8]) == 0);
    uint32_t role = side == INITIATOR ? LATCHKEY_ROLE_INITIATOR : LATCHKEY_ROLE_RESPONDER;
    /* The vectors pin bytes, not a trust decision: both sides accept any identity, said explicitly. */
    const char *trust_any[] = {LATCHKEY_TRUST_ANY};
    CHECK_OK(latchkey_handshake_new(run->identities[side], role, run->suite, trust_any, 1, run->now,
                                    &run->handshakes[side]));
    REQUIRE(run->handshakes[side] != NULL);
    CHECK_OK(latchkey_handshake_set_ephemeral_for_test_vectors(run->handshakes[side], ephemeral, 32));
}

/* Message i (0-based) is written by the initiator for i = 0, 2 and by the responder for i = 1; the writer
 * produces it in response to the previous message. */
static void handshake_message(HandshakeRun *run, const char *expected_hex) {
    static uint8_t previous[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN], out[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    static size_t previous_len = 0;
    size_t out_len = 0;
    int writer = run->messages % 2 == 0 ? INITIATOR : RESPONDER;
    const uint8_t *input = run->messages == 0 ? NULL : previous;
    size_t input_len = run->messages == 0 ? 0 : previous_len;
    CHECK_OK(latchkey_handshake_step(run->handshakes[writer], input, input_len, out, sizeof out, &out_len));
    CHECK(bytes_equal(out, out_len, expected_hex));
    memcpy(previous, out, out_len);
    previous_len = out_len;
    run->messages++;
    if (run->messages == 3) {
        /* The responder reads m3 and has nothing more to send. */
        CHECK_OK(latchkey_handshake_step(run->handshakes[RESPONDER], previous, previous_len, out, sizeof out,
                                         &out_len));
        CHECK(out_len == 0);
    }
}

static void handshake_finish(HandshakeRun *run, const char *hash_hex) {
    REQUIRE(run->messages == 3);
    uint8_t hash[LATCHKEY_HANDSHAKE_HASH_LEN];
    size_t len = 0;
    for (int side = 0; side < 2; side++) {
        bool finished = false;
        CHECK_OK(latchkey_handshake_is_finished(run->handshakes[side], &finished));
        CHECK(finished);
        CHECK_OK(latchkey_handshake_hash(run->handshakes[side], hash, sizeof hash, &len));
        CHECK(bytes_equal(hash, len, hash_hex));
        CHECK_OK(latchkey_handshake_into_channel(run->handshakes[side], &run->channels[side]));
        REQUIRE(run->channels[side] != NULL);
        CHECK_OK(latchkey_channel_handshake_hash(run->channels[side], hash, sizeof hash, &len));
        CHECK(bytes_equal(hash, len, hash_hex));
        char peer[LATCHKEY_IDENTIFIER_SIZE];
        CHECK_OK(latchkey_channel_peer_identifier(run->channels[side], peer, sizeof peer, &len));
        CHECK(strcmp(peer, run->identifiers[1 - side]) == 0);
    }
}

static void handshake_transport(HandshakeRun *run, char **tokens) {
    int from = side_index(tokens[1]);
    uint64_t nonce = number(tokens[2]);
    Bytes plaintext = hex(tokens[3]);
    static uint8_t frame[MAX_BYTES], decrypted[MAX_BYTES];
    size_t frame_len = 0, decrypted_len = 0;
    CHECK_OK(latchkey_channel_encrypt(run->channels[from], plaintext.bytes, plaintext.len, frame, sizeof frame,
                                      &frame_len));
    CHECK(bytes_equal(frame, frame_len, tokens[4]));
    uint64_t header = 0;
    for (int i = 0; i < 8; i++) {
        header = header << 8 | frame[i];
    }
    CHECK(header == nonce);
    CHECK_OK(latchkey_channel_decrypt(run->channels[1 - from], frame, frame_len, decrypted, sizeof decrypted,
                                      &decrypted_len));
    CHECK(decrypted_len == plaintext.len && memcmp(decrypted, plaintext.bytes, plaintext.len) == 0);
    free(plaintext.bytes);
    run->transports++;
}

static void handshake_line(HandshakeRun *run, char **tokens, int count, int *vectors) {
    if (strcmp(tokens[0], "suite") == 0 && count == 3) {
        if (strcmp(tokens[1], "ChaChaPoly") == 0) {
            run->suite = LATCHKEY_SUITE_CHACHAPOLY;
        } else {
            REQUIRE(strcmp(tokens[1], "AesGcm") == 0);
            run->suite = LATCHKEY_SUITE_AESGCM;
        }
        run->now = number(tokens[2]);
    } else if (strcmp(tokens[0], "side") == 0 && count == 9) {
        handshake_side(run, tokens);
    } else if (strcmp(tokens[0], "message") == 0 && count == 2) {
        handshake_message(run, tokens[1]);
    } else if (strcmp(tokens[0], "hash") == 0 && count == 2) {
        handshake_finish(run, tokens[1]);
    } else if (strcmp(tokens[0], "transport") == 0 && count == 5) {
        handshake_transport(run, tokens);
    } else if (strcmp(tokens[0], "end") == 0) {
        CHECK(run->transports > 0);
        for (int side = 0; side < 2; side++) {
            latchkey_channel_free(run->channels[side]);
            latchkey_handshake_free(run->handshakes[side]);
            latchkey_identity_free(run->identities[side]);
        }
        latchkey_vault_free(run->vault);
        (*vectors)++;
    } else {
        fprintf(stderr, "unexpected handshake line: %s\n", tokens[0]);
        exit(1);
    }
}

/* The test-only entry point checks its arguments like any other call, and only works before the first step. */
static void test_set_ephemeral_arguments(void) {
    const LatchkeyVault *vault = NULL;
    const LatchkeyIdentity *identity = NULL;
    LatchkeyHandshake *handshake = NULL;
    static const char *const any[] = {LATCHKEY_TRUST_ANY};
    CHECK_OK(latchkey_vault_new(&vault));
    CHECK_OK(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 1800000000, &identity));
    CHECK_OK(latchkey_handshake_new(identity, LATCHKEY_ROLE_INITIATOR, LATCHKEY_SUITE_CHACHAPOLY, any, 1, 1800000000,
                                    &handshake));
    uint8_t secret[32] = {9};
    uint8_t out[LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN];
    size_t len = 0;
    CHECK_STATUS(latchkey_handshake_set_ephemeral_for_test_vectors(NULL, secret, 32), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_set_ephemeral_for_test_vectors(handshake, secret, 16), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_handshake_set_ephemeral_for_test_vectors(handshake, NULL, 32), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_OK(latchkey_handshake_set_ephemeral_for_test_vectors(handshake, secret, 32));
    CHECK_OK(latchkey_handshake_step(handshake, NULL, 0, out, sizeof out, &len));
    CHECK(len == 32);
    CHECK_STATUS(latchkey_handshake_set_ephemeral_for_test_vectors(handshake, secret, 32), LATCHKEY_ERR_INVALID_STATE);
    latchkey_handshake_free(handshake);
    latchkey_identity_free(identity);
    latchkey_vault_free(vault);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s vectors.txt\n", argv[0]);
        return 2;
    }
    test_set_ephemeral_arguments();
    FILE *input = fopen(argv[1], "r");
    REQUIRE(input != NULL);
    char *line = NULL;
    size_t capacity = 0;
    enum { NONE, IDENTITY, HANDSHAKE } kind = NONE;
    static IdentityRun identity;
    static HandshakeRun handshake;
    int identity_vectors = 0, handshake_vectors = 0, rotations = 0;
    while (getline(&line, &capacity, input) != -1) {
        char *tokens[MAX_TOKENS];
        if (strncmp(line, "identity ", 9) == 0) {
            memset(&identity, 0, sizeof identity);
            kind = IDENTITY;
            printf("identity vector: %s", line + 9);
            continue;
        }
        if (strncmp(line, "handshake ", 10) == 0) {
            memset(&handshake, 0, sizeof handshake);
            kind = HANDSHAKE;
            printf("handshake vector: %s", line + 10);
            continue;
        }
        int count = split(line, tokens);
        REQUIRE(count > 0 && kind != NONE);
        if (kind == IDENTITY) {
            identity_line(&identity, tokens, count, &identity_vectors);
            if (strcmp(tokens[0], "end") == 0) {
                rotations += identity.rotations;
            }
        } else {
            handshake_line(&handshake, tokens, count, &handshake_vectors);
        }
    }
    free(line);
    fclose(input);
    printf("reproduced %d identity vectors (%d rotations) and %d handshake vectors\n", identity_vectors, rotations,
           handshake_vectors);
    /* An empty or truncated vector file must not pass. */
    CHECK(identity_vectors > 0 && handshake_vectors > 0);
    return check_summary("test_vectors");
}
