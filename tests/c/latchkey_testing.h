/*
 * Test-only part of the Latchkey C ABI: NOT in include/latchkey.h and NOT in the published library. It exists
 * only in a library built with the cargo feature `test-vectors` (`cargo build -p latchkey-ffi --features
 * test-vectors`), which `make test-c` builds separately for the vector tests. Its Rust definition is in
 * ffi/src/handshake.rs; keep this declaration identical.
 */
#ifndef LATCHKEY_TESTING_H
#define LATCHKEY_TESTING_H

#include "latchkey.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Uses a fixed ephemeral secret (exactly 32 bytes) instead of a random one. ONLY for reproducing test
 * vectors: it destroys forward secrecy. Call before the first `latchkey_handshake_step`.
 */
LatchkeyStatus latchkey_handshake_set_ephemeral_for_test_vectors(struct LatchkeyHandshake *handshake,
                                                                 const uint8_t *ephemeral_secret,
                                                                 size_t ephemeral_secret_len);

#ifdef __cplusplus
}
#endif

#endif /* LATCHKEY_TESTING_H */
