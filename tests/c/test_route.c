/* C tests of the device API (latchkey_device_*: a device behind a relay, sans-IO): arguments (NULL for every
 * pointer, missing trust decisions, bad names and services), calls in the wrong state, tiny buffers, the
 * stream's framing (output split at any size, partial input kept, oversized and undecodable frames refused),
 * garbage and hostile input from the "relay" side (a handshake answer that does not decode, a refusal, a
 * frame for a channel the device does not know, answered with a 17-byte stateless reset), and timers. The
 * bytes are checked against docs/RUNTIME.md's routed-message format, and, given the file routed_to_lines.py
 * makes of tests/vectors/routed.json, the shared vectors are reproduced through the device: the stateless reset
 * (key derived from a static secret, tokens, the reset answering a frame, the frames not answered) byte for
 * byte, and which routed messages decode. The full story (a real relay, a phone, relay restarts) is
 * tests/c/relay_device_cross_process.sh.
 *
 * Re-handshakes are counted against a real relay: the library's own relay node on loopback TCP, the device
 * driven over a POSIX socket on a clock that runs ahead of the process's, past the re-handshake interval.
 *
 * usage: test_route [routed.txt] */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static const char *const TRUST_ANY[] = {LATCHKEY_TRUST_ANY};
static const char *const SERVICES[] = {"echo"};
static const uint64_t T0 = 1000000;

/* A routed message as docs/RUNTIME.md lays it out, parsed from one frame of the stream. */
typedef struct {
    size_t onward_count, ret_count;
    char onward[4][256];
    char ret[4][256];
    const uint8_t *payload;
    size_t payload_len;
} Routed;

/* Parses `frame` (after the 4-byte length); false when it does not follow the format. */
static bool parse_routed(const uint8_t *frame, size_t len, Routed *m) {
    size_t at = 0;
    memset(m, 0, sizeof *m);
    if (len < 3 || frame[at++] != 1) {
        return false;
    }
    for (int part = 0; part < 2; part++) {
        if (at >= len) {
            return false;
        }
        size_t count = frame[at++];
        if (count > 4) {
            return false;
        }
        for (size_t i = 0; i < count; i++) {
            if (at >= len || frame[at] == 0 || at + 1 + frame[at] > len) {
                return false;
            }
            size_t n = frame[at++];
            memcpy(part == 0 ? m->onward[i] : m->ret[i], frame + at, n);
            at += n;
        }
        if (part == 0) {
            m->onward_count = count;
        } else {
            m->ret_count = count;
        }
    }
    m->payload = frame + at;
    m->payload_len = len - at;
    return true;
}

/* Writes a length-prefixed routed message with one onward and one return address; returns its size. */
static size_t build_frame(uint8_t *out, const char *onward, const char *ret, const uint8_t *payload, size_t len) {
    size_t at = 4;
    out[at++] = 1;
    out[at++] = 1;
    out[at++] = (uint8_t)strlen(onward);
    memcpy(out + at, onward, strlen(onward));
    at += strlen(onward);
    out[at++] = 1;
    out[at++] = (uint8_t)strlen(ret);
    memcpy(out + at, ret, strlen(ret));
    at += strlen(ret);
    memcpy(out + at, payload, len);
    at += len;
    uint32_t body = (uint32_t)(at - 4);
    out[0] = (uint8_t)(body >> 24);
    out[1] = (uint8_t)(body >> 16);
    out[2] = (uint8_t)(body >> 8);
    out[3] = (uint8_t)body;
    return at;
}

/* Takes every output byte (in pieces of `piece` bytes) into `out`; returns how many. */
static size_t take_all(LatchkeyDevice *device, uint8_t *out, size_t capacity, size_t piece) {
    size_t total = 0, len = 0;
    do {
        size_t room = capacity - total < piece ? capacity - total : piece;
        CHECK_OK(latchkey_device_take_output(device, out + total, room, &len));
        total += len;
    } while (len > 0 && total < capacity);
    return total;
}

static uint32_t frame_len(const uint8_t *bytes) {
    return ((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) | ((uint32_t)bytes[2] << 8) | bytes[3];
}

static const LatchkeyVault *vault;
static const LatchkeyIdentity *identity;

static LatchkeyDevice *new_device(void) {
    LatchkeyDevice *device = NULL;
    REQUIRE(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device) ==
            LATCHKEY_OK);
    return device;
}

