/* Minimal checking helpers shared by the C test programs of libvt. */
#ifndef VT_TEST_CHECK_H
#define VT_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vt.h"

static int check_failures = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

/* Stops the program: for failures after which continuing would crash. */
#define REQUIRE(cond)                                                              \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

/* Checks a call's result code, and that the per-thread error message is set exactly
 * when the call failed. */
#define EXPECT_RC(expr, want)                                                         \
    do {                                                                              \
        vt_result rc_ = (expr);                                                       \
        const char *m_ = vt_last_error_message();                                     \
        if (rc_ != (want)) {                                                          \
            fprintf(stderr, "%s:%d: %s returned %d (%s), want %s: %s\n", __FILE__,    \
                    __LINE__, #expr, (int)rc_, vt_result_name((int)rc_), #want,       \
                    m_ ? m_ : "(no message)");                                        \
            check_failures++;                                                         \
        } else if ((rc_ == VT_OK) != (m_ == NULL)) {                                  \
            fprintf(stderr, "%s:%d: %s: error message %s\n", __FILE__, __LINE__, #expr, \
                    m_ ? "set after success" : "missing after failure");              \
            check_failures++;                                                         \
        }                                                                             \
    } while (0)

#define OK(expr) EXPECT_RC(expr, VT_OK)

/* Stops the program when a call that later steps depend on fails. */
#define MUST(expr)                                                      \
    do {                                                                \
        vt_result rc2_ = (expr);                                        \
        if (rc2_ != VT_OK) {                                            \
            const char *m2_ = vt_last_error_message();                  \
            fprintf(stderr, "%s:%d: %s failed: %s: %s\n", __FILE__, __LINE__, #expr, \
                    vt_result_name((int)rc2_), m2_ ? m2_ : "(no message)"); \
            exit(1);                                                    \
        }                                                               \
    } while (0)

static inline int check_done(const char *name) {
    if (check_failures) {
        fprintf(stderr, "%s: %d failures\n", name, check_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

/* Deterministic pseudo-random bytes (xorshift32). */
static inline void fill_random(uint8_t *buf, size_t n, uint32_t seed) {
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

static inline void join_path(char *out, size_t n, const char *a, const char *b) {
    int w = snprintf(out, n, "%s/%s", a, b);
    REQUIRE(w > 0 && (size_t)w < n);
}

/* Writes a whole file; stops the program on failure. */
static inline void write_file(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(n == 0 || fwrite(data, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

/* Reads a whole file into a malloc'd buffer (free it); NULL when it cannot be read. */
static inline uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    REQUIRE(buf != NULL);
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        cap *= 2;
        buf = realloc(buf, cap);
        REQUIRE(buf != NULL);
    }
    fclose(f);
    *n = len;
    return buf;
}

/* True when the file at `path` holds exactly `n` bytes equal to `data`. */
static inline int file_equals(const char *path, const uint8_t *data, size_t n) {
    size_t got = 0;
    uint8_t *buf = read_file(path, &got);
    int eq = buf != NULL && got == n && (n == 0 || memcmp(buf, data, n) == 0);
    free(buf);
    return eq;
}

#endif
