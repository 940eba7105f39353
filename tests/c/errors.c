/* Every error path of the C API. Usage: errors SCRATCH_DIR */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static const char *scratch;

static void path_in(char *out, size_t n, const char *name) { join_path(out, n, scratch, name); }

static void test_result_names(void) {
    for (int c = 0; c <= 12; c++) {
        const char *n = vt_result_name(c);
        CHECK(n != NULL && strlen(n) > 0 && strcmp(n, "unknown result code") != 0);
    }
    CHECK(strcmp(vt_result_name(9999), "unknown result code") == 0);
    CHECK(strcmp(vt_result_name(-1), "unknown result code") == 0);
    /* Codes are stable numbers. */
    CHECK(VT_OK == 0 && VT_ERR_NULL == 1 && VT_ERR_INVALID == 2 && VT_ERR_BUFFER_TOO_SMALL == 3);
    CHECK(VT_ERR_NOT_FOUND == 4 && VT_ERR_CORRUPT == 5 && VT_ERR_IO == 6 && VT_ERR_LOCKED == 7);
    CHECK(VT_ERR_CLOSED == 8 && VT_ERR_UNSUPPORTED == 9 && VT_ERR_INTERNAL == 10);
    CHECK(VT_ERR_INDEX == 11 && VT_ERR_STATE == 12);
}

static void test_open_errors(void) {
    char p[4096];
    vt_store *s = (vt_store *)&s; /* garbage: must be overwritten with NULL */
    EXPECT_RC(vt_store_open(NULL, 0, &s), VT_ERR_NULL);
    CHECK(s == NULL);
    EXPECT_RC(vt_store_open("x", 0, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_store_open("", VT_OPEN_CREATE, &s), VT_ERR_INVALID);
    CHECK(strstr(vt_last_error_message(), "empty") != NULL);
    path_in(p, sizeof p, "nostore");
    EXPECT_RC(vt_store_open(p, 0, &s), VT_ERR_INVALID); /* no store there */
    CHECK(s == NULL);
    EXPECT_RC(vt_store_open(p, 0x100, &s), VT_ERR_INVALID);
    EXPECT_RC(vt_store_open(p, VT_OPEN_CREATE | VT_OPEN_READ_ONLY, &s), VT_ERR_INVALID);
    EXPECT_RC(vt_store_open_memory(0, NULL), VT_ERR_NULL);
    /* A regular file where the store directory should be. */
    path_in(p, sizeof p, "afile");
    write_file(p, (const uint8_t *)"x", 1);
    EXPECT_RC(vt_store_open(p, VT_OPEN_CREATE, &s), VT_ERR_IO);
    CHECK(s == NULL);

    /* A second writer on the same store is refused. */
    path_in(p, sizeof p, "locked");
    vt_store *w = NULL, *w2 = NULL, *r = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &w));
    EXPECT_RC(vt_store_open(p, 0, &w2), VT_ERR_LOCKED);
    CHECK(w2 == NULL);
    /* Read-only handles take no lock, but cannot write. */
    OK(vt_store_open(p, VT_OPEN_READ_ONLY, &r));
    EXPECT_RC(vt_add(r, (const uint8_t *)"abc", 3, NULL), VT_ERR_UNSUPPORTED);
    vt_ref *ref = NULL;
    uint8_t big[100];
    fill_random(big, sizeof big, 1);
    EXPECT_RC(vt_blockify_buffer(r, big, sizeof big, &ref), VT_ERR_UNSUPPORTED);
    CHECK(ref == NULL);
    EXPECT_RC(vt_txn_begin(r), VT_ERR_UNSUPPORTED);
    vt_store_free(r);
    OK(vt_store_close(w));
    /* After close the lock is released. */
    OK(vt_store_open(p, 0, &w2));
    vt_store_free(w2);
    vt_store_free(w);
}

