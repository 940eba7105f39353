/* Times vt_get on a cached block (memory store) from C through the real linked library.
 * Usage: bench_get SCRATCH_DIR [ITERATIONS]. Prints nanoseconds per call; asserts nothing
 * about speed (the test suite runs it only as a smoke test). */
#define _POSIX_C_SOURCE 200809L
#include <time.h>

#include "check.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    REQUIRE(argc >= 2);
    long iters = argc >= 3 ? atol(argv[2]) : 1000000;
    REQUIRE(iters > 0);
    vt_store *s = NULL;
    MUST(vt_store_open_memory(0, &s));
    static uint8_t data[4096], buf[4096];
    size_t sizes[] = {64, 4096};
    for (size_t k = 0; k < 2; k++) {
        size_t len = sizes[k];
        fill_random(data, len, (uint32_t)len);
        vt_hashcode h;
        MUST(vt_add(s, data, len, &h));
        size_t n = 0;
        for (long i = 0; i < iters / 10 + 1; i++) MUST(vt_get(s, &h, buf, sizeof buf, &n));
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            if (vt_get(s, &h, buf, sizeof buf, &n) != VT_OK) REQUIRE(0);
        }
        double per = (now_ns() - t0) / (double)iters;
        CHECK(n == len && memcmp(buf, data, len) == 0);
        printf("vt_get %zu bytes: %.1f ns/call\n", len, per);
    }
    vt_store_free(s);
    return check_done("bench_get");
}
