/* The header must compile on its own, first thing in a translation unit, in strict C11. */
#include "latchkey.h"

int latchkey_header_compiles_in_c(void);

int latchkey_header_compiles_in_c(void) {
    LatchkeyStatus status = LATCHKEY_OK;
    return (int)status + (int)sizeof(LatchkeySeconds) - 8;
}