static void test_null_args(vt_store *s) {
    uint8_t buf[64];
    size_t n = 0;
    vt_hashcode h;
    bool b;
    uint64_t u;
    OK(vt_add(s, (const uint8_t *)"hello", 5, &h));

    EXPECT_RC(vt_add(NULL, buf, 1, &h), VT_ERR_NULL);
    EXPECT_RC(vt_add(s, NULL, 5, &h), VT_ERR_NULL);
    OK(vt_add(s, NULL, 0, NULL)); /* NULL with length 0 is the empty block */
    EXPECT_RC(vt_get(NULL, &h, buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_get(s, NULL, buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_get(s, &h, NULL, 10, &n), VT_ERR_NULL);
    EXPECT_RC(vt_get(s, &h, buf, sizeof buf, NULL), VT_ERR_NULL);
    uint8_t *a = (uint8_t *)buf;
    size_t alen = 99;
    EXPECT_RC(vt_get_alloc(NULL, &h, &a, &alen), VT_ERR_NULL);
    CHECK(a == NULL && alen == 0);
    EXPECT_RC(vt_get_alloc(s, NULL, &a, &alen), VT_ERR_NULL);
    EXPECT_RC(vt_get_alloc(s, &h, NULL, &alen), VT_ERR_NULL);
    EXPECT_RC(vt_get_alloc(s, &h, &a, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_contains(NULL, &h, &b), VT_ERR_NULL);
    EXPECT_RC(vt_contains(s, NULL, &b), VT_ERR_NULL);
    EXPECT_RC(vt_contains(s, &h, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_store_block_count(NULL, &u), VT_ERR_NULL);
    EXPECT_RC(vt_store_block_count(s, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_store_flush(NULL), VT_ERR_NULL);
    EXPECT_RC(vt_store_close(NULL), VT_ERR_NULL);
    EXPECT_RC(vt_txn_begin(NULL), VT_ERR_NULL);
    EXPECT_RC(vt_txn_commit(NULL), VT_ERR_NULL);
    EXPECT_RC(vt_txn_abort(NULL), VT_ERR_NULL);

    vt_ref *r = (vt_ref *)buf;
    EXPECT_RC(vt_blockify_buffer(NULL, buf, 1, &r), VT_ERR_NULL);
    CHECK(r == NULL);
    EXPECT_RC(vt_blockify_buffer(s, NULL, 1, &r), VT_ERR_NULL);
    EXPECT_RC(vt_blockify_buffer(s, buf, 1, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_blockify_fd(NULL, 0, &r), VT_ERR_NULL);
    EXPECT_RC(vt_blockify_fd(s, 0, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_blockify_path(NULL, "x", &r), VT_ERR_NULL);
    EXPECT_RC(vt_blockify_path(s, NULL, &r), VT_ERR_NULL);
    EXPECT_RC(vt_blockify_path(s, "x", NULL), VT_ERR_NULL);

    MUST(vt_blockify_buffer(s, (const uint8_t *)"some content", 12, &r));
    EXPECT_RC(vt_read(NULL, r, buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_read(s, NULL, buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_read(s, r, NULL, 5, &n), VT_ERR_NULL);
    EXPECT_RC(vt_read(s, r, buf, sizeof buf, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_read_range(NULL, r, 0, buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_read_range(s, NULL, 0, buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_read_range(s, r, 0, NULL, 5, &n), VT_ERR_NULL);
    EXPECT_RC(vt_read_range(s, r, 0, buf, sizeof buf, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_read_alloc(NULL, r, &a, &alen), VT_ERR_NULL);
    EXPECT_RC(vt_read_alloc(s, NULL, &a, &alen), VT_ERR_NULL);
    EXPECT_RC(vt_read_alloc(s, r, NULL, &alen), VT_ERR_NULL);
    EXPECT_RC(vt_read_alloc(s, r, &a, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_read_to_fd(NULL, r, 1, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_read_to_fd(s, NULL, 1, NULL), VT_ERR_NULL);

    char *str = (char *)buf;
    vt_ref *tmp = r; /* failing calls set their out-pointer to NULL: keep `r` */
    EXPECT_RC(vt_ref_parse(NULL, &tmp), VT_ERR_NULL);
    CHECK(tmp == NULL);
    EXPECT_RC(vt_ref_parse("LB{00}", NULL), VT_ERR_NULL);
    EXPECT_RC(vt_ref_format(NULL, (char *)buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_ref_format(r, NULL, 5, &n), VT_ERR_NULL);
    EXPECT_RC(vt_ref_format(r, (char *)buf, sizeof buf, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_ref_to_string(NULL, &str), VT_ERR_NULL);
    CHECK(str == NULL);
    EXPECT_RC(vt_ref_to_string(r, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_ref_span(NULL, &u), VT_ERR_NULL);
    EXPECT_RC(vt_ref_span(r, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_ref_hashcode(NULL, &h), VT_ERR_NULL);
    EXPECT_RC(vt_ref_hashcode(r, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_hashcode_format(NULL, (char *)buf, sizeof buf, &n), VT_ERR_NULL);
    EXPECT_RC(vt_hashcode_format(&h, NULL, 5, &n), VT_ERR_NULL);
    EXPECT_RC(vt_hashcode_format(&h, (char *)buf, sizeof buf, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_hashcode_parse(NULL, &h), VT_ERR_NULL);
    EXPECT_RC(vt_hashcode_parse("H{blake3:00}", NULL), VT_ERR_NULL);

    EXPECT_RC(vt_pack(NULL, "d", "a", NULL, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_pack(s, NULL, "a", NULL, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_pack(s, "d", NULL, NULL, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_unpack(NULL, "a", 0, "t"), VT_ERR_NULL);
    EXPECT_RC(vt_unpack(s, NULL, 0, "t"), VT_ERR_NULL);
    EXPECT_RC(vt_unpack(s, "a", 0, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_restore(NULL, "D{}", "t"), VT_ERR_NULL);
    EXPECT_RC(vt_restore(s, NULL, "t"), VT_ERR_NULL);
    EXPECT_RC(vt_restore(s, "D{}", NULL), VT_ERR_NULL);
    EXPECT_RC(vt_archive_count(NULL, &u), VT_ERR_NULL);
    EXPECT_RC(vt_archive_count("a", NULL), VT_ERR_NULL);
    EXPECT_RC(vt_archive_revision(NULL, 0, &str), VT_ERR_NULL);
    EXPECT_RC(vt_archive_revision("a", 0, NULL), VT_ERR_NULL);

    vt_dir_iter *it = (vt_dir_iter *)buf;
    vt_dir_entry e;
    EXPECT_RC(vt_dir_open(NULL, "D{}", &it), VT_ERR_NULL);
    CHECK(it == NULL);
    EXPECT_RC(vt_dir_open(s, NULL, &it), VT_ERR_NULL);
    EXPECT_RC(vt_dir_open(s, "D{}", NULL), VT_ERR_NULL);
    EXPECT_RC(vt_dir_next(NULL, &e, &b), VT_ERR_NULL);
    EXPECT_RC(vt_dir_entry_ref(NULL, &tmp), VT_ERR_NULL);

    /* An empty Dir iterates nothing; its out-pointers are still checked. */
    MUST(vt_dir_open(s, "D{}", &it));
    EXPECT_RC(vt_dir_next(it, NULL, &b), VT_ERR_NULL);
    EXPECT_RC(vt_dir_next(it, &e, NULL), VT_ERR_NULL);
    vt_ref *r2 = NULL;
    EXPECT_RC(vt_dir_entry_ref(it, NULL), VT_ERR_NULL);
    EXPECT_RC(vt_dir_entry_ref(it, &r2), VT_ERR_STATE); /* before vt_dir_next */
    b = true;
    OK(vt_dir_next(it, &e, &b));
    CHECK(!b);
    EXPECT_RC(vt_dir_entry_ref(it, &r2), VT_ERR_STATE); /* after the end */
    vt_dir_free(it);

    /* Freeing NULL is a no-op everywhere. */
    vt_store_free(NULL);
    vt_ref_free(NULL);
    vt_dir_free(NULL);
    vt_bytes_free(NULL, 0);
    vt_string_free(NULL);
    vt_ref_free(r);
}

static void test_bad_values(vt_store *s) {
    vt_hashcode h;
    OK(vt_add(s, (const uint8_t *)"value", 5, &h));
    uint8_t buf[64];
    size_t n = 0;
    vt_hashcode bad = h;
    bad.alg = 7;
    EXPECT_RC(vt_get(s, &bad, buf, sizeof buf, &n), VT_ERR_INVALID);
    bad = h;
    bad.digest_len = 40;
    EXPECT_RC(vt_get(s, &bad, buf, sizeof buf, &n), VT_ERR_INVALID);
    bad.digest_len = 20; /* SHA-1's length with BLAKE3 */
    bool present = false;
    EXPECT_RC(vt_contains(s, &bad, &present), VT_ERR_INVALID);

    vt_ref *r = (vt_ref *)buf;
    EXPECT_RC(vt_ref_parse("garbage", &r), VT_ERR_INVALID);
    CHECK(r == NULL);
    EXPECT_RC(vt_ref_parse("B{H{blake3:00}:5}", &r), VT_ERR_INVALID);
    EXPECT_RC(vt_ref_parse("\xff\xfe", &r), VT_ERR_INVALID);
    CHECK(strstr(vt_last_error_message(), "UTF-8") != NULL);
    EXPECT_RC(vt_ref_parse("", &r), VT_ERR_INVALID);
    EXPECT_RC(vt_hashcode_parse("H{md5:00}", &h), VT_ERR_INVALID);
    EXPECT_RC(vt_hashcode_parse("nothing", &h), VT_ERR_INVALID);

    /* A literal reference has no hashcode. */
    MUST(vt_ref_parse("LB{616263}", &r));
    EXPECT_RC(vt_ref_hashcode(r, &h), VT_ERR_INVALID);
    vt_ref_free(r);
}

static void test_short_buffers(vt_store *s) {
    uint8_t data[300];
    fill_random(data, sizeof data, 5);
    vt_hashcode h;
    OK(vt_add(s, data, sizeof data, &h));
    uint8_t buf[400];
    memset(buf, 0x5A, sizeof buf);
    size_t n = 0;
    EXPECT_RC(vt_get(s, &h, buf, sizeof data - 1, &n), VT_ERR_BUFFER_TOO_SMALL);
    CHECK(n == sizeof data);
    CHECK(buf[0] == 0x5A && buf[sizeof data - 2] == 0x5A); /* nothing copied */
    OK(vt_get(s, &h, buf, sizeof data, &n));
    CHECK(n == sizeof data && memcmp(buf, data, n) == 0);

    vt_ref *r = NULL;
    MUST(vt_blockify_buffer(s, data, sizeof data, &r));
    EXPECT_RC(vt_read(s, r, buf, 10, &n), VT_ERR_BUFFER_TOO_SMALL);
    CHECK(n == sizeof data);
    OK(vt_read(s, r, buf, sizeof buf, &n));
    CHECK(n == sizeof data);

    char text[512];
    size_t tl = 0;
    OK(vt_ref_format(r, text, sizeof text, &tl));
    size_t len = strlen(text);
    CHECK(tl == len);
    /* Exactly the text length leaves no room for the NUL. */
    EXPECT_RC(vt_ref_format(r, text, len, &tl), VT_ERR_BUFFER_TOO_SMALL);
    CHECK(tl == len);
    OK(vt_ref_format(r, text, len + 1, &tl));
    EXPECT_RC(vt_hashcode_format(&h, text, 5, &tl), VT_ERR_BUFFER_TOO_SMALL);
    CHECK(tl == strlen("H{blake3:}") + 64);
    vt_ref_free(r);
}

static void test_missing(vt_store *s) {
    uint8_t never[100];
    fill_random(never, sizeof never, 999);
    /* Its hashcode, computed by a memory store. */
    vt_store *m = NULL;
    MUST(vt_store_open_memory(1 << 20, &m));
    vt_hashcode h;
    OK(vt_add(m, never, sizeof never, &h));
    uint8_t buf[128];
    size_t n = 7;
    EXPECT_RC(vt_get(s, &h, buf, sizeof buf, &n), VT_ERR_NOT_FOUND);
    CHECK(strstr(vt_last_error_message(), "not found") != NULL);
    uint8_t *a = buf;
    size_t alen = 5;
    EXPECT_RC(vt_get_alloc(s, &h, &a, &alen), VT_ERR_NOT_FOUND);
    CHECK(a == NULL && alen == 0);
    bool present = true;
    OK(vt_contains(s, &h, &present));
    CHECK(!present);

    /* Content blockified into the memory store is missing from `s`. */
    size_t big_len = 200000;
    uint8_t *big = malloc(big_len);
    REQUIRE(big != NULL);
    fill_random(big, big_len, 3);
    vt_ref *r = NULL;
    MUST(vt_blockify_buffer(m, big, big_len, &r));
    uint8_t *out = malloc(big_len);
    REQUIRE(out != NULL);
    EXPECT_RC(vt_read(s, r, out, big_len, &n), VT_ERR_NOT_FOUND);
    EXPECT_RC(vt_read_range(s, r, 1000, out, 10, &n), VT_ERR_NOT_FOUND);
    EXPECT_RC(vt_read_alloc(s, r, &a, &alen), VT_ERR_NOT_FOUND);
    CHECK(a == NULL);
    /* ... but readable through the store that has it. */
    OK(vt_read(m, r, out, big_len, &n));
    CHECK(n == big_len && memcmp(out, big, n) == 0);
    vt_ref_free(r);
    free(out);
    free(big);
    vt_store_free(m);
}

static void test_fds(vt_store *s) {
    vt_ref *r = NULL;
    EXPECT_RC(vt_blockify_fd(s, -1, &r), VT_ERR_INVALID);
    char p[4096];
    path_in(p, sizeof p, "fdfile");
    write_file(p, (const uint8_t *)"0123456789", 10);
    int fd = open(p, O_RDONLY);
    REQUIRE(fd >= 0);
    close(fd); /* now a closed descriptor number */
    EXPECT_RC(vt_blockify_fd(s, fd, &r), VT_ERR_IO);
    CHECK(r == NULL);
    path_in(p, sizeof p, "does-not-exist");
    EXPECT_RC(vt_blockify_path(s, p, &r), VT_ERR_IO);
    EXPECT_RC(vt_blockify_path(s, "", &r), VT_ERR_INVALID);
    /* A directory cannot be read as a file. */
    EXPECT_RC(vt_blockify_path(s, scratch, &r), VT_ERR_IO);

    MUST(vt_blockify_buffer(s, (const uint8_t *)"0123456789abcdefghijklmnopqrstuvwxyz0123", 40, &r));
    uint64_t w = 99;
    EXPECT_RC(vt_read_to_fd(s, r, -1, &w), VT_ERR_INVALID);
    CHECK(w == 0);
    path_in(p, sizeof p, "fdfile");
    fd = open(p, O_RDONLY); /* not writable */
    REQUIRE(fd >= 0);
    EXPECT_RC(vt_read_to_fd(s, r, fd, &w), VT_ERR_IO);
    close(fd);
    vt_ref_free(r);
}

/* Flips bytes in the middle of the store's only segment. */
static void corrupt_segment(const char *store_dir) {
    char dp[4096], seg[4096] = {0};
    join_path(dp, sizeof dp, store_dir, "data");
    DIR *d = opendir(dp);
    REQUIRE(d != NULL);
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        size_t l = strlen(ent->d_name);
        if (l > 4 && strcmp(ent->d_name + l - 4, ".vtd") == 0) join_path(seg, sizeof seg, dp, ent->d_name);
    }
    closedir(d);
    REQUIRE(seg[0] != 0);
    size_t n = 0;
    uint8_t *bytes = read_file(seg, &n);
    REQUIRE(bytes != NULL && n > 1000);
    for (size_t i = n / 2; i < n / 2 + 16; i++) bytes[i] ^= 0xFF;
    write_file(seg, bytes, n);
    free(bytes);
}

static void test_corrupt_store(void) {
    char p[4096];
    path_in(p, sizeof p, "corrupt-store");
    vt_store *s = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &s));
    size_t len = 64 * 1024;
    uint8_t *data = malloc(len);
    REQUIRE(data != NULL);
    fill_random(data, len, 42); /* incompressible: stored as is */
    vt_hashcode h;
    OK(vt_add(s, data, len, &h));
    vt_ref *r = NULL;
    char *t = NULL;
    MUST(vt_blockify_buffer(s, data, 100, &r)); /* 100 bytes: one small hashed block */
    OK(vt_ref_to_string(r, &t));
    vt_ref_free(r);
    OK(vt_store_close(s));
    vt_store_free(s);

    corrupt_segment(p);

    MUST(vt_store_open(p, 0, &s));
    uint8_t *buf = malloc(len);
    REQUIRE(buf != NULL);
    size_t n = 0;
    EXPECT_RC(vt_get(s, &h, buf, len, &n), VT_ERR_CORRUPT);
    CHECK(strstr(vt_last_error_message(), ".vtd") != NULL); /* names the segment */
    uint8_t *a = NULL;
    size_t alen = 0;
    EXPECT_RC(vt_get_alloc(s, &h, &a, &alen), VT_ERR_CORRUPT);
    CHECK(a == NULL);
    /* Only the damaged record is affected. */
    MUST(vt_ref_parse(t, &r));
    OK(vt_read(s, r, buf, len, &n));
    CHECK(n == 100 && memcmp(buf, data, 100) == 0);
    vt_ref_free(r);
    vt_string_free(t);
    vt_store_free(s);
    free(buf);
    free(data);
}

static void test_closed_and_state(void) {
    char p[4096], src[4096], arch[4096];
    path_in(p, sizeof p, "state-store");
    path_in(src, sizeof src, "state-src");
    path_in(arch, sizeof arch, "state.vt");
    REQUIRE(mkdir(src, 0755) == 0);
    vt_store *s = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &s));

    /* Transaction state errors. */
    EXPECT_RC(vt_txn_commit(s), VT_ERR_STATE);
    EXPECT_RC(vt_txn_abort(s), VT_ERR_STATE);
    OK(vt_txn_begin(s));
    EXPECT_RC(vt_txn_begin(s), VT_ERR_STATE);
    EXPECT_RC(vt_store_flush(s), VT_ERR_STATE);
    EXPECT_RC(vt_pack(s, src, arch, NULL, NULL), VT_ERR_STATE);
    uint8_t data[500];
    fill_random(data, sizeof data, 8);
    vt_hashcode h;
    OK(vt_add(s, data, sizeof data, &h));
    /* Closing with an open transaction aborts it. */
    OK(vt_store_close(s));

    /* Every call on a closed handle fails with VT_ERR_CLOSED. */
    uint8_t buf[16];
    size_t n = 0;
    bool b = false;
    uint64_t u = 0;
    vt_ref *r = NULL;
    vt_dir_iter *it = NULL;
    EXPECT_RC(vt_store_close(s), VT_ERR_CLOSED);
    EXPECT_RC(vt_add(s, data, 5, &h), VT_ERR_CLOSED);
    EXPECT_RC(vt_get(s, &h, buf, sizeof buf, &n), VT_ERR_CLOSED);
    EXPECT_RC(vt_contains(s, &h, &b), VT_ERR_CLOSED);
    EXPECT_RC(vt_store_block_count(s, &u), VT_ERR_CLOSED);
    EXPECT_RC(vt_store_flush(s), VT_ERR_CLOSED);
    EXPECT_RC(vt_txn_begin(s), VT_ERR_CLOSED);
    EXPECT_RC(vt_txn_commit(s), VT_ERR_CLOSED);
    EXPECT_RC(vt_blockify_buffer(s, data, 5, &r), VT_ERR_CLOSED);
    EXPECT_RC(vt_pack(s, src, arch, NULL, NULL), VT_ERR_CLOSED);
    EXPECT_RC(vt_unpack(s, arch, 0, src), VT_ERR_CLOSED);
    EXPECT_RC(vt_dir_open(s, "D{}", &it), VT_ERR_CLOSED);
    vt_store_free(s);

    /* The aborted add is gone after reopening. */
    MUST(vt_store_open(p, 0, &s));
    OK(vt_contains(s, &h, &b));
    CHECK(!b);
    /* Memory stores have no transactions. */
    vt_store *m = NULL;
    MUST(vt_store_open_memory(0, &m));
    EXPECT_RC(vt_txn_begin(m), VT_ERR_UNSUPPORTED);
    EXPECT_RC(vt_txn_commit(m), VT_ERR_UNSUPPORTED);
    EXPECT_RC(vt_txn_abort(m), VT_ERR_UNSUPPORTED);
    EXPECT_RC(vt_pack(m, src, arch, NULL, NULL), VT_ERR_UNSUPPORTED);
    OK(vt_store_close(m));
    EXPECT_RC(vt_add(m, data, 5, &h), VT_ERR_CLOSED);
    vt_store_free(m);
    vt_store_free(s);
}

static void test_tree_errors(void) {
    char p[4096], src[4096], arch[4096], tgt[4096], bad[4096];
    path_in(p, sizeof p, "tree-err-store");
    path_in(src, sizeof src, "tree-err-src");
    path_in(arch, sizeof arch, "tree-err.vt");
    path_in(tgt, sizeof tgt, "tree-err-target");
    path_in(bad, sizeof bad, "bad.vt");
    REQUIRE(mkdir(src, 0755) == 0);
    char f[4096];
    join_path(f, sizeof f, src, "f");
    write_file(f, (const uint8_t *)"file", 4);
    vt_store *s = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &s));

    char missing[4096];
    path_in(missing, sizeof missing, "no-such-dir");
    EXPECT_RC(vt_pack(s, missing, arch, NULL, NULL), VT_ERR_IO);
    EXPECT_RC(vt_pack(s, src, arch, "bad\nname", NULL), VT_ERR_INVALID);
    char *t = NULL;
    MUST(vt_pack(s, src, arch, NULL, &t));

    /* Revisions that do not exist. */
    EXPECT_RC(vt_unpack(s, arch, 1, tgt), VT_ERR_NOT_FOUND);
    EXPECT_RC(vt_unpack(s, arch, -2, tgt), VT_ERR_NOT_FOUND);
    char *x = NULL;
    EXPECT_RC(vt_archive_revision(arch, 5, &x), VT_ERR_NOT_FOUND);
    CHECK(x == NULL);
    uint64_t c = 9;
    OK(vt_archive_count(missing, &c)); /* a missing archive has no revisions */
    CHECK(c == 0);
    EXPECT_RC(vt_unpack(s, missing, VT_REVISION_LATEST, tgt), VT_ERR_NOT_FOUND);
    /* The target must not exist. */
    EXPECT_RC(vt_unpack(s, arch, 0, src), VT_ERR_INVALID);
    /* A malformed archive line. */
    write_file(bad, (const uint8_t *)"this is not an archive line\n", 28);
    EXPECT_RC(vt_archive_count(bad, &c), VT_ERR_INVALID);
    EXPECT_RC(vt_unpack(s, bad, 0, tgt), VT_ERR_INVALID);
    EXPECT_RC(vt_restore(s, "not a dirent", tgt), VT_ERR_INVALID);

    /* Iterating something that is not a directory. */
    vt_dir_iter *it = NULL;
    EXPECT_RC(vt_dir_open(s, "F{\"f\":}", &it), VT_ERR_INVALID);
    CHECK(it == NULL);
    EXPECT_RC(vt_dir_open(s, "garbage", &it), VT_ERR_INVALID);
    /* A reference to bytes that are not Dir entries. */
    EXPECT_RC(vt_dir_open(s, "LB{ffffffff}", &it), VT_ERR_INVALID);

    /* A directory whose blocks are missing from the store. */
    vt_store *m = NULL;
    MUST(vt_store_open_memory(0, &m));
    EXPECT_RC(vt_dir_open(m, t, &it), VT_ERR_NOT_FOUND);
    EXPECT_RC(vt_restore(m, t, tgt), VT_ERR_NOT_FOUND);
    vt_store_free(m);
    vt_string_free(t);
    vt_store_free(s);
}

int main(int argc, char **argv) {
    REQUIRE(argc >= 2);
    scratch = argv[1];
    test_result_names();
    test_open_errors();

    char p[4096];
    path_in(p, sizeof p, "store");
    vt_store *s = NULL;
    MUST(vt_store_open(p, VT_OPEN_CREATE, &s));
    test_null_args(s);
    test_bad_values(s);
    test_short_buffers(s);
    test_missing(s);
    test_fds(s);
    OK(vt_store_close(s));
    vt_store_free(s);

    vt_store *m = NULL;
    MUST(vt_store_open_memory(0, &m));
    test_null_args(m);
    test_short_buffers(m);
    vt_store_free(m);

    test_corrupt_store();
    test_closed_and_state();
    test_tree_errors();
    return check_done("errors");
}
