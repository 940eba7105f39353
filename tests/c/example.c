/* The README's example: store some bytes, print their reference, read them back.
 * Usage: example STORE_DIR */
#include <stdio.h>
#include <string.h>
#include <vt.h>

static int fail(const char *what, vt_result rc) {
    fprintf(stderr, "%s: %s: %s\n", what, vt_result_name(rc), vt_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    vt_store *store;
    vt_result rc = vt_store_open(argv[1], VT_OPEN_CREATE, &store);
    if (rc != VT_OK) return fail("open", rc);

    const char *text = "hello from C";
    vt_ref *ref;
    rc = vt_blockify_buffer(store, (const uint8_t *)text, strlen(text), &ref);
    if (rc != VT_OK) return fail("blockify", rc);

    char *t;
    vt_ref_to_string(ref, &t);
    printf("%s\n", t); /* e.g. LB{[hello]20[from]2043} */
    vt_string_free(t);

    char buf[64];
    size_t n;
    rc = vt_read(store, ref, (uint8_t *)buf, sizeof buf, &n);
    if (rc != VT_OK) return fail("read", rc);
    printf("%.*s\n", (int)n, buf);

    vt_ref_free(ref);
    rc = vt_store_close(store); /* commits */
    vt_store_free(store);
    return rc == VT_OK ? 0 : fail("close", rc);
}
