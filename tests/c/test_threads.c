/* The threading rules of the C ABI: shared handles (vault, identity) used from several threads at once,
 * owned handles (handshake, channel) used by one thread each, and the last error kept per thread. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "check.h"

#define THREADS 4
#define MESSAGES 20
#define ROTATIONS 5
#define NOW 1800000000u
/* Handshakes check validity after every rotation below happened. */
#define HANDSHAKE_TIME (NOW + 1000)

static const LatchkeyVault *vault;
static const LatchkeyIdentity *alice, *bob;
static char alice_id[LATCHKEY_IDENTIFIER_SIZE], bob_id[LATCHKEY_IDENTIFIER_SIZE];
static pthread_barrier_t barrier;

/* check.h's counters are not atomic: worker threads count their own failures and report them. */
typedef struct {
    int index;
    int checks;
    int failures;
} Worker;

#define WORKER_CHECK(worker, cond)                                                                         \
    do {                                                                                                   \
        (worker)->checks++;                                                                                \
        if (!(cond)) {                                                                                     \
            (worker)->failures++;                                                                          \
            fprintf(stderr, "%s:%d: thread %d: CHECK failed: %s (last error: \"%s\")\n", __FILE__,         \
                    __LINE__, (worker)->index, #cond, latchkey_last_error());                              \
        }                                                                                                  \
    } while (0)

static void *handshake_worker(void *argument) {
    Worker *worker = argument;
    uint8_t *m1 = malloc(LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN), *m2 = malloc(LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN),
            *m3 = malloc(LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN);
    if (m1 == NULL || m2 == NULL || m3 == NULL) {
        worker->failures++;
        free(m1);
        free(m2);
        free(m3);
        return NULL;
    }
    size_t l1 = 0, l2 = 0, l3 = 0, none = 0, len = 0;

    /* Each thread fails differently; after everyone failed, each still sees its own message. */
    const LatchkeyIdentity *unused = NULL;
    uint32_t bad_algorithm = 100 + (uint32_t)worker->index;
    WORKER_CHECK(worker, latchkey_identity_create(vault, bad_algorithm, 0, 0, NOW, &unused) ==
                             LATCHKEY_ERR_INVALID_ARGUMENT);
    pthread_barrier_wait(&barrier);
    char expected[64];
    snprintf(expected, sizeof expected, "InvalidArgument: unknown signing algorithm %u", bad_algorithm);
    WORKER_CHECK(worker, strcmp(latchkey_last_error(), expected) == 0);

    uint32_t suite = worker->index % 2 == 0 ? LATCHKEY_SUITE_CHACHAPOLY : LATCHKEY_SUITE_AESGCM;
    /* No trust list is no longer "any peer": refused, with this thread's own message naming the way out. */
    LatchkeyHandshake *refused = NULL;
    WORKER_CHECK(worker, latchkey_handshake_new(bob, LATCHKEY_ROLE_RESPONDER, suite, NULL, 0, HANDSHAKE_TIME,
                                                &refused) == LATCHKEY_ERR_INVALID_ARGUMENT);
    WORKER_CHECK(worker, refused == NULL);
    WORKER_CHECK(worker, strncmp(latchkey_last_error(), "InvalidArgument: no trust given", 31) == 0);
    WORKER_CHECK(worker, strstr(latchkey_last_error(), "{LATCHKEY_TRUST_ANY}") != NULL);

    /* Half the responders name Alice, the other half accept any identity explicitly. */
    const char *alice_trusts[] = {bob_id};
    const char *bob_trusts[] = {worker->index % 2 == 0 ? alice_id : LATCHKEY_TRUST_ANY};
    LatchkeyHandshake *initiator = NULL, *responder = NULL;
    LatchkeyChannel *to_bob = NULL, *to_alice = NULL;
    WORKER_CHECK(worker, latchkey_handshake_new(alice, LATCHKEY_ROLE_INITIATOR, suite, alice_trusts, 1, HANDSHAKE_TIME,
                                                &initiator) == LATCHKEY_OK);
    WORKER_CHECK(worker, latchkey_handshake_new(bob, LATCHKEY_ROLE_RESPONDER, suite, bob_trusts, 1, HANDSHAKE_TIME,
                                                &responder) == LATCHKEY_OK);
    WORKER_CHECK(worker, latchkey_handshake_step(initiator, NULL, 0, m1, LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN, &l1) == LATCHKEY_OK);
    WORKER_CHECK(worker, latchkey_handshake_step(responder, m1, l1, m2, LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN, &l2) == LATCHKEY_OK);
    WORKER_CHECK(worker, latchkey_handshake_step(initiator, m2, l2, m3, LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN, &l3) == LATCHKEY_OK);
    WORKER_CHECK(worker, latchkey_handshake_step(responder, m3, l3, NULL, 0, &none) == LATCHKEY_OK);
    WORKER_CHECK(worker, latchkey_handshake_into_channel(initiator, &to_bob) == LATCHKEY_OK);
    WORKER_CHECK(worker, latchkey_handshake_into_channel(responder, &to_alice) == LATCHKEY_OK);
    latchkey_handshake_free(initiator);
    latchkey_handshake_free(responder);
    free(m1);
    free(m2);
    free(m3);

    char peer[LATCHKEY_IDENTIFIER_SIZE];
    WORKER_CHECK(worker, latchkey_channel_peer_identifier(to_bob, peer, sizeof peer, &len) == LATCHKEY_OK);
    WORKER_CHECK(worker, strcmp(peer, bob_id) == 0);
    WORKER_CHECK(worker, latchkey_channel_peer_identifier(to_alice, peer, sizeof peer, &len) == LATCHKEY_OK);
    WORKER_CHECK(worker, strcmp(peer, alice_id) == 0);
    for (int i = 0; i < MESSAGES; i++) {
        char text[64];
        uint8_t frame[128], plain[128];
        size_t frame_len = 0, plain_len = 0;
        int text_len = snprintf(text, sizeof text, "thread %d message %d", worker->index, i);
        WORKER_CHECK(worker, latchkey_channel_encrypt(to_bob, (const uint8_t *)text, (size_t)text_len, frame,
                                                      sizeof frame, &frame_len) == LATCHKEY_OK);
        WORKER_CHECK(worker, latchkey_channel_decrypt(to_alice, frame, frame_len, plain, sizeof plain,
                                                      &plain_len) == LATCHKEY_OK);
        WORKER_CHECK(worker, plain_len == (size_t)text_len && memcmp(plain, text, plain_len) == 0);
    }
    latchkey_channel_free(to_bob);
    latchkey_channel_free(to_alice);
    return NULL;
}

static void *rotation_worker(void *argument) {
    Worker *worker = argument;
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < ROTATIONS; i++) {
        WORKER_CHECK(worker, latchkey_identity_rotate(alice, NULL, 0, NOW + 1 + (uint64_t)i) == LATCHKEY_OK);
    }
    return NULL;
}

