/* The threading rules of the C ABI: shared handles (vault, identity) used from several threads at once,
 * owned handles (handshake, channel) used by one thread each, and the last error kept per thread; node
 * handles (one channel, one mailbox) shared by several sending and receiving threads, and a shutdown that
 * ends every waiting receive. */
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
    LatchkeyChannel *to_bob = NULL, *to_alice = NULL;
    /* Bob pins Alice's history at each handshake. A handshake that started before one of Alice's rotations
     * presents the history it started with; if another thread's handshake already showed Bob a newer one, Bob
     * refuses the older as a rollback (the pinning rule), and the handshake is simply run again. Each refusal
     * needs a rotation in between, so ROTATIONS + 1 attempts always suffice. */
    for (int attempt = 0; attempt <= ROTATIONS; attempt++) {
        LatchkeyHandshake *initiator = NULL, *responder = NULL;
        WORKER_CHECK(worker, latchkey_handshake_new(alice, LATCHKEY_ROLE_INITIATOR, suite, alice_trusts, 1, HANDSHAKE_TIME,
                                                    &initiator) == LATCHKEY_OK);
        WORKER_CHECK(worker, latchkey_handshake_new(bob, LATCHKEY_ROLE_RESPONDER, suite, bob_trusts, 1, HANDSHAKE_TIME,
                                                    &responder) == LATCHKEY_OK);
        WORKER_CHECK(worker, latchkey_handshake_step(initiator, NULL, 0, m1, LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN, &l1) == LATCHKEY_OK);
        WORKER_CHECK(worker, latchkey_handshake_step(responder, m1, l1, m2, LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN, &l2) == LATCHKEY_OK);
        WORKER_CHECK(worker, latchkey_handshake_step(initiator, m2, l2, m3, LATCHKEY_MAX_HANDSHAKE_MESSAGE_LEN, &l3) == LATCHKEY_OK);
        LatchkeyStatus last = latchkey_handshake_step(responder, m3, l3, NULL, 0, &none);
        if (last == LATCHKEY_ERR_HISTORY_ROLLBACK && attempt < ROTATIONS) {
            latchkey_handshake_free(initiator);
            latchkey_handshake_free(responder);
            continue;
        }
        WORKER_CHECK(worker, last == LATCHKEY_OK);
        WORKER_CHECK(worker, latchkey_handshake_into_channel(initiator, &to_bob) == LATCHKEY_OK);
        WORKER_CHECK(worker, latchkey_handshake_into_channel(responder, &to_alice) == LATCHKEY_OK);
        latchkey_handshake_free(initiator);
        latchkey_handshake_free(responder);
        break;
    }
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

/* ---- nodes: one channel shared by sending threads, one mailbox by receiving threads ---- */

static const LatchkeyNodeChannel *shared_channel;
static const LatchkeyMailbox *shared_inbox;
static pthread_mutex_t received_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t received_all = PTHREAD_COND_INITIALIZER;
static int received_count;
static int received_times[THREADS][MESSAGES];

static void *sending_worker(void *argument) {
    Worker *worker = argument;
    for (int i = 0; i < MESSAGES; i++) {
        char text[32];
        int text_len = snprintf(text, sizeof text, "%d %d", worker->index, i);
        WORKER_CHECK(worker, latchkey_node_channel_send(shared_channel, "inbox", (const uint8_t *)text,
                                                        (size_t)text_len, NULL) == LATCHKEY_OK);
    }
    return NULL;
}

