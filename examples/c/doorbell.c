/* A doorbell "device" in plain C: POSIX sockets plus latchkey.h. It opens a mutually authenticated,
 * end-to-end encrypted channel over one TCP connection ("direct TCP": every message is a 4-byte big-endian
 * length followed by that many bytes; first the three handshake messages, then transport frames) and
 * exchanges messages with a peer such as facade/examples/direct_peer.rs.
 *
 *   doorbell connect <host:port> [--suite chachapoly|aesgcm] (--trust lk... | --trust-any) [message...]
 *       rings the peer: sends each message (default "ring"), prints "PEER <identifier>" once and
 *       "REPLY <text>" per answer. Exit status 0 on success, 1 on any failure, 2 on a usage error.
 *   doorbell listen <host:port> [--suite ...] (--trust lk... | --trust-any) [--once]
 *       prints "LISTENING <host:port> <identifier>", then serves connections one after another, answering
 *       each message with "echo: " + message. With --once it exits after the first connection.
 *
 * Trust is never implied: with --trust (repeatable) only the listed identifiers get a channel; --trust-any
 * accepts any peer that proves an identity (passing {LATCHKEY_TRUST_ANY}) and prints its identifier. With
 * neither, or both, it prints a usage error and exits with status 2. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "latchkey.h"

#define MAX_TRUSTED 16
#define MAX_MESSAGE (LATCHKEY_MAX_PLAINTEXT_LEN + LATCHKEY_FRAME_OVERHEAD)
#define ECHO_PREFIX "echo: "
/* NI_MAXHOST and NI_MAXSERV are not POSIX; these sizes fit any numeric address and port. */
#define HOST_SIZE 1025
#define PORT_SIZE 32

typedef struct {
    uint32_t suite;
    const char *trusted[MAX_TRUSTED];
    size_t trusted_count;
    bool trust_any;
    bool once;
    const char *address;
    char **messages;
    int message_count;
} Options;

/* One buffer per direction, allocated once: frames never exceed MAX_MESSAGE bytes. */
typedef struct {
    uint8_t *in;
    uint8_t *out;
    uint8_t *plain;
} Buffers;

static int report(const char *what, LatchkeyStatus status) {
    fprintf(stderr, "doorbell: %s failed: %s (%s)\n", what, latchkey_error_name(status), latchkey_last_error());
    return -1;
}

/* ---- direct TCP framing ---- */

static int write_all(int fd, const uint8_t *bytes, size_t len) {
    while (len > 0) {
        ssize_t written = send(fd, bytes, len, MSG_NOSIGNAL);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            perror("doorbell: send");
            return -1;
        }
        bytes += written;
        len -= (size_t)written;
    }
    return 0;
}

/* Returns 1 when `len` bytes were read, 0 on a clean end of stream before any byte, -1 on error. */
static int read_all(int fd, uint8_t *bytes, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t got = recv(fd, bytes + done, len - done, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            perror("doorbell: recv");
            return -1;
        }
        if (got == 0) {
            if (done == 0) {
                return 0;
            }
            fprintf(stderr, "doorbell: connection closed mid-message\n");
            return -1;
        }
        done += (size_t)got;
    }
    return 1;
}

