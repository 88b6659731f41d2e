/*
 * harness.h - a very small test harness for the core's C tests.
 *
 * TEST(name) { ... } defines a case; CHECK(cond) records a failure without stopping
 * the case; REQUIRE(cond) ends the case. RUN(name) runs one; main() ends with
 * DONE(), which prints "N passed, N failed" and returns the exit status.
 * After every case the OpenSSL error queue must be empty: the core promises that.
 */
#ifndef TRK_TEST_HARNESS_H
#define TRK_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

#include "tlsrekey.h"

static int h_passed, h_failed, h_case_failed;
static const char *h_case;

#define TEST(name) static void name(void)

#define CHECK(cond)                                                                \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  %s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, \
                    h_case, #cond);                                                \
            h_case_failed = 1;                                                     \
        }                                                                          \
    } while (0)

#define REQUIRE(cond)                                                              \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "  %s:%d: %s: REQUIRE(%s) failed\n", __FILE__,         \
                    __LINE__, h_case, #cond);                                      \
            h_case_failed = 1;                                                     \
            return;                                                                \
        }                                                                          \
    } while (0)

/* CHECK that a call returned status `want`; on mismatch print the error record. */
#define CHECK_STATUS(call, want, errp)                                             \
    do {                                                                           \
        trk_status h_st = (call);                                                  \
        if (h_st != (want)) {                                                      \
            fprintf(stderr, "  %s:%d: %s: %s returned %s, want %s (%s)\n",        \
                    __FILE__, __LINE__, h_case, #call, trk_status_name(h_st),      \
                    trk_status_name(want),                                         \
                    h_st == TRK_OK ? "" : (errp)->message);                        \
            h_case_failed = 1;                                                     \
        }                                                                          \
    } while (0)

#define RUN(name)                                                                  \
    do {                                                                           \
        h_case = #name;                                                            \
        h_case_failed = 0;                                                         \
        name();                                                                    \
        if (ERR_peek_error() != 0) {                                               \
            fprintf(stderr, "  %s: the OpenSSL error queue is not empty\n", h_case); \
            ERR_print_errors_fp(stderr);                                           \
            h_case_failed = 1;                                                     \
        }                                                                          \
        if (h_case_failed) {                                                       \
            h_failed++;                                                            \
            printf("FAIL %s\n", #name);                                            \
        } else {                                                                   \
            h_passed++;                                                            \
            printf("ok   %s\n", #name);                                            \
        }                                                                          \
        fflush(stdout);                                                            \
    } while (0)

#define DONE()                                                                     \
    (printf("%d passed, %d failed\n", h_passed, h_failed), h_failed ? 1 : 0)

#endif
