/* Multi-threaded use of one store handle from pthreads. Usage: threads SCRATCH_DIR [SMALL] */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define THREADS 4

static int rounds = 200;
static atomic_int failures = 0;

/* CHECK for worker threads: counts into an atomic. */
#define TCHECK(cond)                                                              \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: TCHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            atomic_fetch_add(&failures, 1);                                       \
        }                                                                         \
    } while (0)

typedef struct {
    vt_store *store;
    int id;
    vt_hashcode *hashes; /* rounds entries, written by this thread */
} worker;

/* Adds distinct blocks, reads each back, and checks the per-thread error message. */
static void *add_get(void *arg) {
    worker *w = arg;
    uint8_t data[2048], back[2048];
    for (int i = 0; i < rounds; i++) {
        size_t len = 100 + (size_t)((i * 37 + w->id * 11) % 1900);
        fill_random(data, len, (uint32_t)(w->id * 100000 + i));
        TCHECK(vt_add(w->store, data, len, &w->hashes[i]) == VT_OK);
        size_t n = 0;
        TCHECK(vt_get(w->store, &w->hashes[i], back, sizeof back, &n) == VT_OK);
        TCHECK(n == len && memcmp(back, data, len) == 0);
        /* An error on this thread sets this thread's message only. */
        if (i % 10 == 0) {
            TCHECK(vt_get(w->store, &w->hashes[i], back, 1, &n) == VT_ERR_BUFFER_TOO_SMALL);
            const char *m = vt_last_error_message();
            TCHECK(m != NULL && strstr(m, "buffer has 1") != NULL);
            bool present = false;
            TCHECK(vt_contains(w->store, &w->hashes[i], &present) == VT_OK && present);
            TCHECK(vt_last_error_message() == NULL);
        }
    }
    return NULL;
}

/* Blockifies and reads back larger content (exercises blockify's own worker threads). */
static void *blockify_read(void *arg) {
    worker *w = arg;
    size_t len = rounds >= 200 ? 1500000 : 300000;
    uint8_t *data = malloc(len), *back = malloc(len);
    REQUIRE(data && back);
    for (int i = 0; i < 3; i++) {
        fill_random(data, len, (uint32_t)(w->id * 7 + i));
        vt_ref *r = NULL;
        TCHECK(vt_blockify_buffer(w->store, data, len, &r) == VT_OK);
        size_t n = 0;
        TCHECK(vt_read(w->store, r, back, len, &n) == VT_OK);
        TCHECK(n == len && memcmp(back, data, len) == 0);
        uint8_t win[1000];
        TCHECK(vt_read_range(w->store, r, len / 2, win, sizeof win, &n) == VT_OK);
        TCHECK(n == sizeof win && memcmp(win, data + len / 2, n) == 0);
        char *t = NULL;
        TCHECK(vt_ref_to_string(r, &t) == VT_OK);
        vt_string_free(t);
        vt_ref_free(r);
    }
    free(data);
    free(back);
    return NULL;
}