static int send_message(int fd, const uint8_t *message, size_t len) {
    uint8_t header[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    if (write_all(fd, header, sizeof header) != 0) {
        return -1;
    }
    return write_all(fd, message, len);
}

/* Returns 1 with a message in `buffer`/`*len`, 0 on a clean end of stream, -1 on error. */
static int receive_message(int fd, uint8_t *buffer, size_t *len) {
    uint8_t header[4];
    int status = read_all(fd, header, sizeof header);
    if (status <= 0) {
        return status;
    }
    size_t length = (size_t)header[0] << 24 | (size_t)header[1] << 16 | (size_t)header[2] << 8 | header[3];
    if (length > MAX_MESSAGE) {
        fprintf(stderr, "doorbell: peer announced %zu bytes, more than %d\n", length, MAX_MESSAGE);
        return -1;
    }
    if (length > 0 && read_all(fd, buffer, length) != 1) {
        return -1;
    }
    *len = length;
    return 1;
}

/* ---- the secure channel ---- */

/* Runs the handshake on `fd`; returns the channel or NULL (after printing why). */
static LatchkeyChannel *handshake(int fd, const LatchkeyIdentity *identity, uint32_t role, const Options *options,
                                  Buffers *buffers) {
    LatchkeyHandshake *session = NULL;
    LatchkeyChannel *channel = NULL;
    /* Exactly one of the two, checked by parse_options: the listed identifiers, or any identity. */
    static const char *const trust_any[] = {LATCHKEY_TRUST_ANY};
    const char *const *trusted = options->trust_any ? trust_any : options->trusted;
    size_t trusted_count = options->trust_any ? 1 : options->trusted_count;
    LatchkeyStatus status =
        latchkey_handshake_new(identity, role, options->suite, trusted, trusted_count, 0, &session);
    if (status != LATCHKEY_OK) {
        report("handshake_new", status);
        return NULL;
    }
    size_t out_len = 0, in_len = 0;
    if (role == LATCHKEY_ROLE_INITIATOR) {
        status = latchkey_handshake_step(session, NULL, 0, buffers->out, MAX_MESSAGE, &out_len);
        if (status != LATCHKEY_OK) {
            report("handshake step", status);
            goto done;
        }
        if (send_message(fd, buffers->out, out_len) != 0) {
            goto done;
        }
    }
    for (;;) {
        bool finished = false;
        status = latchkey_handshake_is_finished(session, &finished);
        if (status != LATCHKEY_OK) {
            report("handshake_is_finished", status);
            goto done;
        }
        if (finished) {
            break;
        }
        if (receive_message(fd, buffers->in, &in_len) != 1) {
            fprintf(stderr, "doorbell: connection ended during the handshake\n");
            goto done;
        }
        status = latchkey_handshake_step(session, buffers->in, in_len, buffers->out, MAX_MESSAGE, &out_len);
        if (status != LATCHKEY_OK) {
            report("handshake step", status);
            goto done;
        }
        if (out_len > 0 && send_message(fd, buffers->out, out_len) != 0) {
            goto done;
        }
    }
    status = latchkey_handshake_into_channel(session, &channel);
    if (status != LATCHKEY_OK) {
        report("handshake_into_channel", status);
    }
done:
    latchkey_handshake_free(session);
    return channel;
}

static int print_peer(const LatchkeyChannel *channel, const char *label) {
    char peer[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0;
    LatchkeyStatus status = latchkey_channel_peer_identifier(channel, peer, sizeof peer, &len);
    if (status != LATCHKEY_OK) {
        return report("channel_peer_identifier", status);
    }
    printf("%s %s\n", label, peer);
    fflush(stdout);
    return 0;
}

static int encrypt_and_send(int fd, LatchkeyChannel *channel, const uint8_t *plaintext, size_t len,
                            Buffers *buffers) {
    size_t frame_len = 0;
    LatchkeyStatus status = latchkey_channel_encrypt(channel, plaintext, len, buffers->out, MAX_MESSAGE, &frame_len);
    if (status != LATCHKEY_OK) {
        return report("channel_encrypt", status);
    }
    return send_message(fd, buffers->out, frame_len);
}

/* Returns 1 with the plaintext in buffers->plain, 0 at a clean end of stream, -1 on error. */
static int receive_and_decrypt(int fd, LatchkeyChannel *channel, Buffers *buffers, size_t *plain_len) {
    size_t frame_len = 0;
    int received = receive_message(fd, buffers->in, &frame_len);
    if (received != 1) {
        return received;
    }
    LatchkeyStatus status =
        latchkey_channel_decrypt(channel, buffers->in, frame_len, buffers->plain, MAX_MESSAGE, plain_len);
    if (status != LATCHKEY_OK) {
        return report("channel_decrypt", status);
    }
    return 1;
}

/* ---- the two modes ---- */

static int ring(int fd, const LatchkeyIdentity *identity, const Options *options, Buffers *buffers) {
    LatchkeyChannel *channel = handshake(fd, identity, LATCHKEY_ROLE_INITIATOR, options, buffers);
    if (channel == NULL || print_peer(channel, "PEER") != 0) {
        latchkey_channel_free(channel);
        return -1;
    }
    static char *default_messages[] = {"ring"};
    char **messages = options->message_count > 0 ? options->messages : default_messages;
    int count = options->message_count > 0 ? options->message_count : 1;
    int result = 0;
    for (int i = 0; i < count && result == 0; i++) {
        size_t reply_len = 0;
        if (encrypt_and_send(fd, channel, (const uint8_t *)messages[i], strlen(messages[i]), buffers) != 0 ||
            receive_and_decrypt(fd, channel, buffers, &reply_len) != 1) {
            result = -1;
            break;
        }
        printf("REPLY %.*s\n", (int)reply_len, (const char *)buffers->plain);
        fflush(stdout);
    }
    latchkey_channel_free(channel);
    return result;
}

static int serve(int fd, const LatchkeyIdentity *identity, const Options *options, Buffers *buffers) {
    LatchkeyChannel *channel = handshake(fd, identity, LATCHKEY_ROLE_RESPONDER, options, buffers);
    if (channel == NULL || print_peer(channel, "CONNECTED") != 0) {
        latchkey_channel_free(channel);
        return -1;
    }
    int result = 0;
    for (;;) {
        size_t len = 0;
        int received = receive_and_decrypt(fd, channel, buffers, &len);
        if (received <= 0) {
            result = received;
            break;
        }
        size_t prefix = strlen(ECHO_PREFIX);
        if (len + prefix > LATCHKEY_MAX_PLAINTEXT_LEN) {
            fprintf(stderr, "doorbell: message too long to echo\n");
            result = -1;
            break;
        }
        memmove(buffers->plain + prefix, buffers->plain, len);
        memcpy(buffers->plain, ECHO_PREFIX, prefix);
        if (encrypt_and_send(fd, channel, buffers->plain, len + prefix, buffers) != 0) {
            result = -1;
            break;
        }
    }
    latchkey_channel_free(channel);
    return result;
}

/* ---- sockets and arguments ---- */

/* Splits "host:port" (the port after the last colon). */
static int resolve(const char *address, bool passive, struct addrinfo **result) {
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address || colon[1] == '\0') {
        fprintf(stderr, "doorbell: address must be host:port, got \"%s\"\n", address);
        return -1;
    }
    char host[256];
    size_t host_len = (size_t)(colon - address);
    if (host_len >= sizeof host) {
        fprintf(stderr, "doorbell: host name too long\n");
        return -1;
    }
    memcpy(host, address, host_len);
    host[host_len] = '\0';
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int error = getaddrinfo(host, colon + 1, &hints, result);
    if (error != 0) {
        fprintf(stderr, "doorbell: cannot resolve %s: %s\n", address, gai_strerror(error));
        return -1;
    }
    return 0;
}

static int connect_to(const char *address) {
    struct addrinfo *addresses = NULL;
    if (resolve(address, false, &addresses) != 0) {
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *entry = addresses; entry != NULL && fd < 0; entry = entry->ai_next) {
        fd = socket(entry->ai_family, entry->ai_socktype, entry->ai_protocol);
        if (fd >= 0 && connect(fd, entry->ai_addr, entry->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        fprintf(stderr, "doorbell: cannot connect to %s\n", address);
    }
    return fd;
}

static int listen_on(const char *address, char *bound, size_t bound_size) {
    struct addrinfo *addresses = NULL;
    if (resolve(address, true, &addresses) != 0) {
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *entry = addresses; entry != NULL && fd < 0; entry = entry->ai_next) {
        fd = socket(entry->ai_family, entry->ai_socktype, entry->ai_protocol);
        int yes = 1;
        if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) != 0 ||
                        bind(fd, entry->ai_addr, entry->ai_addrlen) != 0 || listen(fd, 8) != 0)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        fprintf(stderr, "doorbell: cannot listen on %s\n", address);
        return -1;
    }
    /* Report the port actually bound (the caller may have asked for port 0). */
    struct sockaddr_storage local;
    socklen_t local_len = sizeof local;
    char host[HOST_SIZE], port[PORT_SIZE];
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) != 0 ||
        getnameinfo((struct sockaddr *)&local, local_len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        perror("doorbell: getsockname");
        close(fd);
        return -1;
    }
    snprintf(bound, bound_size, local.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
    return fd;
}

static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s connect <host:port> [--suite chachapoly|aesgcm] (--trust lk... | --trust-any) [message...]\n"
            "       %s listen <host:port> [--suite chachapoly|aesgcm] (--trust lk... | --trust-any) [--once]\n"
            "--trust may be repeated; --trust-any accepts any peer that proves an identity\n",
            program, program);
}

