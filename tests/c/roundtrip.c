/* Round trips through every part of the C API. Usage: roundtrip SCRATCH_DIR [SMALL] */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static int small_mode = 0;

static void test_version(void) {
    const char *v = vt_version();
    REQUIRE(v != NULL);
    CHECK(strlen(v) >= 5);
    CHECK(strcmp(vt_result_name(VT_OK), "ok") == 0);
    CHECK(vt_last_error_message() == NULL);
}

static void test_blocks(vt_store *s) {
    uint8_t data[5000];
    fill_random(data, sizeof data, 1);
    vt_hashcode h;
    OK(vt_add(s, data, sizeof data, &h));
    CHECK(h.alg == VT_HASH_BLAKE3 && h.digest_len == 32);

    bool present = false;
    OK(vt_contains(s, &h, &present));
    CHECK(present);

    /* Size query, then the real call. */
    size_t n = 0;
    EXPECT_RC(vt_get(s, &h, NULL, 0, &n), VT_ERR_BUFFER_TOO_SMALL);
    CHECK(n == sizeof data);
    uint8_t *buf = malloc(n);
    REQUIRE(buf != NULL);
    size_t got = 0;
    OK(vt_get(s, &h, buf, n, &got));
    CHECK(got == sizeof data && memcmp(buf, data, got) == 0);
    free(buf);

    uint8_t *a = NULL;
    size_t alen = 0;
    OK(vt_get_alloc(s, &h, &a, &alen));
    CHECK(alen == sizeof data && a != NULL && memcmp(a, data, alen) == 0);
    vt_bytes_free(a, alen);

    /* The empty block. */
    vt_hashcode he;
    OK(vt_add(s, NULL, 0, &he));
    OK(vt_get(s, &he, NULL, 0, &n));
    CHECK(n == 0);
    OK(vt_get_alloc(s, &he, &a, &alen));
    CHECK(a == NULL && alen == 0);

    /* Adding again stores nothing new. */
    uint64_t c1 = 0, c2 = 0;
    OK(vt_store_block_count(s, &c1));
    OK(vt_add(s, data, sizeof data, NULL));
    OK(vt_store_block_count(s, &c2));
    CHECK(c1 == c2 && c1 >= 2);

    /* Hashcode text round trip. */
    char text[128];
    size_t tl = 0;
    OK(vt_hashcode_format(&h, text, sizeof text, &tl));
    CHECK(tl == strlen(text));
    CHECK(strncmp(text, "H{blake3:", 9) == 0);
    vt_hashcode h2;
    memset(&h2, 0xAA, sizeof h2);
    OK(vt_hashcode_parse(text, &h2));
    CHECK(h2.alg == h.alg && h2.digest_len == h.digest_len &&
          memcmp(h2.digest, h.digest, 32) == 0);
}

