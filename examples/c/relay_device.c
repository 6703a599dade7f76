/* A device behind a relay, in plain C with its own socket: latchkey.h's sans-IO device API
 * (latchkey_device_*) and nothing but POSIX sockets, poll() and a monotonic clock, as firmware would use
 * lwIP and its tick counter. It connects to a relay over TCP, registers a name there through a secure
 * channel, and answers the phones it trusts, which reach it by that name; the channel between phone and
 * device is end to end (the relay forwards ciphertext). When the connection drops or the relay restarts,
 * it reconnects, and the library re-handshakes with the relay and registers again on its own.
 *
 *   relay_device --relay <host:port> (--relay-trust lk... | --relay-trust-any) --name <name>
 *                (--trust lk... | --trust-any) [--service <name>]
 *
 * Prints (stdout, one line each): "IDENTIFIER <lk...>" at start; "CONNECTED" / "DISCONNECTED" for the TCP
 * connection; "RELAY <relay identifier>" when the channel to the relay is up; "READY <name> <identifier>"
 * at the first registration and "REGISTERED <name>" at each; "RELAY_LOST <reason>" when the relay channel
 * ended (a new one follows); "PHONE <n> <identifier>" / "PHONE_CLOSED <n> <reason>" for phones' channels;
 * "MESSAGE <peer identifier> <text>" for each message to the service (default "echo", the service whose
 * replies `latchkey message send` prints), answered with "device: " + the message. On SIGINT/SIGTERM it
 * frees everything and prints "STATS ..." and "STOPPED" (exit 0). A name the relay refuses before it was
 * ever registered exits 1 ("REFUSED <reason>" on stderr). Neither or both of --trust/--trust-any (or of
 * --relay-trust/--relay-trust-any) is a usage error (exit 2).
 *
 * Try it (three terminals), after `cargo build -p latchkey-cli -p latchkey-ffi && make -C examples/c`:
 *   latchkey relay run --tcp 127.0.0.1:4000 --trust-any          # prints the relay's identifier
 *   target/debug/c-examples/relay_device --relay 127.0.0.1:4000 --relay-trust <relay id> \
 *       --name doorbell --trust-any                              # prints the device's identifier
 *   latchkey message send --to 127.0.0.1:4000 --relay-name doorbell --trust <device id> ring */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "latchkey.h"

#define MAX_TRUSTED 16
#define REPLY_PREFIX "device: "
/* Reconnect delay after a connection that failed or did not last: doubles from ... up to ... (ms). */
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 2000
/* A connection that lasted this long worked: the next attempt starts at once. */
#define WORKED_MS 2000

typedef struct {
    const char *relay;
    const char *relay_trusted[MAX_TRUSTED];
    size_t relay_trusted_count;
    bool relay_trust_any;
    const char *name;
    const char *trusted[MAX_TRUSTED];
    size_t trusted_count;
    bool trust_any;
    const char *service;
} Options;

static int usage(const char *problem) {
    fprintf(stderr,
            "relay_device: %s\n"
            "usage: relay_device --relay HOST:PORT (--relay-trust ID... | --relay-trust-any) --name NAME\n"
            "                    (--trust ID... | --trust-any) [--service NAME]\n"
            "trust is never implied: name the relay with --relay-trust (or accept any relay with "
            "--relay-trust-any) and the phones with --trust (or accept any identity with --trust-any)\n",
            problem);
    return 2;
}

/* Returns 0, or the exit status of a usage error. */
static int parse_options(int argc, char **argv, Options *options) {
    memset(options, 0, sizeof *options);
    options->service = "echo";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = strcmp(arg, "--relay") == 0 || strcmp(arg, "--relay-trust") == 0 ||
                           strcmp(arg, "--name") == 0 || strcmp(arg, "--trust") == 0 ||
                           strcmp(arg, "--service") == 0;
        if (takes_value && value == NULL) {
            return usage("an option needs a value");
        }
        if (strcmp(arg, "--relay") == 0) {
            options->relay = value;
        } else if (strcmp(arg, "--name") == 0) {
            options->name = value;
        } else if (strcmp(arg, "--service") == 0) {
            options->service = value;
        } else if (strcmp(arg, "--relay-trust") == 0) {
            if (options->relay_trusted_count == MAX_TRUSTED) {
                return usage("too many --relay-trust");
            }
            options->relay_trusted[options->relay_trusted_count++] = value;
        } else if (strcmp(arg, "--trust") == 0) {
            if (options->trusted_count == MAX_TRUSTED) {
                return usage("too many --trust");
            }
            options->trusted[options->trusted_count++] = value;
        } else if (strcmp(arg, "--relay-trust-any") == 0) {
            options->relay_trust_any = true;
        } else if (strcmp(arg, "--trust-any") == 0) {
            options->trust_any = true;
        } else {
            return usage("unknown argument");
        }
        if (takes_value) {
            i++;
        }
    }
    if (options->relay == NULL || options->name == NULL) {
        return usage("--relay and --name are required");
    }
    if ((options->relay_trusted_count > 0) == options->relay_trust_any) {
        return usage("give exactly one of --relay-trust ID... and --relay-trust-any");
    }
    if ((options->trusted_count > 0) == options->trust_any) {
        return usage("give exactly one of --trust ID... and --trust-any");
    }
    return 0;
}