/* Receives until the mailbox is closed (by the node's shutdown), counting each message. */
static void *receiving_worker(void *argument) {
    Worker *worker = argument;
    for (;;) {
        const LatchkeyMessage *message = NULL;
        LatchkeyStatus status = latchkey_mailbox_receive(shared_inbox, LATCHKEY_WAIT_FOREVER, &message);
        if (status == LATCHKEY_ERR_CHANNEL_CLOSED) {
            WORKER_CHECK(worker, message == NULL);
            WORKER_CHECK(worker, strcmp(latchkey_last_error(), "ChannelClosed: the mailbox is closed") == 0);
            return NULL;
        }
        WORKER_CHECK(worker, status == LATCHKEY_OK);
        if (status != LATCHKEY_OK) {
            return NULL;
        }
        char text[32] = {0};
        size_t len = 0;
        int sender = -1, index = -1;
        WORKER_CHECK(worker, latchkey_message_payload(message, (uint8_t *)text, sizeof text - 1, &len) == LATCHKEY_OK);
        WORKER_CHECK(worker, sscanf(text, "%d %d", &sender, &index) == 2);
        latchkey_message_free(message);
        pthread_mutex_lock(&received_lock);
        if (sender >= 0 && sender < THREADS && index >= 0 && index < MESSAGES) {
            received_times[sender][index]++;
        }
        if (++received_count == THREADS * MESSAGES) {
            pthread_cond_signal(&received_all);
        }
        pthread_mutex_unlock(&received_lock);
    }
}

static void test_node_threads(void) {
    const LatchkeyIdentity *doorbell_identity = NULL, *phone_identity = NULL;
    const LatchkeyNode *doorbell = NULL, *phone = NULL;
    const LatchkeyListener *listener = NULL;
    char address[LATCHKEY_SOCKET_ADDRESS_SIZE], doorbell_id[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0;
    static const char *const trust_any[] = {LATCHKEY_TRUST_ANY};
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &doorbell_identity) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &phone_identity) == LATCHKEY_OK);
    REQUIRE(latchkey_node_new(doorbell_identity, "doorbell", 0, &doorbell) == LATCHKEY_OK);
    REQUIRE(latchkey_node_new(phone_identity, "phone", 0, &phone) == LATCHKEY_OK);
    REQUIRE(latchkey_node_identifier(doorbell, doorbell_id, sizeof doorbell_id, &len) == LATCHKEY_OK);
    REQUIRE(latchkey_node_listen_tcp(doorbell, "127.0.0.1:0", address, sizeof address, &len) == LATCHKEY_OK);
    REQUIRE(latchkey_node_listen(doorbell, "api", trust_any, 1, &listener) == LATCHKEY_OK);
    REQUIRE(latchkey_node_mailbox(doorbell, "inbox", trust_any, 1, &shared_inbox) == LATCHKEY_OK);
    const char *doorbell_only[] = {doorbell_id};
    REQUIRE(latchkey_node_connect(phone, address, NULL, "api", doorbell_only, 1, 10000, &shared_channel) == LATCHKEY_OK);

    pthread_t threads[2 * THREADS];
    Worker workers[2 * THREADS];
    for (int i = 0; i < 2 * THREADS; i++) {
        workers[i].index = i % THREADS;
        workers[i].checks = 0;
        workers[i].failures = 0;
        REQUIRE(pthread_create(&threads[i], NULL, i < THREADS ? receiving_worker : sending_worker, &workers[i]) == 0);
    }
    /* Every message arrives, then the shutdown wakes every receiver still waiting. */
    pthread_mutex_lock(&received_lock);
    while (received_count < THREADS * MESSAGES) {
        pthread_cond_wait(&received_all, &received_lock);
    }
    pthread_mutex_unlock(&received_lock);
    CHECK_OK(latchkey_node_shutdown(doorbell));
    for (int i = 0; i < 2 * THREADS; i++) {
        REQUIRE(pthread_join(threads[i], NULL) == 0);
        check_count += workers[i].checks;
        check_failures += workers[i].failures;
    }
    for (int sender = 0; sender < THREADS; sender++) {
        for (int i = 0; i < MESSAGES; i++) {
            CHECK(received_times[sender][i] == 1);
        }
    }

    latchkey_node_channel_free(shared_channel);
    latchkey_mailbox_free(shared_inbox);
    latchkey_listener_free(listener);
    latchkey_node_free(phone);
    latchkey_node_free(doorbell);
    latchkey_identity_free(phone_identity);
    latchkey_identity_free(doorbell_identity);
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

    test_node_threads();

    latchkey_identity_free(alice);
    latchkey_identity_free(bob);
    latchkey_vault_free(vault);
    return check_summary("test_threads");
}