/* Blockify `n` bytes three ways (buffer, fd, path) and read them back every way. */
static void roundtrip_content(vt_store *s, const char *dir, size_t n, uint32_t seed) {
    uint8_t *data = malloc(n ? n : 1);
    REQUIRE(data != NULL);
    fill_random(data, n, seed);
    /* Some runs of zeros, so RLE and dedup paths are taken. */
    if (n > 100000) memset(data + 50000, 0, 40000);

    vt_ref *r = NULL;
    MUST(vt_blockify_buffer(s, data, n, &r));
    uint64_t span = 0;
    OK(vt_ref_span(r, &span));
    CHECK(span == n);

    /* Whole read with the size protocol. */
    size_t need = 0;
    vt_result rc = vt_read(s, r, NULL, 0, &need);
    CHECK(n == 0 ? rc == VT_OK : rc == VT_ERR_BUFFER_TOO_SMALL);
    CHECK(need == n);
    uint8_t *back = malloc(n ? n : 1);
    REQUIRE(back != NULL);
    size_t got = 0;
    OK(vt_read(s, r, back, n, &got));
    CHECK(got == n && memcmp(back, data, n) == 0);

    /* Allocating read. */
    uint8_t *a = NULL;
    size_t alen = 0;
    OK(vt_read_alloc(s, r, &a, &alen));
    CHECK(alen == n && (n == 0 || memcmp(a, data, n) == 0));
    vt_bytes_free(a, alen);

    /* Ranges, including ones crossing the end and past it. */
    size_t offs[] = {0, 1, n / 3, n / 2 + 7, n > 10 ? n - 10 : 0, n, n + 5};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        size_t off = offs[i];
        uint8_t win[4096];
        size_t w = 0;
        OK(vt_read_range(s, r, off, win, sizeof win, &w));
        size_t want = off >= n ? 0 : (n - off < sizeof win ? n - off : sizeof win);
        CHECK(w == want);
        CHECK(w == 0 || memcmp(win, data + off, w) == 0);
    }

    /* Transcription round trip. */
    char *t = NULL;
    OK(vt_ref_to_string(r, &t));
    REQUIRE(t != NULL);
    size_t tl = 0;
    EXPECT_RC(vt_ref_format(r, NULL, 0, &tl), VT_ERR_BUFFER_TOO_SMALL);
    CHECK(tl == strlen(t));
    char *t2 = malloc(tl + 1);
    REQUIRE(t2 != NULL);
    OK(vt_ref_format(r, t2, tl + 1, &tl));
    CHECK(strcmp(t, t2) == 0);
    vt_ref *p = NULL;
    OK(vt_ref_parse(t, &p));
    char *t3 = NULL;
    OK(vt_ref_to_string(p, &t3));
    CHECK(t3 != NULL && strcmp(t, t3) == 0);
    OK(vt_read(s, p, back, n, &got));
    CHECK(got == n && memcmp(back, data, n) == 0);

    /* The same content from a file descriptor and from a path gives the same reference. */
    char path[4096];
    join_path(path, sizeof path, dir, "content.bin");
    write_file(path, data, n);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    vt_ref *rf = NULL;
    OK(vt_blockify_fd(s, fd, &rf));
    close(fd);
    vt_ref *rp = NULL;
    OK(vt_blockify_path(s, path, &rp));
    char *tf = NULL, *tp = NULL;
    OK(vt_ref_to_string(rf, &tf));
    OK(vt_ref_to_string(rp, &tp));
    CHECK(tf && tp && strcmp(tf, t) == 0 && strcmp(tp, t) == 0);

    /* Streaming out to a file descriptor. */
    char outp[4096];
    join_path(outp, sizeof outp, dir, "content.out");
    int ofd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(ofd >= 0);
    uint64_t written = 0;
    OK(vt_read_to_fd(s, r, ofd, &written));
    close(ofd);
    CHECK(written == n);
    CHECK(file_equals(outp, data, n));

    /* Hash and indirect references name a stored block; others have no hashcode. */
    vt_hashcode top;
    rc = vt_ref_hashcode(r, &top);
    if (n > 32) {
        CHECK(rc == VT_OK);
        bool present = false;
        OK(vt_contains(s, &top, &present));
        CHECK(present);
    } else {
        CHECK(rc == VT_ERR_INVALID);
    }

    vt_string_free(t);
    free(t2);
    vt_string_free(t3);
    vt_string_free(tf);
    vt_string_free(tp);
    vt_ref_free(r);
    vt_ref_free(p);
    vt_ref_free(rf);
    vt_ref_free(rp);
    free(back);
    free(data);
}

static void test_refs(vt_store *s, const char *dir) {
    roundtrip_content(s, dir, 0, 2);
    roundtrip_content(s, dir, 10, 3);
    roundtrip_content(s, dir, 100000, 4);
    roundtrip_content(s, dir, small_mode ? 300000 : 3000000, 5);
}

static void open_store(const char *path, uint32_t flags, vt_store **s) {
    MUST(vt_store_open(path, flags, s));
    REQUIRE(*s != NULL);
}

static void test_transactions(const char *dir) {
    char sp[4096];
    join_path(sp, sizeof sp, dir, "txn-store");
    vt_store *s = NULL;
    open_store(sp, VT_OPEN_CREATE, &s);
    uint8_t a[1000], b[1000], c[1000];
    fill_random(a, sizeof a, 10);
    fill_random(b, sizeof b, 11);
    fill_random(c, sizeof c, 12);
    vt_hashcode ha, hb, hc;
    OK(vt_txn_begin(s));
    OK(vt_add(s, a, sizeof a, &ha));
    OK(vt_txn_commit(s));
    OK(vt_txn_begin(s));
    OK(vt_add(s, b, sizeof b, &hb));
    bool present = false;
    OK(vt_contains(s, &hb, &present));
    CHECK(present); /* visible inside the transaction */
    OK(vt_txn_abort(s));
    OK(vt_contains(s, &hb, &present));
    CHECK(!present);
    OK(vt_contains(s, &ha, &present));
    CHECK(present);
    /* An add outside a transaction, made durable by flush. */
    OK(vt_add(s, c, sizeof c, &hc));
    OK(vt_store_flush(s));
    OK(vt_store_close(s));
    vt_store_free(s);

    /* Reopen read-only: the committed blocks are there, the aborted one is not. */
    open_store(sp, VT_OPEN_READ_ONLY, &s);
    OK(vt_contains(s, &ha, &present));
    CHECK(present);
    OK(vt_contains(s, &hc, &present));
    CHECK(present);
    OK(vt_contains(s, &hb, &present));
    CHECK(!present);
    uint8_t buf[1000];
    size_t n = 0;
    OK(vt_get(s, &ha, buf, sizeof buf, &n));
    CHECK(n == sizeof a && memcmp(buf, a, n) == 0);
    OK(vt_store_flush(s)); /* a no-op on a read-only handle */
    vt_store_free(s);      /* free without close closes */
}