static int report(const char *what, LatchkeyStatus status) {
    fprintf(stderr, "relay_device: %s failed: %s (%s)\n", what, latchkey_error_name(status),
            latchkey_last_error());
    return -1;
}

/* The monotonic clock in milliseconds: what a firmware tick counter gives. */
static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- SIGINT/SIGTERM become a readable pipe, so the event loop sees them ---- */

static int signal_pipe[2] = {-1, -1};

static void on_signal(int number) {
    int saved = errno;
    char byte = (char)number;
    ssize_t ignored = write(signal_pipe[1], &byte, 1);
    (void)ignored;
    errno = saved;
}

static int install_signals(void) {
    if (pipe(signal_pipe) != 0) {
        perror("relay_device: pipe");
        return -1;
    }
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0) {
        perror("relay_device: sigaction");
        return -1;
    }
    signal(SIGPIPE, SIG_IGN); /* a write to a dropped connection is an error, not a signal */
    return 0;
}

/* ---- the TCP connection ---- */

/* Connects to HOST:PORT; returns the socket or -1. Writes block (at most 5 s); reads are polled. */
static int connect_tcp(const char *address) {
    char host[256];
    const char *colon = strrchr(address, ':');
    if (colon == NULL || (size_t)(colon - address) >= sizeof host) {
        fprintf(stderr, "relay_device: --relay must be HOST:PORT\n");
        return -1;
    }
    memcpy(host, address, (size_t)(colon - address));
    host[colon - address] = '\0';
    struct addrinfo hints, *found = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &found) != 0) {
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = found; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    if (fd >= 0) {
        int one = 1;
        struct timeval limit = {.tv_sec = 5, .tv_usec = 0};
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    }
    return fd;
}

static int write_all(int fd, const uint8_t *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- the device ---- */

typedef struct {
    LatchkeyDevice *device;
    const char *service;
    int fd;
    uint64_t connected_at;
    uint64_t reconnect_at;
    uint64_t backoff;
    bool ever_registered;
    bool refused;
    char identifier[LATCHKEY_IDENTIFIER_SIZE];
} Device;

static void drop_connection(Device *d) {
    if (d->fd < 0) {
        return;
    }
    close(d->fd);
    d->fd = -1;
    uint64_t now = now_ms();
    latchkey_device_disconnected(d->device, now);
    if (now - d->connected_at >= WORKED_MS) {
        d->backoff = RECONNECT_MIN_MS;
        d->reconnect_at = now;
    } else {
        d->reconnect_at = now + d->backoff;
        d->backoff = d->backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : d->backoff * 2;
    }
    printf("DISCONNECTED\n");
    fflush(stdout);
}

/* Writes everything the device has for the stream. */
static void flush_output(Device *d) {
    static uint8_t buffer[16384];
    for (;;) {
        size_t len = 0;
        LatchkeyStatus status = latchkey_device_take_output(d->device, buffer, sizeof buffer, &len);
        if (status != LATCHKEY_OK) {
            report("device_take_output", status);
            return;
        }
        if (len == 0) {
            return;
        }
        if (d->fd < 0 || write_all(d->fd, buffer, len) != 0) {
            drop_connection(d);
            return;
        }
    }
}

/* Prints a peer's text with anything unprintable replaced: it comes from the network. */
static void print_text(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        putchar(c >= 0x20 && c < 0x7f ? c : '?');
    }
}