/* Returns 0, -1 on a failure to allocate, or USAGE_ERROR after printing what is wrong. */
#define USAGE_ERROR 2
static int parse_options(int argc, char **argv, Options *options) {
    memset(options, 0, sizeof *options);
    options->suite = LATCHKEY_SUITE_CHACHAPOLY;
    options->messages = calloc((size_t)argc, sizeof(char *));
    if (options->messages == NULL) {
        return -1;
    }
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--suite") == 0 && i + 1 < argc) {
            const char *suite = argv[++i];
            if (strcmp(suite, "chachapoly") == 0) {
                options->suite = LATCHKEY_SUITE_CHACHAPOLY;
            } else if (strcmp(suite, "aesgcm") == 0) {
                options->suite = LATCHKEY_SUITE_AESGCM;
            } else {
                fprintf(stderr, "doorbell: unknown suite %s\n", suite);
                return USAGE_ERROR;
            }
        } else if (strcmp(argv[i], "--trust") == 0 && i + 1 < argc) {
            if (options->trusted_count == MAX_TRUSTED) {
                fprintf(stderr, "doorbell: at most %d --trust\n", MAX_TRUSTED);
                return USAGE_ERROR;
            }
            options->trusted[options->trusted_count++] = argv[++i];
        } else if (strcmp(argv[i], "--trust-any") == 0) {
            options->trust_any = true;
        } else if (strcmp(argv[i], "--once") == 0) {
            options->once = true;
        } else if (options->address == NULL) {
            options->address = argv[i];
        } else {
            options->messages[options->message_count++] = argv[i];
        }
    }
    if (options->address == NULL) {
        fprintf(stderr, "doorbell: missing host:port\n");
        return USAGE_ERROR;
    }
    if (options->trust_any && options->trusted_count > 0) {
        fprintf(stderr, "doorbell: give either --trust lk... or --trust-any, not both\n");
        return USAGE_ERROR;
    }
    if (!options->trust_any && options->trusted_count == 0) {
        fprintf(stderr, "doorbell: no trust given: name the peers with --trust lk... or accept any identity "
                        "with --trust-any\n");
        return USAGE_ERROR;
    }
    if (options->trust_any) {
        fprintf(stderr, "doorbell: warning: --trust-any: any peer that proves an identity is accepted\n");
    }
    return 0;
}

