/* A doorbell on a Linux gateway, in plain C with latchkey.h's node API: it registers at a relay under a name
 * and answers the phones it trusts, which reach it by that name from anywhere the relay is reachable. The
 * channel between phone and doorbell is end to end: the relay forwards it but cannot read it.
 *
 *   relay_doorbell --relay <host:port> (--relay-trust lk... | --relay-trust-any) --name <name>
 *                  (--trust lk... | --trust-any) [--service <name>]
 *
 * It creates an identity, registers as <name> at the relay (a `latchkey relay run` process; its identifier
 * is what --relay-trust names), prints "READY <name> <identifier>", then answers every message that arrives
 * at its service (default "echo", the service whose replies `latchkey message send` prints) with
 * "ding dong: " + the message, printing "MESSAGE <peer identifier> <text>" for each. It runs an event loop
 * on the mailbox's pollable file descriptor and stops cleanly (shutdown, every handle freed) on SIGINT or
 * SIGTERM, printing "STOPPED".
 *
 * Trust is never implied: --trust (repeatable) names the phones that may open a channel and use the
 * service, --trust-any accepts any identity; --relay-trust names the relay, --relay-trust-any accepts any.
 * Neither or both of a pair is a usage error (exit status 2). Exit status 1 on any other failure.
 *
 * Try it (three terminals), after `cargo build -p latchkey-cli -p latchkey-ffi && make -C examples/c`:
 *   latchkey relay run --tcp 127.0.0.1:4000 --trust-any          # prints the relay's identifier
 *   target/debug/c-examples/relay_doorbell --relay 127.0.0.1:4000 --relay-trust <relay id> \
 *       --name doorbell --trust-any                              # prints the doorbell's identifier
 *   latchkey message send --to 127.0.0.1:4000 --relay-name doorbell --trust <doorbell id> ring */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "latchkey.h"

#define MAX_TRUSTED 16
#define REPLY_PREFIX "ding dong: "

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
            "relay_doorbell: %s\n"
            "usage: relay_doorbell --relay HOST:PORT (--relay-trust ID... | --relay-trust-any) --name NAME\n"
            "                      (--trust ID... | --trust-any) [--service NAME]\n"
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
    fprintf(stderr, "relay_doorbell: %s failed: %s (%s)\n", what, latchkey_error_name(status),
            latchkey_last_error());
    return -1;
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
        perror("relay_doorbell: pipe");
        return -1;
    }
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGINT, &action, NULL) != 0 || sigaction(SIGTERM, &action, NULL) != 0) {
        perror("relay_doorbell: sigaction");
        return -1;
    }
    return 0;
}

/* ---- the doorbell ---- */