static void take_events(Device *d) {
    char detail[1024];
    for (;;) {
        uint32_t kind = 0;
        uint64_t channel = 0;
        size_t len = 0;
        LatchkeyStatus status =
            latchkey_device_poll_event(d->device, &kind, &channel, detail, sizeof detail, &len);
        if (status != LATCHKEY_OK) {
            report("device_poll_event", status);
            return;
        }
        switch (kind) {
        case LATCHKEY_DEVICE_EVENT_NONE:
            fflush(stdout);
            return;
        case LATCHKEY_DEVICE_EVENT_RELAY_CONNECTED:
            printf("RELAY %s\n", detail);
            break;
        case LATCHKEY_DEVICE_EVENT_REGISTERED:
            if (!d->ever_registered) {
                printf("READY %s %s\n", detail, d->identifier);
                d->ever_registered = true;
            }
            printf("REGISTERED %s\n", detail);
            break;
        case LATCHKEY_DEVICE_EVENT_REGISTRATION_REFUSED:
            fprintf(stderr, "REFUSED %s\n", detail);
            if (!d->ever_registered) {
                d->refused = true;
            }
            break;
        case LATCHKEY_DEVICE_EVENT_RELAY_LOST:
            printf("RELAY_LOST ");
            print_text(detail, strlen(detail));
            printf("\n");
            break;
        case LATCHKEY_DEVICE_EVENT_PHONE_CONNECTED:
            printf("PHONE %llu %s\n", (unsigned long long)channel, detail);
            break;
        case LATCHKEY_DEVICE_EVENT_PHONE_CLOSED:
            printf("PHONE_CLOSED %llu ", (unsigned long long)channel);
            print_text(detail, strlen(detail));
            printf("\n");
            break;
        default:
            printf("EVENT %u\n", (unsigned)kind);
        }
    }
}

