/* A minimal test harness for the C ABI tests: checks count, failures are reported with the library's last
 * error message, and the process exits non-zero if any check failed. */
#ifndef LATCHKEY_TEST_CHECK_H
#define LATCHKEY_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latchkey.h"

static int check_count = 0;
static int check_failures = 0;

#define CHECK(cond)                                                                                        \
    do {                                                                                                   \
        check_count++;                                                                                     \
        if (!(cond)) {                                                                                     \
            check_failures++;                                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                      \
        }                                                                                                  \
    } while (0)

#define CHECK_STATUS(call, expected)                                                                       \
    do {                                                                                                   \
        LatchkeyStatus check_status_ = (call);                                                             \
        check_count++;                                                                                     \
        if (check_status_ != (expected)) {                                                                 \
            check_failures++;                                                                              \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s; last error: \"%s\"\n", __FILE__,     \
                    __LINE__, #call, (int)check_status_, latchkey_error_name(check_status_),               \
                    latchkey_error_name(expected), latchkey_last_error());                                 \
        }                                                                                                  \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, LATCHKEY_OK)

/* Aborts the test program: for failures after which the rest cannot run meaningfully. Evaluates `cond`
 * once, so it may wrap a call. */
#define REQUIRE(cond)                                                                                      \
    do {                                                                                                   \
        int require_ok_ = (cond) ? 1 : 0;                                                                  \
        check_count++;                                                                                     \
        if (!require_ok_) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s (last error: \"%s\"); cannot continue\n", __FILE__, \
                    __LINE__, #cond, latchkey_last_error());                                               \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

static int check_summary(const char *program) {
    if (check_failures != 0) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", program, check_failures, check_count);
        return 1;
    }
    printf("%s: all %d checks passed\n", program, check_count);
    return 0;
}

#endif