int main(void) {
    size_t len = 0;
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &alice) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, NOW, &bob) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_identifier(alice, alice_id, sizeof alice_id, &len) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_identifier(bob, bob_id, sizeof bob_id, &len) == LATCHKEY_OK);
    REQUIRE(pthread_barrier_init(&barrier, NULL, THREADS + 1) == 0);

    pthread_t threads[THREADS + 1];
    Worker workers[THREADS + 1];
    for (int i = 0; i <= THREADS; i++) {
        workers[i].index = i;
        workers[i].checks = 0;
        workers[i].failures = 0;
        REQUIRE(pthread_create(&threads[i], NULL, i < THREADS ? handshake_worker : rotation_worker, &workers[i]) ==
                0);
    }
    for (int i = 0; i <= THREADS; i++) {
        REQUIRE(pthread_join(threads[i], NULL) == 0);
        check_count += workers[i].checks;
        check_failures += workers[i].failures;
    }
    pthread_barrier_destroy(&barrier);

    /* The main thread made no failing call: its last error is empty. */
    CHECK(strcmp(latchkey_last_error(), "") == 0);
    size_t changes = 0;
    CHECK_OK(latchkey_identity_change_count(alice, &changes));
    CHECK(changes == 1 + ROTATIONS);
    char identifier[LATCHKEY_IDENTIFIER_SIZE];
    CHECK_OK(latchkey_identity_identifier(alice, identifier, sizeof identifier, &len));
    CHECK(strcmp(identifier, alice_id) == 0);

    latchkey_identity_free(alice);
    latchkey_identity_free(bob);
    latchkey_vault_free(vault);
    return check_summary("test_threads");
}