/* Answers one message with "device: " + its text. */
static void answer(Device *d, const LatchkeyDeviceMessage *message) {
    char peer[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0, payload_len = 0;
    LatchkeyStatus status = latchkey_device_message_peer_identifier(message, peer, sizeof peer, &len);
    if (status != LATCHKEY_OK) {
        report("device_message_peer_identifier", status);
        return;
    }
    /* Ask the size first, then copy: a message is unchanged by a too-small buffer. */
    status = latchkey_device_message_payload(message, NULL, 0, &payload_len);
    if (status != LATCHKEY_OK && status != LATCHKEY_ERR_BUFFER_TOO_SMALL) {
        report("device_message_payload", status);
        return;
    }
    size_t prefix_len = strlen(REPLY_PREFIX);
    uint8_t *reply = malloc(prefix_len + payload_len + 1);
    if (reply == NULL) {
        fprintf(stderr, "relay_device: out of memory\n");
        return;
    }
    memcpy(reply, REPLY_PREFIX, prefix_len);
    status = latchkey_device_message_payload(message, reply + prefix_len, payload_len + 1, &len);
    if (status == LATCHKEY_OK) {
        printf("MESSAGE %s ", peer);
        print_text((const char *)reply + prefix_len, payload_len);
        printf("\n");
        fflush(stdout);
        status = latchkey_device_reply(d->device, now_ms(), message, reply, prefix_len + payload_len);
        if (status != LATCHKEY_OK) {
            /* The phone may have gone away meanwhile: not a reason to stop the device. */
            report("device_reply", status);
        }
    } else {
        report("device_message_payload", status);
    }
    free(reply);
}

static void take_messages(Device *d) {
    for (;;) {
        LatchkeyDeviceMessage *message = NULL;
        LatchkeyStatus status = latchkey_device_poll_message(d->device, &message);
        if (status != LATCHKEY_OK) {
            report("device_poll_message", status);
            return;
        }
        if (message == NULL) {
            return;
        }
        answer(d, message);
        latchkey_device_message_free(message);
    }
}

/* After every call into the device: what it has to say, what arrived, what to send. */
static void settle(Device *d) {
    take_events(d);
    take_messages(d);
    flush_output(d);
    take_events(d);
}

/* The event loop: returns 0 on a signal, 1 when the name was refused. */
static int run(Device *d, const char *relay) {
    static uint8_t input[16384];
    for (;;) {
        uint64_t now = now_ms();
        if (d->fd < 0 && now >= d->reconnect_at) {
            d->fd = connect_tcp(relay);
            if (d->fd >= 0) {
                d->connected_at = now;
                printf("CONNECTED\n");
                fflush(stdout);
                LatchkeyStatus status = latchkey_device_connected(d->device, now);
                if (status != LATCHKEY_OK) {
                    report("device_connected", status);
                }
            } else {
                d->reconnect_at = now + d->backoff;
                d->backoff = d->backoff * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : d->backoff * 2;
            }
        }
        settle(d);
        if (d->refused) {
            return 1;
        }
        /* Sleep until the device's next timer, the socket, a reconnection or a signal. */
        uint64_t next = LATCHKEY_DEVICE_NO_TIMEOUT;
        latchkey_device_next_timeout(d->device, &next);
        if (d->fd < 0 && d->reconnect_at < next) {
            next = d->reconnect_at;
        }
        now = now_ms();
        int wait = next <= now ? 0 : (next - now > 1000 ? 1000 : (int)(next - now));
        struct pollfd fds[2] = {{.fd = signal_pipe[0], .events = POLLIN, .revents = 0},
                                {.fd = d->fd, .events = POLLIN, .revents = 0}};
        if (poll(fds, d->fd >= 0 ? 2 : 1, wait) < 0 && errno != EINTR) {
            perror("relay_device: poll");
            return 0;
        }
        if (fds[0].revents & POLLIN) {
            return 0;
        }
        if (d->fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = read(d->fd, input, sizeof input);
            if (n > 0) {
                LatchkeyStatus status = latchkey_device_receive(d->device, now_ms(), input, (size_t)n);
                if (status != LATCHKEY_OK) {
                    /* A broken stream (an oversized or undecodable frame): start over. */
                    report("device_receive", status);
                    drop_connection(d);
                }
            } else if (n == 0 || errno != EINTR) {
                drop_connection(d);
            }
        }
        latchkey_device_handle_timeout(d->device, now_ms());
    }
}

int main(int argc, char **argv) {
    Options options;
    int exit_status = parse_options(argc, argv, &options);
    if (exit_status != 0) {
        return exit_status;
    }
    static const char *const trust_any[] = {LATCHKEY_TRUST_ANY};
    const char *const *trusted = options.trust_any ? trust_any : options.trusted;
    size_t trusted_count = options.trust_any ? 1 : options.trusted_count;
    const char *const *relay_trusted = options.relay_trust_any ? trust_any : options.relay_trusted;
    size_t relay_trusted_count = options.relay_trust_any ? 1 : options.relay_trusted_count;
    if (options.trust_any || options.relay_trust_any) {
        fprintf(stderr, "relay_device: warning: %s any identity that proves itself\n",
                options.trust_any ? "the device answers" : "the relay may be");
    }

    const LatchkeyVault *vault = NULL;
    const LatchkeyIdentity *identity = NULL;
    Device d;
    memset(&d, 0, sizeof d);
    d.fd = -1;
    d.backoff = RECONNECT_MIN_MS;
    d.service = options.service;
    size_t len = 0;
    LatchkeyStatus status;
    exit_status = 1;

    if (install_signals() != 0) {
        goto done;
    }
    if ((status = latchkey_vault_new(&vault)) != LATCHKEY_OK) {
        report("vault_new", status);
        goto done;
    }
    if ((status = latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &identity)) != LATCHKEY_OK) {
        report("identity_create", status);
        goto done;
    }
    const char *services[] = {options.service};
    if ((status = latchkey_device_new(identity, options.name, relay_trusted, relay_trusted_count, trusted,
                                      trusted_count, services, 1, now_ms(), 0, &d.device)) != LATCHKEY_OK) {
        report("device_new", status);
        goto done;
    }
    if ((status = latchkey_device_identifier(d.device, d.identifier, sizeof d.identifier, &len)) != LATCHKEY_OK) {
        report("device_identifier", status);
        goto done;
    }
    printf("IDENTIFIER %s\n", d.identifier);
    fflush(stdout);
    exit_status = run(&d, options.relay);

done:
    if (d.device != NULL) {
        LatchkeyDeviceStats stats;
        if (latchkey_device_stats(d.device, &stats) == LATCHKEY_OK) {
            printf("STATS frames_in=%llu frames_out=%llu rejected=%llu registrations=%llu relay_channels=%llu "
                   "phone_channels=%llu messages=%llu resets_sent=%llu\n",
                   (unsigned long long)stats.frames_in, (unsigned long long)stats.frames_out,
                   (unsigned long long)stats.frames_rejected, (unsigned long long)stats.registrations,
                   (unsigned long long)stats.relay_channels, (unsigned long long)stats.phone_channels,
                   (unsigned long long)stats.messages, (unsigned long long)stats.resets_sent);
        }
    }
    if (d.fd >= 0) {
        close(d.fd);
    }
    latchkey_device_free(d.device);
    latchkey_identity_free(identity);
    latchkey_vault_free(vault);
    for (int i = 0; i < 2; i++) {
        if (signal_pipe[i] >= 0) {
            close(signal_pipe[i]);
        }
    }
    if (exit_status == 0) {
        printf("STOPPED\n");
    }
    return exit_status;
}