static void test_new_arguments(void) {
    LatchkeyDevice *device = (LatchkeyDevice *)&vault; /* a stale value the failures must clear */
    const char *none[] = {NULL};
    CHECK_STATUS(latchkey_device_new(NULL, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(device == NULL);
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_new(identity, NULL, TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK(strstr(latchkey_last_error(), "`name`") != NULL);
    /* Trust is never implied, for the relay nor for the phones. */
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", NULL, 0, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(strstr(latchkey_last_error(), "relay_trusted") != NULL);
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, NULL, 0, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", none, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    const char *bad_id[] = {"lk-not-an-identifier"};
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", bad_id, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_DECODE_ERROR);
    /* Services: NULL list with a count, a NULL entry, the device's own addresses, an empty name. */
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, NULL, 1, T0, 0, &device),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, none, 1, T0, 0, &device),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    const char *own[] = {"api"};
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, own, 1, T0, 0, &device),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    const char *empty[] = {""};
    CHECK_STATUS(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, empty, 1, T0, 0, &device),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(strstr(latchkey_last_error(), "service") != NULL);
    /* Names: empty, too long (201 bytes), not UTF-8. */
    char long_name[202];
    memset(long_name, 'n', 201);
    long_name[201] = '\0';
    CHECK_STATUS(latchkey_device_new(identity, "", TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_device_new(identity, long_name, TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_device_new(identity, "\xff\xfe", TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0, &device),
                 LATCHKEY_ERR_INVALID_UTF8);
    CHECK(device == NULL);
    /* No services at all is allowed (a device that only registers). 200 bytes is the longest name. */
    long_name[200] = '\0';
    CHECK_OK(latchkey_device_new(identity, long_name, TRUST_ANY, 1, TRUST_ANY, 1, NULL, 0, T0, 0, &device));
    CHECK(device != NULL);
    latchkey_device_free(device);
    latchkey_device_free(NULL);
    latchkey_device_message_free(NULL);
}

static void test_null_device(void) {
    uint8_t buffer[8];
    size_t len = 7;
    uint64_t value = 0;
    uint32_t kind = 0;
    bool flag = true;
    LatchkeyDeviceStats stats;
    LatchkeyDeviceMessage *message = NULL;
    char text[8];
    CHECK_STATUS(latchkey_device_connected(NULL, T0), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_disconnected(NULL, T0), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_receive(NULL, T0, buffer, 1), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_take_output(NULL, buffer, sizeof buffer, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_next_timeout(NULL, &value), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_handle_timeout(NULL, T0), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_poll_event(NULL, &kind, &value, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_poll_message(NULL, &message), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_reply(NULL, T0, NULL, buffer, 1), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_is_registered(NULL, &flag), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_stats(NULL, &stats), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_identifier(NULL, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_message_payload(NULL, buffer, sizeof buffer, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_message_service(NULL, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_message_peer_identifier(NULL, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_message_channel(NULL, &value), LATCHKEY_ERR_NULL_ARGUMENT);

    LatchkeyDevice *device = new_device();
    CHECK_STATUS(latchkey_device_take_output(device, buffer, sizeof buffer, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_take_output(device, NULL, 8, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_next_timeout(device, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_poll_event(device, NULL, &value, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_poll_event(device, &kind, NULL, text, sizeof text, &len), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_poll_event(device, &kind, &value, text, sizeof text, NULL),
                 LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_poll_message(device, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_reply(device, T0, NULL, buffer, 1), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_is_registered(device, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_stats(device, NULL), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_STATUS(latchkey_device_connected(device, T0), LATCHKEY_OK);
    CHECK_STATUS(latchkey_device_receive(device, T0, NULL, 1), LATCHKEY_ERR_NULL_ARGUMENT);
    /* A length no buffer can have. */
    CHECK_STATUS(latchkey_device_receive(device, T0, buffer, SIZE_MAX), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_device_take_output(device, buffer, SIZE_MAX, &len), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(len == 0);
    latchkey_device_free(device);
}

static void test_before_connecting(void) {
    LatchkeyDevice *device = new_device();
    uint8_t buffer[64];
    size_t len = 99;
    uint64_t next = 0, channel = 9;
    uint32_t kind = 9;
    bool registered = true;
    char text[LATCHKEY_IDENTIFIER_SIZE];
    LatchkeyDeviceMessage *message = (LatchkeyDeviceMessage *)&vault;

    /* Nothing is due and nothing is sent before the stream is up. */
    CHECK_OK(latchkey_device_next_timeout(device, &next));
    CHECK(next == LATCHKEY_DEVICE_NO_TIMEOUT);
    CHECK_OK(latchkey_device_handle_timeout(device, T0 + 60000));
    CHECK_OK(latchkey_device_take_output(device, buffer, sizeof buffer, &len));
    CHECK(len == 0);
    CHECK_STATUS(latchkey_device_receive(device, T0, buffer, 4), LATCHKEY_ERR_INVALID_STATE);
    CHECK(strstr(latchkey_last_error(), "not connected") != NULL);
    CHECK_OK(latchkey_device_poll_event(device, &kind, &channel, text, sizeof text, &len));
    CHECK(kind == LATCHKEY_DEVICE_EVENT_NONE && channel == 0 && len == 1 && text[0] == '\0');
    CHECK_OK(latchkey_device_poll_message(device, &message));
    CHECK(message == NULL);
    CHECK_OK(latchkey_device_is_registered(device, &registered));
    CHECK(!registered);
    CHECK_OK(latchkey_device_disconnected(device, T0)); /* idempotent */

    /* The identifier: size query, too small, exact. */
    CHECK_STATUS(latchkey_device_identifier(device, NULL, 0, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE);
    CHECK_STATUS(latchkey_device_identifier(device, text, 10, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK_OK(latchkey_device_identifier(device, text, sizeof text, &len));
    CHECK(len == LATCHKEY_IDENTIFIER_SIZE && strncmp(text, "lk", 2) == 0 && strlen(text) == 66);
    char expected[LATCHKEY_IDENTIFIER_SIZE];
    CHECK_OK(latchkey_identity_identifier(identity, expected, sizeof expected, &len));
    CHECK(strcmp(text, expected) == 0);
    latchkey_device_free(device);
}

/* Connects and returns message 1 as parsed; `our` receives the device's decryptor address. */
static void connect_and_take_m1(LatchkeyDevice *device, uint64_t now, char *our, size_t piece) {
    static uint8_t out[8192];
    CHECK_OK(latchkey_device_connected(device, now));
    size_t total = take_all(device, out, sizeof out, piece);
    REQUIRE(total > 4);
    CHECK(frame_len(out) == total - 4); /* exactly one frame */
    Routed m;
    REQUIRE(parse_routed(out + 4, total - 4, &m));
    /* docs/RUNTIME.md: message 1 goes to the relay's listener "api", answers come back to our decryptor. */
    CHECK(m.onward_count == 1 && strcmp(m.onward[0], "api") == 0);
    CHECK(m.ret_count == 1 && strncmp(m.ret[0], "sc-dec#", 7) == 0);
    CHECK(m.payload_len == 1 + 32 && m.payload[0] == 0x01); /* kind 0x01, Noise message 1 (an ephemeral key) */
    strcpy(our, m.ret[0]);
}

static void test_stream_and_state(void) {
    LatchkeyDevice *device = new_device();
    static uint8_t out[8192];
    char our[256];
    size_t len = 0;
    uint64_t next = 0;

    /* Message 1 taken a byte at a time: the stream is the same. */
    connect_and_take_m1(device, T0, our, 1);
    CHECK_STATUS(latchkey_device_connected(device, T0), LATCHKEY_ERR_INVALID_STATE);
    CHECK(strstr(latchkey_last_error(), "already connected") != NULL);
    CHECK_OK(latchkey_device_take_output(device, out, 0, &len)); /* capacity 0: nothing, no error */
    CHECK(len == 0);

    /* The handshake retry timer: message 1 again after 500 ms, not before. */
    CHECK_OK(latchkey_device_next_timeout(device, &next));
    CHECK(next == T0 + 500);
    CHECK_OK(latchkey_device_handle_timeout(device, T0 + 499));
    CHECK(take_all(device, out, sizeof out, sizeof out) == 0);
    CHECK_OK(latchkey_device_handle_timeout(device, T0 + 500));
    size_t total = take_all(device, out, sizeof out, 7);
    Routed m;
    CHECK(total > 4 && parse_routed(out + 4, total - 4, &m) && m.payload[0] == 0x01 && strcmp(m.ret[0], our) == 0);

    /* Partial input is kept: a frame's length alone, then the rest. A frame to nobody with a short payload
     * is simply dropped (no reset for what is not a channel frame longer than a reset). */
    uint8_t frame[512];
    const uint8_t short_payload[] = {0x02, 1, 2, 3};
    size_t frame_size = build_frame(frame, "nobody", "tcp-in#1", short_payload, sizeof short_payload);
    CHECK_OK(latchkey_device_receive(device, T0 + 600, frame, 3));
    CHECK_OK(latchkey_device_receive(device, T0 + 600, frame + 3, frame_size - 3));
    CHECK(take_all(device, out, sizeof out, sizeof out) == 0);

    /* A frame above the limit breaks the stream: refused before anything is allocated. */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0};
    CHECK_STATUS(latchkey_device_receive(device, T0 + 700, huge, sizeof huge), LATCHKEY_ERR_FRAME_TOO_LARGE);
    CHECK(strstr(latchkey_last_error(), "drop the connection") != NULL);
    /* So is a frame that is not a routed message (version 9). */
    const uint8_t garbage[] = {0, 0, 0, 3, 9, 9, 9};
    CHECK_STATUS(latchkey_device_receive(device, T0 + 700, garbage, sizeof garbage), LATCHKEY_ERR_MALFORMED_MESSAGE);

    /* Down and up again: unsent output is dropped; the handshake goes on on the new connection. */
    CHECK_OK(latchkey_device_handle_timeout(device, T0 + 1000));
    CHECK_OK(latchkey_device_disconnected(device, T0 + 1000));
    CHECK_OK(latchkey_device_take_output(device, out, sizeof out, &len));
    CHECK(len == 0);
    CHECK_STATUS(latchkey_device_receive(device, T0 + 1000, frame, frame_size), LATCHKEY_ERR_INVALID_STATE);
    CHECK_OK(latchkey_device_connected(device, T0 + 1100));
    CHECK_OK(latchkey_device_handle_timeout(device, T0 + 1500));
    total = take_all(device, out, sizeof out, sizeof out);
    CHECK(total > 4 && parse_routed(out + 4, total - 4, &m) && m.payload[0] == 0x01 && strcmp(m.ret[0], our) == 0);
    latchkey_device_free(device);
}

static void test_hostile_relay(void) {
    LatchkeyDevice *device = new_device();
    static uint8_t out[8192];
    uint8_t frame[512], payload[128];
    char our[256], detail[256];
    size_t len = 0;
    uint32_t kind = 0;
    uint64_t channel = 0, next = 0;
    LatchkeyDeviceStats stats;

    connect_and_take_m1(device, T0, our, sizeof out);
    /* A channel frame for a decryptor the device does not know: answered with a stateless reset (17 bytes:
     * 0x04 and a 16-byte token) back along the frame's return route, and nothing else. */
    memset(payload, 0xab, sizeof payload);
    payload[0] = 0x02;
    size_t frame_size = build_frame(frame, "sc-dec#gone", "sc-dec#relay", payload, 64);
    CHECK_OK(latchkey_device_receive(device, T0 + 10, frame, frame_size));
    size_t total = take_all(device, out, sizeof out, sizeof out);
    Routed m;
    REQUIRE(total > 4 && parse_routed(out + 4, total - 4, &m));
    CHECK(frame_len(out) == total - 4);
    CHECK(m.onward_count == 1 && strcmp(m.onward[0], "sc-dec#relay") == 0 && m.ret_count == 0);
    CHECK(m.payload_len == 17 && m.payload[0] == 0x04);
    CHECK_OK(latchkey_device_stats(device, &stats));
    CHECK(stats.resets_sent == 1 && stats.frames_in == 1 && stats.frames_out == 2);
    /* The same frame again gets the same token (it is derived, not random). */
    uint8_t token[17];
    memcpy(token, m.payload, 17);
    CHECK_OK(latchkey_device_receive(device, T0 + 11, frame, frame_size));
    total = take_all(device, out, sizeof out, sizeof out);
    CHECK(total > 4 && parse_routed(out + 4, total - 4, &m) && m.payload_len == 17 &&
          memcmp(m.payload, token, 17) == 0);

    /* A "message 2" to our decryptor that is not a Noise message: the relay channel fails, says why, and a
     * new attempt is scheduled (500 ms later: failed attempts back off). */
    memset(payload, 0x5a, sizeof payload);
    payload[0] = 0x01;
    frame_size = build_frame(frame, our, "sc-dec#relay", payload, 100);
    CHECK_OK(latchkey_device_receive(device, T0 + 20, frame, frame_size));
    /* The event with too small a buffer: kept for the next call. */
    CHECK_STATUS(latchkey_device_poll_event(device, &kind, &channel, detail, 4, &len), LATCHKEY_ERR_BUFFER_TOO_SMALL);
    CHECK(kind == LATCHKEY_DEVICE_EVENT_NONE && len > 4);
    CHECK_OK(latchkey_device_poll_event(device, &kind, &channel, detail, sizeof detail, &len));
    CHECK(kind == LATCHKEY_DEVICE_EVENT_RELAY_LOST && channel == 0 && len == strlen(detail) + 1);
    CHECK_OK(latchkey_device_poll_event(device, &kind, &channel, detail, sizeof detail, &len));
    CHECK(kind == LATCHKEY_DEVICE_EVENT_NONE);
    CHECK_OK(latchkey_device_next_timeout(device, &next));
    CHECK(next == T0 + 20 + 500);
    CHECK(take_all(device, out, sizeof out, sizeof out) == 0);

    /* The next attempt: a new decryptor; this time the "relay" refuses with a reason, which is reported. */
    CHECK_OK(latchkey_device_handle_timeout(device, T0 + 520));
    total = take_all(device, out, sizeof out, sizeof out);
    REQUIRE(total > 4 && parse_routed(out + 4, total - 4, &m));
    CHECK(m.payload[0] == 0x01 && strcmp(m.ret[0], our) != 0);
    const uint8_t refusal[] = {0x03, 'g', 'o', ' ', 'a', 'w', 'a', 'y'};
    frame_size = build_frame(frame, m.ret[0], "x", refusal, sizeof refusal);
    CHECK_OK(latchkey_device_receive(device, T0 + 530, frame, frame_size));
    CHECK_OK(latchkey_device_poll_event(device, &kind, &channel, detail, sizeof detail, &len));
    CHECK(kind == LATCHKEY_DEVICE_EVENT_RELAY_LOST && strstr(detail, "go away") != NULL);
    /* Backing off: 1 s after the second failure. */
    CHECK_OK(latchkey_device_next_timeout(device, &next));
    CHECK(next == T0 + 530 + 1000);
    bool registered = true;
    CHECK_OK(latchkey_device_is_registered(device, &registered));
    CHECK(!registered);
    CHECK_OK(latchkey_device_stats(device, &stats));
    CHECK(stats.relay_channels == 0 && stats.registrations == 0 && stats.messages == 0);
    latchkey_device_free(device);
}

/* ---- tests/vectors/routed.json through the device ---- */

static size_t unhex(const char *text, uint8_t *out, size_t capacity) {
    if (strcmp(text, "-") == 0) {
        return 0;
    }
    size_t n = strlen(text) / 2;
    REQUIRE(n <= capacity && strlen(text) % 2 == 0);
    for (size_t i = 0; i < n; i++) {
        unsigned int byte = 0;
        REQUIRE(sscanf(text + 2 * i, "%2x", &byte) == 1);
        out[i] = (uint8_t)byte;
    }
    return n;
}

/* Feeds one routed message (unframed bytes) to the device as one frame of the stream. */
static LatchkeyStatus feed(LatchkeyDevice *device, const uint8_t *message, size_t len) {
    static uint8_t framed[70000];
    framed[0] = (uint8_t)(len >> 24);
    framed[1] = (uint8_t)(len >> 16);
    framed[2] = (uint8_t)(len >> 8);
    framed[3] = (uint8_t)len;
    memcpy(framed + 4, message, len);
    return latchkey_device_receive(device, T0 + 1, framed, len + 4);
}

/* suite_offers (kept for test_suite_offers_through_a_real_relay, which needs the relay below). */
typedef struct {
    uint8_t noise_m1[64];
    size_t noise_m1_len;
    char suite[16], error[32], name[64];
} SuiteOffer;
static SuiteOffer suite_offers[8];
static int suite_offer_count;
static uint8_t refusal_arrived[512], refusal_payload[64], refusal_whole[512];
static size_t refusal_arrived_len, refusal_payload_len, refusal_whole_len;
static char refusal_listener[64];
static bool have_refusal;

static void copy_token(char *out, size_t capacity, const char *text) {
    REQUIRE(text != NULL && strlen(text) < capacity);
    strcpy(out, text);
}

static void test_routed_vectors(const char *path) {
    FILE *file = fopen(path, "r");
    REQUIRE(file != NULL);
    static char line[140000];
    static uint8_t bytes[70000], expected[70000], out[70000];
    char our[256];
    const LatchkeyIdentity *reset_identity = NULL;
    LatchkeyDevice *device = NULL;
    int answers = 0, tokens = 0, silent = 0, valid = 0, invalid = 0;
    while (fgets(line, sizeof line, file) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *kind = strtok(line, " ");
        char *first = strtok(NULL, " ");
        char *second = strtok(NULL, " ");
        REQUIRE(kind != NULL && first != NULL);
        if (strcmp(kind, "reset_secret") == 0) {
            /* The device's reset key comes from its identity's static key, as stateless_reset derives it. */
            uint8_t secret[32], seed[32];
            REQUIRE(unhex(first, secret, sizeof secret) == 32);
            memset(seed, 7, sizeof seed);
            REQUIRE(latchkey_identity_from_secrets(vault, seed, 32, secret, 32, 0, 0, 0, &reset_identity) ==
                    LATCHKEY_OK);
            REQUIRE(latchkey_device_new(reset_identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, T0, 0,
                                        &device) == LATCHKEY_OK);
            connect_and_take_m1(device, T0, our, sizeof out);
            continue;
        }
        if (strcmp(kind, "suite_offer") == 0) {
            REQUIRE(suite_offer_count < 8);
            SuiteOffer *offer = &suite_offers[suite_offer_count++];
            offer->noise_m1_len = unhex(first, offer->noise_m1, sizeof offer->noise_m1);
            copy_token(offer->suite, sizeof offer->suite, second);
            copy_token(offer->error, sizeof offer->error, strtok(NULL, " "));
            copy_token(offer->name, sizeof offer->name, strtok(NULL, ""));
            continue;
        }
        if (strcmp(kind, "suite_refusal") == 0) {
            /* routed_to_lines.py refuses any other `accepted` set. */
            CHECK(strcmp(first, "chachapoly") == 0);
            refusal_arrived_len = unhex(second, refusal_arrived, sizeof refusal_arrived);
            refusal_payload_len = unhex(strtok(NULL, " "), refusal_payload, sizeof refusal_payload);
            refusal_whole_len = unhex(strtok(NULL, " "), refusal_whole, sizeof refusal_whole);
            copy_token(refusal_listener, sizeof refusal_listener, strtok(NULL, " "));
            have_refusal = true;
            continue;
        }
        REQUIRE(device != NULL);
        size_t len = strcmp(kind, "reset_token") == 0 ? 0 : unhex(first, bytes, sizeof bytes);
        LatchkeyStatus status = LATCHKEY_OK;
        size_t got = 0;
        if (strcmp(kind, "reset_answer") == 0) {
            /* The frame as it arrived (its return route starting at the relay's connection): the device's reset
             * goes back along it, and the bytes it writes are the vector's reset. */
            REQUIRE(second != NULL);
            size_t want = unhex(second, expected, sizeof expected);
            CHECK_OK(feed(device, bytes, len));
            got = take_all(device, out, sizeof out, sizeof out);
            CHECK(got == want + 4 && frame_len(out) == want && memcmp(out + 4, expected, want) == 0);
            answers++;
        } else if (strcmp(kind, "reset_token") == 0) {
            /* A channel frame for that decryptor: the reset carries its token. */
            REQUIRE(second != NULL);
            uint8_t token[16], payload[40];
            REQUIRE(unhex(second, token, sizeof token) == 16);
            memset(payload, 0x02, sizeof payload);
            size_t frame_size = build_frame(bytes, first, "tcp-in#1", payload, sizeof payload);
            CHECK_OK(latchkey_device_receive(device, T0 + 1, bytes, frame_size));
            got = take_all(device, out, sizeof out, sizeof out);
            Routed m;
            CHECK(got > 4 && parse_routed(out + 4, got - 4, &m) && m.onward_count == 1 &&
                  strcmp(m.onward[0], "tcp-in#1") == 0 && m.payload_len == 17 && m.payload[0] == 0x04 &&
                  memcmp(m.payload + 1, token, 16) == 0);
            tokens++;
        } else if (strcmp(kind, "not_answered") == 0) {
            CHECK_OK(feed(device, bytes, len));
            got = take_all(device, out, sizeof out, sizeof out);
            CHECK(got == 0);
            silent++;
        } else if (strcmp(kind, "routed_valid") == 0) {
            CHECK_OK(feed(device, bytes, len));
            take_all(device, out, sizeof out, sizeof out);
            valid++;
        } else if (strcmp(kind, "routed_invalid") == 0) {
            status = feed(device, bytes, len);
            CHECK_STATUS(status, LATCHKEY_ERR_MALFORMED_MESSAGE);
            /* The stream is broken after that: start a new connection, as a device would. */
            CHECK_OK(latchkey_device_disconnected(device, T0 + 1));
            CHECK_OK(latchkey_device_connected(device, T0 + 1));
            take_all(device, out, sizeof out, sizeof out);
            invalid++;
        } else {
            fprintf(stderr, "test_route: unknown vector line %s\n", kind);
            CHECK(false);
        }
    }
    fclose(file);
    CHECK(answers == 1 && tokens == 3 && silent == 4 && valid == 6 && invalid == 7);
    LatchkeyDeviceStats stats;
    CHECK_OK(latchkey_device_stats(device, &stats));
    CHECK(stats.resets_sent == 4);
    printf("test_route: routed.json through the device: %d reset answered byte for byte, %d tokens, %d frames not "
           "answered, %d valid and %d invalid routed messages\n",
           answers, tokens, silent, valid, invalid);
    latchkey_device_free(device);
    latchkey_identity_free(reset_identity);
}

/* ---- re-handshakes against a real relay ---- */

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A TCP connection to "127.0.0.1:PORT". */
static int dial(const char *address) {
    const char *colon = strrchr(address, ':');
    REQUIRE(colon != NULL && strncmp(address, "127.0.0.1", (size_t)(colon - address)) == 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

/* Runs the device over `fd` for `real_ms` milliseconds on the clock `mono_ms() + *offset`: its output
 * written, its input read, its timers fired. Returns false if the connection ended. */
/* A call in the pump loop: counted as a check only when it fails (the loop runs a timing-dependent number of
 * times, and the check count should not). */
#define PUMP_OK(call)                                                                                      \
    do {                                                                                                   \
        if ((call) != LATCHKEY_OK) {                                                                       \
            REQUIRE(!#call);                                                                               \
        }                                                                                                  \
    } while (0)

static bool pump(LatchkeyDevice *device, int fd, uint64_t offset, uint64_t real_ms) {
    static uint8_t buffer[65536];
    uint64_t end = mono_ms() + real_ms;
    while (mono_ms() < end) {
        PUMP_OK(latchkey_device_handle_timeout(device, mono_ms() + offset));
        size_t len = 0;
        do {
            PUMP_OK(latchkey_device_take_output(device, buffer, sizeof buffer, &len));
            for (size_t sent = 0; sent < len;) {
                ssize_t n = send(fd, buffer + sent, len - sent, MSG_NOSIGNAL);
                if (n <= 0) {
                    return false;
                }
                sent += (size_t)n;
            }
        } while (len > 0);
        struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
        if (poll(&p, 1, 10) > 0) {
            ssize_t n = recv(fd, buffer, sizeof buffer, 0);
            if (n <= 0) {
                return false;
            }
            PUMP_OK(latchkey_device_receive(device, mono_ms() + offset, buffer, (size_t)n));
        }
    }
    return true;
}

static void test_rekeys_counted_against_a_real_relay(void) {
    const LatchkeyIdentity *relay_identity = NULL;
    const LatchkeyNode *relay = NULL;
    const LatchkeyListener *listener = NULL;
    char address[LATCHKEY_SOCKET_ADDRESS_SIZE];
    size_t len = 0;
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &relay_identity) == LATCHKEY_OK);
    REQUIRE(latchkey_node_new(relay_identity, "relay", LATCHKEY_NODE_RELAY, &relay) == LATCHKEY_OK);
    REQUIRE(latchkey_node_listen(relay, "api", TRUST_ANY, 1, &listener) == LATCHKEY_OK);
    REQUIRE(latchkey_node_listen_tcp(relay, "127.0.0.1:0", address, sizeof address, &len) == LATCHKEY_OK);
    REQUIRE(latchkey_node_start_relay(relay) == LATCHKEY_OK);

    LatchkeyDevice *device = NULL;
    uint64_t offset = 0;
    REQUIRE(latchkey_device_new(identity, "doorbell", TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, mono_ms(), 0,
                                &device) == LATCHKEY_OK);
    int fd = dial(address);
    CHECK_OK(latchkey_device_connected(device, mono_ms()));
    bool registered = false;
    for (int i = 0; i < 200 && !registered; i++) {
        PUMP_OK(pump(device, fd, offset, 50) ? LATCHKEY_OK : LATCHKEY_ERR_TRANSPORT_ERROR);
        PUMP_OK(latchkey_device_is_registered(device, &registered));
    }
    CHECK(registered);
    LatchkeyDeviceStats stats;
    CHECK_OK(latchkey_device_stats(device, &stats));
    CHECK(stats.relay_channels == 1 && stats.rekeys == 0);

    /* The device's clock runs 20 times faster than the process's: the re-handshake interval (2 min) passes
     * in seconds, with the registration refreshed every 5 s of its clock meanwhile. */
    while (stats.rekeys == 0 && offset < 400000) {
        PUMP_OK(pump(device, fd, offset, 50) ? LATCHKEY_OK : LATCHKEY_ERR_TRANSPORT_ERROR);
        offset += 1000;
        PUMP_OK(latchkey_device_stats(device, &stats));
    }
    printf("test_route: re-handshake after %llu s of the device's clock\n", (unsigned long long)(offset / 1000));
    CHECK(stats.rekeys >= 1);
    /* The same relay channel, re-keyed: not a new channel, still registered. */
    CHECK(stats.relay_channels == 1);
    CHECK_OK(latchkey_device_is_registered(device, &registered));
    CHECK(registered);

    close(fd);
    latchkey_device_free(device);
    latchkey_listener_free(listener);
    CHECK_OK(latchkey_node_shutdown(relay));
    latchkey_node_free(relay);
    latchkey_identity_free(relay_identity);
}

/* ---- suite offers (tests/vectors/routed.json suite_offers) through a real relay ---- */

/* A phone's message 1 as the relay's TCP side takes it: onward [fwd:NAME, api], return [inbox], payload
 * 0x01 (handshake) followed by `noise_m1`. Written to `fd` length-prefixed. */
static void send_m1(int fd, const char *name, const char *inbox, const uint8_t *noise_m1, size_t len) {
    uint8_t frame[512];
    char forwarder[128];
    snprintf(forwarder, sizeof forwarder, "fwd:%s", name);
    size_t at = 4;
    frame[at++] = 1;
    frame[at++] = 2;
    frame[at++] = (uint8_t)strlen(forwarder);
    memcpy(frame + at, forwarder, strlen(forwarder));
    at += strlen(forwarder);
    frame[at++] = 3;
    memcpy(frame + at, "api", 3);
    at += 3;
    frame[at++] = 1;
    frame[at++] = (uint8_t)strlen(inbox);
    memcpy(frame + at, inbox, strlen(inbox));
    at += strlen(inbox);
    frame[at++] = 0x01;
    REQUIRE(at + len <= sizeof frame);
    memcpy(frame + at, noise_m1, len);
    at += len;
    uint32_t body = (uint32_t)(at - 4);
    frame[0] = (uint8_t)(body >> 24);
    frame[1] = (uint8_t)(body >> 16);
    frame[2] = (uint8_t)(body >> 8);
    frame[3] = (uint8_t)body;
    REQUIRE(send(fd, frame, at, MSG_NOSIGNAL) == (ssize_t)at);
}

/* Runs `device` (over `device_fd`) until one whole frame arrives on the phone's connection `phone_fd`; parses
 * it into `m` (its bytes in `frame`). False if none came while the device ran 500 rounds (a test failure,
 * not a timing claim: the relay answers in milliseconds). */
static bool next_reply(LatchkeyDevice *device, int device_fd, int phone_fd, uint8_t *frame, size_t capacity,
                       Routed *m) {
    size_t have = 0;
    for (int round = 0; round < 500; round++) {
        if (have >= 4 && have >= 4 + frame_len(frame)) {
            REQUIRE(have == 4 + frame_len(frame)); /* one answer at a time: read exactly one frame */
            return parse_routed(frame + 4, have - 4, m);
        }
        PUMP_OK(pump(device, device_fd, 0, 10) ? LATCHKEY_OK : LATCHKEY_ERR_TRANSPORT_ERROR);
        struct pollfd p = {.fd = phone_fd, .events = POLLIN, .revents = 0};
        while (poll(&p, 1, 0) > 0) {
            size_t want = have < 4 ? 4 - have : 4 + frame_len(frame) - have;
            REQUIRE(have + want <= capacity);
            ssize_t n = recv(phone_fd, frame + have, want, 0);
            REQUIRE(n > 0);
            have += (size_t)n;
            if (have >= 4 && have == 4 + frame_len(frame)) {
                break;
            }
        }
    }
    return false;
}

static bool is_refusal(const Routed *m, const char *inbox) {
    return m->onward_count == 1 && strcmp(m->onward[0], inbox) == 0 && m->ret_count >= 1 &&
           strcmp(m->ret[m->ret_count - 1], refusal_listener) == 0 && m->payload_len == refusal_payload_len &&
           memcmp(m->payload, refusal_payload, refusal_payload_len) == 0;
}

/* Message 2 of the handshake: kind 0x01, the device's ephemeral key and its encrypted static key and proofs. */
static bool is_message_2(const Routed *m, const char *inbox) {
    return m->onward_count == 1 && strcmp(m->onward[0], inbox) == 0 && m->payload_len > 1 + 32 + 48 &&
           m->payload[0] == 0x01;
}

/* Every offer of the vectors goes, as a phone's message 1, through a real relay to a C device accepting
 * `suites`; what comes back on the phone's connection is message 2 (accepted), the refusal
 * 0x03 "UnsupportedSuite" from `api` (refused), or nothing (a message 1 that does not decode: checked by a
 * probe sent after it, whose refusal must be the first answer). Returns how many offers were checked. */
static int offers_through_relay(const char *relay_address, const char *name, uint32_t suites) {
    static uint8_t frame[70000];
    static const uint8_t probe[33] = {
        0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33,
        0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x07};
    LatchkeyDevice *device = NULL;
    REQUIRE(latchkey_device_new(identity, name, TRUST_ANY, 1, TRUST_ANY, 1, SERVICES, 1, mono_ms(), 0, &device) ==
            LATCHKEY_OK);
    CHECK_OK(latchkey_device_set_accepted_suites(device, suites));
    int device_fd = dial(relay_address);
    CHECK_OK(latchkey_device_connected(device, mono_ms()));
    bool registered = false;
    for (int i = 0; i < 200 && !registered; i++) {
        PUMP_OK(pump(device, device_fd, 0, 50) ? LATCHKEY_OK : LATCHKEY_ERR_TRANSPORT_ERROR);
        PUMP_OK(latchkey_device_is_registered(device, &registered));
    }
    REQUIRE(registered);
    int phone_fd = dial(relay_address);
    int checked = 0;
    Routed m;
    if (suites == LATCHKEY_SUITES_CHACHAPOLY) {
        /* suite_offers.refusal: its message 1 (an AES-GCM offer) gets exactly its refusal payload, from its
         * listener. The whole vector message is not comparable: the routes differ (see the report). */
        Routed arrived, vector_refusal;
        REQUIRE(parse_routed(refusal_arrived, refusal_arrived_len, &arrived) && arrived.payload_len > 1);
        REQUIRE(parse_routed(refusal_whole, refusal_whole_len, &vector_refusal));
        CHECK(vector_refusal.payload_len == refusal_payload_len &&
              memcmp(vector_refusal.payload, refusal_payload, refusal_payload_len) == 0 &&
              vector_refusal.ret_count == 1 && strcmp(vector_refusal.ret[0], refusal_listener) == 0 &&
              strcmp(arrived.onward[0], refusal_listener) == 0);
        send_m1(phone_fd, name, "inbox-refusal", arrived.payload + 1, arrived.payload_len - 1);
        CHECK(next_reply(device, device_fd, phone_fd, frame, sizeof frame, &m) && is_refusal(&m, "inbox-refusal"));
    }
    for (int i = 0; i < suite_offer_count; i++) {
        const SuiteOffer *offer = &suite_offers[i];
        char inbox[32];
        snprintf(inbox, sizeof inbox, "inbox-%d", i);
        bool accepted = strcmp(offer->suite, "chachapoly") == 0 ||
                        (strcmp(offer->suite, "aesgcm") == 0 && suites != LATCHKEY_SUITES_CHACHAPOLY);
        bool refused = strcmp(offer->error, "UnsupportedSuite") == 0 ||
                       (strcmp(offer->suite, "aesgcm") == 0 && suites == LATCHKEY_SUITES_CHACHAPOLY);
        send_m1(phone_fd, name, inbox, offer->noise_m1, offer->noise_m1_len);
        if (accepted) {
            CHECK(next_reply(device, device_fd, phone_fd, frame, sizeof frame, &m) && is_message_2(&m, inbox));
        } else if (refused) {
            CHECK(next_reply(device, device_fd, phone_fd, frame, sizeof frame, &m) && is_refusal(&m, inbox));
        } else {
            CHECK(strcmp(offer->error, "DecodeError") == 0);
            send_m1(phone_fd, name, "probe", probe, sizeof probe);
            CHECK(next_reply(device, device_fd, phone_fd, frame, sizeof frame, &m) && is_refusal(&m, "probe"));
        }
        checked++;
    }
    LatchkeyDeviceStats stats;
    CHECK_OK(latchkey_device_stats(device, &stats));
    CHECK(stats.handshakes_dropped == 0 && stats.phone_channels == 0);
    close(phone_fd);
    close(device_fd);
    latchkey_device_free(device);
    return checked;
}

static void test_suite_offers_through_a_real_relay(void) {
    REQUIRE(suite_offer_count == 5 && have_refusal);
    /* Bad sets are refused with a typed error and leave the device as it was. */
    LatchkeyDevice *device = new_device();
    CHECK_STATUS(latchkey_device_set_accepted_suites(device, 4), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK(strstr(latchkey_last_error(), "suite") != NULL);
    CHECK_STATUS(latchkey_device_set_accepted_suites(device, UINT32_MAX), LATCHKEY_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(latchkey_device_set_accepted_suites(NULL, 0), LATCHKEY_ERR_NULL_ARGUMENT);
    CHECK_OK(latchkey_device_set_accepted_suites(device, LATCHKEY_SUITES_CHACHAPOLY | LATCHKEY_SUITES_AESGCM));
    latchkey_device_free(device);

    const LatchkeyIdentity *relay_identity = NULL;
    const LatchkeyNode *relay = NULL;
    const LatchkeyListener *listener = NULL;
    char address[LATCHKEY_SOCKET_ADDRESS_SIZE];
    size_t len = 0;
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &relay_identity) == LATCHKEY_OK);
    REQUIRE(latchkey_node_new(relay_identity, "relay", LATCHKEY_NODE_RELAY, &relay) == LATCHKEY_OK);
    REQUIRE(latchkey_node_listen(relay, "api", TRUST_ANY, 1, &listener) == LATCHKEY_OK);
    REQUIRE(latchkey_node_listen_tcp(relay, "127.0.0.1:0", address, sizeof address, &len) == LATCHKEY_OK);
    REQUIRE(latchkey_node_start_relay(relay) == LATCHKEY_OK);
    int both = offers_through_relay(address, "suites-default", LATCHKEY_SUITES_BOTH);
    int chacha = offers_through_relay(address, "suites-chachapoly", LATCHKEY_SUITES_CHACHAPOLY);
    CHECK(both == 5 && chacha == 5);
    printf("test_route: routed.json suite_offers through a real relay: %d offers to a default device, %d to a "
           "ChaChaPoly-only one, the refusal's payload byte for byte\n",
           both, chacha);
    latchkey_listener_free(listener);
    CHECK_OK(latchkey_node_shutdown(relay));
    latchkey_node_free(relay);
    latchkey_identity_free(relay_identity);
}

int main(int argc, char **argv) {
    REQUIRE(latchkey_vault_new(&vault) == LATCHKEY_OK);
    REQUIRE(latchkey_identity_create(vault, LATCHKEY_ALGORITHM_ED25519, 0, 0, 0, &identity) == LATCHKEY_OK);
    test_new_arguments();
    test_null_device();
    test_before_connecting();
    test_stream_and_state();
    test_hostile_relay();
    test_rekeys_counted_against_a_real_relay();
    if (argc > 1) {
        test_routed_vectors(argv[1]);
        test_suite_offers_through_a_real_relay();
    }
    latchkey_identity_free(identity);
    latchkey_vault_free(vault);
    return check_summary("test_route");
}