static void make_tree(const char *root, uint8_t *big, size_t big_len) {
    char p[4096];
    REQUIRE(mkdir(root, 0755) == 0);
    join_path(p, sizeof p, root, "a.txt");
    write_file(p, (const uint8_t *)"hello, vt\n", 10);
    REQUIRE(chmod(p, 0640) == 0);
    join_path(p, sizeof p, root, "sub");
    REQUIRE(mkdir(p, 0750) == 0);
    join_path(p, sizeof p, root, "sub/b.bin");
    write_file(p, big, big_len);
    join_path(p, sizeof p, root, "link");
    REQUIRE(symlink("a.txt", p) == 0);
    join_path(p, sizeof p, root, "empty");
    write_file(p, NULL, 0);
}

static int name_is(const vt_dir_entry *e, const char *name) {
    return e->name_len == strlen(name) && memcmp(e->name, name, e->name_len) == 0;
}

static void check_dir_listing(vt_store *s, const char *root, const char *transcription,
                              const uint8_t *big, size_t big_len) {
    vt_dir_iter *it = NULL;
    MUST(vt_dir_open(s, transcription, &it));
    int seen_a = 0, seen_sub = 0, seen_link = 0, seen_empty = 0, count = 0;
    vt_dir_entry e;
    bool has = false;
    char sub_t[8192] = {0};
    for (;;) {
        OK(vt_dir_next(it, &e, &has));
        if (!has) break;
        count++;
        REQUIRE(e.transcription != NULL);
        if (name_is(&e, "a.txt")) {
            seen_a = 1;
            CHECK(e.kind == VT_KIND_FILE && e.size == 10);
            CHECK(e.mode == 0640);
            struct stat st;
            char p[4096];
            join_path(p, sizeof p, root, "a.txt");
            REQUIRE(stat(p, &st) == 0);
            CHECK(e.has_mtime && e.mtime_sec == (int64_t)st.st_mtim.tv_sec &&
                  e.mtime_nsec == (uint32_t)st.st_mtim.tv_nsec);
            vt_ref *r = NULL;
            OK(vt_dir_entry_ref(it, &r));
            uint8_t buf[16];
            size_t n = 0;
            OK(vt_read(s, r, buf, sizeof buf, &n));
            CHECK(n == 10 && memcmp(buf, "changed!!\n", 10) == 0);
            vt_ref_free(r);
        } else if (name_is(&e, "sub")) {
            seen_sub = 1;
            CHECK(e.kind == VT_KIND_DIR && e.mode == 0750);
            CHECK(strlen(e.transcription) < sizeof sub_t);
            strcpy(sub_t, e.transcription);
            CHECK(strncmp(sub_t, "D{", 2) == 0);
        } else if (name_is(&e, "link")) {
            seen_link = 1;
            CHECK(e.kind == VT_KIND_SYMLINK);
            CHECK(e.symlink_target_len == 5 && memcmp(e.symlink_target, "a.txt", 5) == 0);
            vt_ref *r = NULL;
            EXPECT_RC(vt_dir_entry_ref(it, &r), VT_ERR_NOT_FOUND);
            CHECK(r == NULL);
        } else if (name_is(&e, "empty")) {
            seen_empty = 1;
            CHECK(e.kind == VT_KIND_FILE && e.size == 0);
        }
    }
    CHECK(count == 4 && seen_a && seen_sub && seen_link && seen_empty);
    vt_dir_free(it);

    /* Descend by the entry's transcription. */
    MUST(vt_dir_open(s, sub_t, &it));
    OK(vt_dir_next(it, &e, &has));
    CHECK(has && name_is(&e, "b.bin") && e.size == big_len);
    vt_ref *r = NULL;
    OK(vt_dir_entry_ref(it, &r));
    uint8_t *a = NULL;
    size_t alen = 0;
    OK(vt_read_alloc(s, r, &a, &alen));
    CHECK(alen == big_len && memcmp(a, big, alen) == 0);
    vt_bytes_free(a, alen);
    vt_ref_free(r);
    OK(vt_dir_next(it, &e, &has));
    CHECK(!has);
    vt_dir_free(it);
}

