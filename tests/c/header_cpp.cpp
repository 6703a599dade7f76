// The header must compile on its own in C++17 and give the functions C linkage.
#include "latchkey.h"

#include <type_traits>

static_assert(std::is_same<LatchkeyStatus, int32_t>::value, "status is a 32-bit int");
static_assert(LATCHKEY_IDENTIFIER_SIZE == 67, "identifier size");

extern "C" int latchkey_header_compiles_in_cpp();

int latchkey_header_compiles_in_cpp() {
    LatchkeyStatus (*step)(LatchkeyHandshake *, const uint8_t *, size_t, uint8_t *, size_t, size_t *) =
        &latchkey_handshake_step;
    LatchkeyStatus (*receive)(const LatchkeyMailbox *, uint32_t, const LatchkeyMessage **) = &latchkey_mailbox_receive;
    static_assert(LATCHKEY_WAIT_FOREVER == UINT32_MAX, "wait forever");
    return step == nullptr || receive == nullptr ? 1 : 0;
}