static void run_workers(vt_store *s, void *(*fn)(void *), worker *ws) {
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        ws[t].store = s;
        ws[t].id = t;
        REQUIRE(pthread_create(&th[t], NULL, fn, &ws[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) REQUIRE(pthread_join(th[t], NULL) == 0);
}

static void test_shared_store(vt_store *s, const char *path) {
    worker ws[THREADS];
    for (int t = 0; t < THREADS; t++) {
        ws[t].hashes = calloc((size_t)rounds, sizeof(vt_hashcode));
        REQUIRE(ws[t].hashes != NULL);
    }
    run_workers(s, add_get, ws);
    run_workers(s, blockify_read, ws);
    uint64_t count = 0;
    OK(vt_store_block_count(s, &count));
    CHECK(count >= (uint64_t)(THREADS * rounds));

    /* Every block from every thread is visible to all; durable after reopening. */
    if (path) {
        OK(vt_store_close(s));
        vt_store_free(s);
        MUST(vt_store_open(path, VT_OPEN_READ_ONLY, &s));
    }
    for (int t = 0; t < THREADS; t++) {
        for (int i = 0; i < rounds; i++) {
            bool present = false;
            OK(vt_contains(s, &ws[t].hashes[i], &present));
            CHECK(present);
        }
        free(ws[t].hashes);
    }
    if (path) vt_store_free(s);
}

typedef struct {
    vt_store *store;
    atomic_int *started;
    int oks, closed, others;
} racer;

/* Adds until the store is closed under it: every call must be OK or VT_ERR_CLOSED. */
static void *add_until_closed(void *arg) {
    racer *r = arg;
    uint8_t data[256];
    for (int i = 0;; i++) {
        fill_random(data, sizeof data, (uint32_t)i);
        vt_hashcode h;
        vt_result rc = vt_add(r->store, data, sizeof data, &h);
        if (i == 10) atomic_fetch_add(r->started, 1);
        if (rc == VT_OK) {
            r->oks++;
        } else if (rc == VT_ERR_CLOSED) {
            r->closed++;
            break;
        } else {
            r->others++;
            break;
        }
    }
    return NULL;
}

static void test_close_race(const char *dir) {
    char p[4096];
    join_path(p, sizeof p, dir, "race-store");
    vt_store *s = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &s));
    atomic_int started = 0;
    racer rs[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        rs[t] = (racer){.store = s, .started = &started};
        REQUIRE(pthread_create(&th[t], NULL, add_until_closed, &rs[t]) == 0);
    }
    struct timespec ms = {0, 1000000};
    while (atomic_load(&started) < THREADS) nanosleep(&ms, NULL);
    OK(vt_store_close(s));
    for (int t = 0; t < THREADS; t++) {
        REQUIRE(pthread_join(th[t], NULL) == 0);
        CHECK(rs[t].closed == 1 && rs[t].others == 0 && rs[t].oks > 10);
    }
    vt_store_free(s);
    /* Everything added before the close was committed by it. */
    MUST(vt_store_open(p, VT_OPEN_READ_ONLY, &s));
    uint64_t count = 0;
    OK(vt_store_block_count(s, &count));
    uint64_t total = 0;
    for (int t = 0; t < THREADS; t++) total += (uint64_t)rs[t].oks;
    /* The threads add the same sequence of blocks, so count is the longest run. */
    int longest = 0;
    for (int t = 0; t < THREADS; t++)
        if (rs[t].oks > longest) longest = rs[t].oks;
    CHECK(count == (uint64_t)longest && total >= count);
    vt_store_free(s);
}

typedef struct {
    vt_store *store;
    int id;
} txn_arg;

static void *txn_adder(void *arg) {
    txn_arg *a = arg;
    uint8_t data[300];
    for (int i = 0; i < 50; i++) {
        fill_random(data, sizeof data, (uint32_t)(a->id * 1000 + i + 500000));
        TCHECK(vt_add(a->store, data, sizeof data, NULL) == VT_OK);
    }
    return NULL;
}

/* Adds from several threads inside one transaction; abort forgets all of them. */
static void test_txn_threads(const char *dir) {
    char p[4096];
    join_path(p, sizeof p, dir, "txn-threads");
    vt_store *s = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &s));
    for (int round = 0; round < 2; round++) {
        OK(vt_txn_begin(s));
        pthread_t th[THREADS];
        txn_arg as[THREADS];
        for (int t = 0; t < THREADS; t++) {
            as[t] = (txn_arg){.store = s, .id = t};
            REQUIRE(pthread_create(&th[t], NULL, txn_adder, &as[t]) == 0);
        }
        for (int t = 0; t < THREADS; t++) REQUIRE(pthread_join(th[t], NULL) == 0);
        uint64_t count = 0;
        OK(vt_store_block_count(s, &count));
        CHECK(count == THREADS * 50);
        if (round == 0) {
            OK(vt_txn_abort(s));
            OK(vt_store_block_count(s, &count));
            CHECK(count == 0);
        } else {
            OK(vt_txn_commit(s));
        }
    }
    OK(vt_store_close(s));
    vt_store_free(s);
    MUST(vt_store_open(p, VT_OPEN_READ_ONLY, &s));
    uint64_t count = 0;
    OK(vt_store_block_count(s, &count));
    CHECK(count == THREADS * 50);
    vt_store_free(s);
}

int main(int argc, char **argv) {
    REQUIRE(argc >= 2);
    const char *dir = argv[1];
    if (argc >= 3 && strcmp(argv[2], "small") == 0) rounds = 30;

    vt_store *m = NULL;
    MUST(vt_store_open_memory(0, &m));
    test_shared_store(m, NULL);
    vt_store_free(m);

    char p[4096];
    join_path(p, sizeof p, dir, "store");
    vt_store *s = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &s));
    test_shared_store(s, p);

    test_close_race(dir);
    test_txn_threads(dir);
    check_failures += atomic_load(&failures);
    return check_done("threads");
}