static void test_tree(const char *dir) {
    char sp[4096], src[4096], arch[4096], out0[4096], out1[4096], out2[4096], p[4096];
    join_path(sp, sizeof sp, dir, "tree-store");
    join_path(src, sizeof src, dir, "src");
    join_path(arch, sizeof arch, dir, "backup.vt");
    join_path(out0, sizeof out0, dir, "out0");
    join_path(out1, sizeof out1, dir, "out1");
    join_path(out2, sizeof out2, dir, "out2");
    size_t big_len = small_mode ? 200000 : 2000000;
    uint8_t *big = malloc(big_len);
    REQUIRE(big != NULL);
    fill_random(big, big_len, 77);
    make_tree(src, big, big_len);

    vt_store *s = NULL;
    open_store(sp, VT_OPEN_CREATE, &s);
    char *t1 = NULL, *t2 = NULL;
    OK(vt_pack(s, src, arch, "first", &t1));
    REQUIRE(t1 != NULL);
    CHECK(strncmp(t1, "D{\"src\":", 8) == 0);

    /* Change a file and pack again (no name, no transcription wanted, then read it). */
    join_path(p, sizeof p, src, "a.txt");
    write_file(p, (const uint8_t *)"changed!!\n", 10);
    OK(vt_pack(s, src, arch, NULL, NULL));
    uint64_t count = 0;
    OK(vt_archive_count(arch, &count));
    CHECK(count == 2);
    char *r0 = NULL;
    OK(vt_archive_revision(arch, 0, &r0));
    CHECK(r0 && strcmp(r0, t1) == 0);
    OK(vt_archive_revision(arch, VT_REVISION_LATEST, &t2));
    CHECK(t2 && strcmp(t2, t1) != 0);
    char *rm2 = NULL;
    OK(vt_archive_revision(arch, -2, &rm2));
    CHECK(rm2 && strcmp(rm2, t1) == 0);

    /* Unpack both revisions and compare. */
    OK(vt_unpack(s, arch, 0, out0));
    OK(vt_unpack(s, arch, VT_REVISION_LATEST, out1));
    join_path(p, sizeof p, out0, "a.txt");
    CHECK(file_equals(p, (const uint8_t *)"hello, vt\n", 10));
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0640);
    join_path(p, sizeof p, out1, "a.txt");
    CHECK(file_equals(p, (const uint8_t *)"changed!!\n", 10));
    join_path(p, sizeof p, out0, "sub/b.bin");
    CHECK(file_equals(p, big, big_len));
    join_path(p, sizeof p, out0, "empty");
    CHECK(file_equals(p, NULL, 0));
    join_path(p, sizeof p, out0, "link");
    char target[64] = {0};
    CHECK(readlink(p, target, sizeof target - 1) == 5 && strcmp(target, "a.txt") == 0);

    /* Restore straight from a transcription. */
    OK(vt_restore(s, t2, out2));
    join_path(p, sizeof p, out2, "sub/b.bin");
    CHECK(file_equals(p, big, big_len));

    /* Iterate the latest revision (its a.txt is the changed file on disk now). */
    check_dir_listing(s, src, t2, big, big_len);

    /* A Dir can also be opened by the reference to its entries. */
    vt_dir_iter *it = NULL;
    MUST(vt_dir_open(s, t1, &it));
    vt_dir_entry e;
    bool has = false;
    char *sub_ref = NULL;
    for (;;) {
        OK(vt_dir_next(it, &e, &has));
        if (!has) break;
        if (name_is(&e, "sub")) {
            vt_ref *r = NULL;
            OK(vt_dir_entry_ref(it, &r));
            OK(vt_ref_to_string(r, &sub_ref));
            vt_ref_free(r);
        }
    }
    vt_dir_free(it);
    REQUIRE(sub_ref != NULL);
    MUST(vt_dir_open(s, sub_ref, &it));
    OK(vt_dir_next(it, &e, &has));
    CHECK(has && name_is(&e, "b.bin"));
    vt_dir_free(it);

    vt_string_free(sub_ref);
    vt_string_free(t1);
    vt_string_free(t2);
    vt_string_free(r0);
    vt_string_free(rm2);
    OK(vt_store_close(s));
    vt_store_free(s);
    free(big);
}

int main(int argc, char **argv) {
    REQUIRE(argc >= 2);
    const char *dir = argv[1];
    small_mode = argc >= 3 && strcmp(argv[2], "small") == 0;
    test_version();

    vt_store *mem = NULL;
    MUST(vt_store_open_memory(0, &mem));
    test_blocks(mem);
    test_refs(mem, dir);
    OK(vt_store_flush(mem));
    vt_store_free(mem);

    char sp[4096];
    join_path(sp, sizeof sp, dir, "store");
    vt_store *s = NULL;
    open_store(sp, VT_OPEN_CREATE, &s);
    test_blocks(s);
    test_refs(s, dir);
    OK(vt_store_close(s));
    vt_store_free(s);

    test_transactions(dir);
    test_tree(dir);
    return check_done("roundtrip");
}
