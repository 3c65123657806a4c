/*
 * What the C check programs share: TAP-style results ("ok - ..." / "not ok - ...", counted in
 * `passed` and `failed`) and checks of a status together with the thread's last error.
 * Included by abi_check.c and auth_check.c; everything is static, one copy per program.
 */
#ifndef WSPUSH_TAP_H
#define WSPUSH_TAP_H

#include <stdio.h>
#include <string.h>

#include "wspush.h"

static int passed;
static int failed;

static inline void expect(int ok, const char *what) {
    if (ok) {
        passed++;
        printf("ok - %s\n", what);
    } else {
        failed++;
        printf("not ok - %s\n", what);
    }
}

static char last[512];

/* The last error on this thread, into `last`. */
static inline const char *last_error(void) {
    size_t len = 0;
    if (wspush_last_error(last, sizeof last, &len) != WSPUSH_STATUS_OK) {
        return "(wspush_last_error failed)";
    }
    return last;
}

/* Whether `status` is `want` and the last error starts with `prefix`. */
static inline void expect_status(wspush_status status, wspush_status want, const char *prefix, const char *what) {
    const char *message = last_error();
    int ok = status == want && strncmp(message, prefix, strlen(prefix)) == 0;
    if (!ok) {
        printf("# got %s (%s), want %s (%s...)\n", wspush_status_str(status), message, wspush_status_str(want),
               prefix);
    }
    expect(ok, what);
}

#endif