static int run(const char *mode, const Options *options, const LatchkeyIdentity *identity, Buffers *buffers) {
    if (strcmp(mode, "connect") == 0) {
        int fd = connect_to(options->address);
        if (fd < 0) {
            return -1;
        }
        int result = ring(fd, identity, options, buffers);
        close(fd);
        return result;
    }
    char bound[HOST_SIZE + PORT_SIZE + 4];
    int listener = listen_on(options->address, bound, sizeof bound);
    if (listener < 0) {
        return -1;
    }
    char identifier[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0;
    LatchkeyStatus status = latchkey_identity_identifier(identity, identifier, sizeof identifier, &len);
    if (status != LATCHKEY_OK) {
        close(listener);
        return report("identity_identifier", status);
    }
    printf("LISTENING %s %s\n", bound, identifier);
    fflush(stdout);
    int result = 0;
    do {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("doorbell: accept");
            result = -1;
            break;
        }
        /* One failed connection does not stop a long-running device; with --once it is the result. */
        result = serve(fd, identity, options, buffers);
        close(fd);
    } while (!options->once);
    close(listener);
    return result;
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[1], "connect") != 0 && strcmp(argv[1], "listen") != 0)) {
        usage(argv[0]);
        return USAGE_ERROR;
    }
    Options options;
    memset(&options, 0, sizeof options);
    Buffers buffers = {malloc(MAX_MESSAGE), malloc(MAX_MESSAGE), malloc(MAX_MESSAGE)};
    const LatchkeyVault *vault = NULL;
    const LatchkeyIdentity *identity = NULL;
    int result = -1;
    if (buffers.in == NULL || buffers.out == NULL || buffers.plain == NULL) {
        goto done;
    }
    int parsed = parse_options(argc - 2, argv + 2, &options);
    if (parsed == USAGE_ERROR) {
        usage(argv[0]);
        result = USAGE_ERROR;
        goto done;
    }
    if (parsed != 0) {
        goto done;
    }
    LatchkeyStatus status = latchkey_vault_new(&vault);
    if (status != LATCHKEY_OK) {
        report("vault_new", status);
        goto done;
    }
    /* A fresh identity per run; a real device would create it once and keep its vault. */
    status = latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &identity);
    if (status != LATCHKEY_OK) {
        report("identity_create", status);
        goto done;
    }
    result = run(argv[1], &options, identity, &buffers);
done:
    latchkey_identity_free(identity);
    latchkey_vault_free(vault);
    free(options.messages);
    free(buffers.in);
    free(buffers.out);
    free(buffers.plain);
    return result == 0 ? 0 : result == USAGE_ERROR ? USAGE_ERROR : 1;
}