/* Prints a peer's text with anything unprintable replaced: it comes from the network. */
static void print_text(const uint8_t *text, size_t len) {
    for (size_t i = 0; i < len; i++) {
        putchar(text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?');
    }
}

/* Answers one message; returns 0, or -1 when the doorbell should stop. */
static int answer(const LatchkeyMailbox *mailbox, const LatchkeyMessage *message) {
    char peer[LATCHKEY_IDENTIFIER_SIZE];
    size_t len = 0, payload_len = 0;
    LatchkeyStatus status = latchkey_message_peer_identifier(message, peer, sizeof peer, &len);
    if (status != LATCHKEY_OK) {
        return report("message_peer_identifier", status); /* the mailbox takes channel messages only */
    }
    /* Ask the size first, then copy: a message is unchanged by a too-small buffer. */
    status = latchkey_message_payload(message, NULL, 0, &payload_len);
    if (status != LATCHKEY_OK && status != LATCHKEY_ERR_BUFFER_TOO_SMALL) {
        return report("message_payload", status);
    }
    size_t prefix_len = strlen(REPLY_PREFIX);
    uint8_t *reply = malloc(prefix_len + payload_len + 1);
    if (reply == NULL) {
        fprintf(stderr, "relay_doorbell: out of memory\n");
        return -1;
    }
    memcpy(reply, REPLY_PREFIX, prefix_len);
    status = latchkey_message_payload(message, reply + prefix_len, payload_len + 1, &len);
    if (status != LATCHKEY_OK) {
        free(reply);
        return report("message_payload", status);
    }
    printf("MESSAGE %s ", peer);
    print_text(reply + prefix_len, payload_len);
    printf("\n");
    fflush(stdout);
    status = latchkey_mailbox_reply(mailbox, message, reply, prefix_len + payload_len);
    free(reply);
    if (status != LATCHKEY_OK) {
        /* The phone may have gone away meanwhile: not a reason to stop the doorbell. */
        report("mailbox_reply", status);
    }
    return 0;
}

/* Waits on the mailbox's descriptor and the signal pipe; returns 0 on a signal, -1 on failure. */
static int serve(const LatchkeyMailbox *mailbox) {
    int mailbox_fd = -1;
    LatchkeyStatus status = latchkey_mailbox_fd(mailbox, &mailbox_fd);
    if (status != LATCHKEY_OK) {
        return report("mailbox_fd", status);
    }
    for (;;) {
        struct pollfd fds[2] = {{.fd = mailbox_fd, .events = POLLIN, .revents = 0},
                                {.fd = signal_pipe[0], .events = POLLIN, .revents = 0}};
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            perror("relay_doorbell: poll");
            return -1;
        }
        if (fds[1].revents & POLLIN) {
            return 0;
        }
        if (!(fds[0].revents & POLLIN)) {
            continue;
        }
        /* Readable: take every message that is there, without waiting. */
        for (;;) {
            const LatchkeyMessage *message = NULL;
            status = latchkey_mailbox_receive(mailbox, 0, &message);
            if (status == LATCHKEY_ERR_TIMEOUT) {
                break;
            }
            if (status != LATCHKEY_OK) {
                return report("mailbox_receive", status);
            }
            int result = answer(mailbox, message);
            latchkey_message_free(message);
            if (result != 0) {
                return -1;
            }
        }
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
        fprintf(stderr, "relay_doorbell: warning: %s any identity that proves itself\n",
                options.trust_any ? "the doorbell answers" : "the relay may be");
    }

    const LatchkeyVault *vault = NULL;
    const LatchkeyIdentity *identity = NULL;
    const LatchkeyNode *node = NULL;
    const LatchkeyListener *listener = NULL;
    const LatchkeyMailbox *mailbox = NULL;
    char identifier[LATCHKEY_IDENTIFIER_SIZE];
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
    if ((status = latchkey_node_new(identity, "doorbell", 0, &node)) != LATCHKEY_OK) {
        report("node_new", status);
        goto done;
    }
    if ((status = latchkey_node_identifier(node, identifier, sizeof identifier, &len)) != LATCHKEY_OK) {
        report("node_identifier", status);
        goto done;
    }
    /* Phones open channels to the listener "api" (through the relay) and use the service: both only for
     * the trusted phones. */
    if ((status = latchkey_node_listen(node, "api", trusted, trusted_count, &listener)) != LATCHKEY_OK) {
        report("node_listen", status);
        goto done;
    }
    if ((status = latchkey_node_mailbox(node, options.service, trusted, trusted_count, &mailbox)) != LATCHKEY_OK) {
        report("node_mailbox", status);
        goto done;
    }
    if ((status = latchkey_node_register_at_relay(node, options.relay, relay_trusted, relay_trusted_count,
                                                  options.name)) != LATCHKEY_OK) {
        report("node_register_at_relay", status);
        goto done;
    }
    printf("READY %s %s\n", options.name, identifier);
    fflush(stdout);

    if (serve(mailbox) == 0) {
        exit_status = 0;
    }

done:
    /* Shutdown closes the channels through the relay (telling each phone) and ends the registration. */
    if (node != NULL && (status = latchkey_node_shutdown(node)) != LATCHKEY_OK) {
        report("node_shutdown", status);
        exit_status = 1;
    }
    latchkey_mailbox_free(mailbox);
    latchkey_listener_free(listener);
    latchkey_node_free(node);
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
