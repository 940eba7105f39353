/*
 * vt.h: the C API of vt, a content-addressed deduplicating block store.
 *
 * Generated from the vt-ffi crate by cbindgen; do not edit by hand.
 *
 * Conventions:
 * - Fallible functions return a vt_result (0 = VT_OK). Codes are stable and never
 *   reused. After a failure, vt_last_error_message() describes it (per thread).
 * - Handles (vt_store, vt_ref, vt_dir_iter) are opaque; release each with its
 *   vt_*_free. Buffers and strings the library returns are released with
 *   vt_bytes_free / vt_string_free. Every other pointer stays owned by the caller.
 * - Every pointer argument is checked for NULL (VT_ERR_NULL); (pointer, length)
 *   pairs may pass NULL when the length is 0.
 * - Text (paths excepted) is NUL-terminated UTF-8; paths are NUL-terminated bytes.
 * - Functions filling a caller buffer use a required-size protocol: on
 *   VT_ERR_BUFFER_TOO_SMALL, *out_len holds the size needed.
 * - A Rust panic inside the library becomes VT_ERR_INTERNAL; it never unwinds into C.
 * - Link with -lvt (shared) or libvt.a plus -lpthread -ldl -lm (static); or use
 *   pkg-config: `pkg-config --cflags --libs vt` (`--static` for the archive).
 */

#ifndef VT_H
#define VT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Major version of the C API; incompatible changes increment it.
#define VT_API_VERSION_MAJOR 0

// Minor version of the C API; additions increment it.
#define VT_API_VERSION_MINOR 1

// SHA-1 (legacy; 20-byte digest).
#define VT_HASH_SHA1 0

// SHA-256 (32-byte digest).
#define VT_HASH_SHA256 1

// BLAKE3 (32-byte digest), the default for new stores.
#define VT_HASH_BLAKE3 2

// `vt_store_open` flag: create the store when the path holds none.
#define VT_OPEN_CREATE 1

// `vt_store_open` flag: open without the writer lock; adds fail with `VT_ERR_UNSUPPORTED`.
#define VT_OPEN_READ_ONLY 2

// `vt_dir_entry.kind`: a regular file (or a device, FIFO: see the transcription).
#define VT_KIND_FILE 0

// `vt_dir_entry.kind`: a directory.
#define VT_KIND_DIR 1

// `vt_dir_entry.kind`: a symbolic link.
#define VT_KIND_SYMLINK 2

// `vt_dir_entry.kind`: a hard link to another entry of the same tree.
#define VT_KIND_HARDLINK 3

// `vt_unpack` revision: the latest (last) revision of the archive.
#define VT_REVISION_LATEST -1

// Result codes of every fallible `vt_` function. Values are stable and never reused.
typedef enum vt_result {
  // Success.
  VT_OK = 0,
  // A required pointer argument was NULL.
  VT_ERR_NULL = 1,
  // An argument was invalid (bad UTF-8, bad length, malformed transcription, ...).
  VT_ERR_INVALID = 2,
  // The caller's buffer is too small; the required size was stored.
  VT_ERR_BUFFER_TOO_SMALL = 3,
  // The block (or file, or revision) does not exist.
  VT_ERR_NOT_FOUND = 4,
  // Stored data failed an integrity check.
  VT_ERR_CORRUPT = 5,
  // An operating-system I/O error.
  VT_ERR_IO = 6,
  // The store is locked by another writer.
  VT_ERR_LOCKED = 7,
  // The store handle was closed with `vt_store_close`.
  VT_ERR_CLOSED = 8,
  // The operation is not supported here.
  VT_ERR_UNSUPPORTED = 9,
  // An internal error: a bug in libvt (a caught panic).
  VT_ERR_INTERNAL = 10,
  // The index reported an error.
  VT_ERR_INDEX = 11,
  // The call is not allowed in the handle's current state (e.g. committing with no
  // open transaction, beginning a second one, or flushing inside one).
  VT_ERR_STATE = 12,
} vt_result;

// An iterator over a Dir's entries (opaque). Create with `vt_dir_open`, release with
// `vt_dir_free`. The entries are read when it is opened, so it does not use the store
// afterwards. Not thread-safe: use one iterator from one thread at a time.
typedef struct vt_dir_iter vt_dir_iter;

// A reference to content in a store (opaque, immutable): a hashcode plus span, an
// indirect tree, a literal, a run of one byte, or a range of another reference.
// Create with `vt_blockify_*`, `vt_ref_parse` or `vt_dir_entry_ref`; release with
// `vt_ref_free`. A reference does not point to a store handle: read it through any store
// that holds its blocks. Thread-safe: immutable, so any number of threads may use one
// at once (except `vt_ref_free`, which must be the last call).
typedef struct vt_ref vt_ref;

// An open store (opaque). Create with `vt_store_open` or `vt_store_open_memory`,
// release with `vt_store_free`. Thread-safe: every function taking a `vt_store *` may be
// called from several threads at once on the same handle, except `vt_store_free`, which
// must be the last call on it.
typedef struct vt_store vt_store;

// A block's hashcode, by value. `digest_len` bytes of `digest` are used (20 for SHA-1,
// 32 otherwise); the rest are zero.
typedef struct vt_hashcode {
  // One of `VT_HASH_SHA1`, `VT_HASH_SHA256`, `VT_HASH_BLAKE3`.
  uint32_t alg;
  // Number of meaningful bytes in `digest`.
  uint32_t digest_len;
  // The digest.
  uint8_t digest[32];
} vt_hashcode;

// One directory entry, as returned by `vt_dir_next`. Every pointer in it belongs to the
// iterator and stays valid until the next `vt_dir_next` or `vt_dir_free` on it.
typedef struct vt_dir_entry {
  // The name's bytes (not NUL-terminated; usually UTF-8 but any bytes but `/` and NUL).
  const uint8_t *name;
  // Length of `name`.
  size_t name_len;
  // `VT_KIND_FILE`, `VT_KIND_DIR`, `VT_KIND_SYMLINK` or `VT_KIND_HARDLINK`.
  uint32_t kind;
  // Permission bits (`07777` range); 0 when none are recorded.
  uint32_t mode;
  // Content length: file size, or the size of a Dir's encoded entries; 0 for links.
  uint64_t size;
  // True when `mtime_sec`/`mtime_nsec` hold the modification time.
  bool has_mtime;
  // Modification time, seconds since the Unix epoch.
  int64_t mtime_sec;
  // Nanoseconds part of the modification time (0..999999999).
  uint32_t mtime_nsec;
  // A symlink's target bytes (not NUL-terminated), else NULL.
  const uint8_t *symlink_target;
  // Length of `symlink_target`.
  size_t symlink_target_len;
  // The entry's dirent transcription (NUL-terminated): pass it to `vt_dir_open` to
  // descend into a directory, or to `vt_restore`.
  const char *transcription;
} vt_dir_entry;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The library version as a static NUL-terminated string (e.g. "0.1.0").
//
// Ownership: static; never NULL; do not free it. Errors: none. Thread-safety: any thread.
const char *vt_version(void);

// The message of the last failed `vt_` call on this thread, or NULL when the last
// call succeeded.
//
// Ownership: the string belongs to the library and stays valid until the next `vt_`
// call on this thread; do not free it. Errors: none. Thread-safety: each thread has
// its own message.
const char *vt_last_error_message(void);

// A static, NUL-terminated description of a result code (a `vt_result` value).
//
// Takes a plain `int` so that any value, even one not (yet) defined, is safe to pass.
// Ownership: static; never NULL; do not free it. Errors: none (unknown codes give
// "unknown result code"). Thread-safety: any thread.
const char *vt_result_name(int code);

// Writes the text form of a hashcode (`H{blake3:<hex>}`) into `buf` plus a NUL.
//
// `*out_len` receives the text length without the NUL, also when the buffer is too
// small; `buf` needs `*out_len + 1` bytes. `buf` may be NULL when `buf_len` is 0.
// Errors: `VT_ERR_NULL` (hash or out_len NULL, or buf NULL with buf_len > 0),
// `VT_ERR_INVALID` (unknown algorithm or wrong digest_len), `VT_ERR_BUFFER_TOO_SMALL`.
// Thread-safety: any thread.
//
// # Safety
// `hash` points to a `vt_hashcode`; `buf` has `buf_len` writable bytes; `out_len` is writable.
enum vt_result vt_hashcode_format(const struct vt_hashcode *hash,
                                  char *buf,
                                  size_t buf_len,
                                  size_t *out_len);

// Parses the text form of a hashcode (`H{alg:hex}`) into `*out`.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (not UTF-8 or malformed). `*out` is written
// only on success. Thread-safety: any thread.
//
// # Safety
// `text` is a NUL-terminated string; `out` is writable.
enum vt_result vt_hashcode_parse(const char *text, struct vt_hashcode *out);

// Blockifies `len` bytes at `data` into the store and stores a new reference to the
// content in `*out`.
//
// Content is cut into content-defined chunks; chunks and the indirect blocks above
// them are added to the store (durable after the next commit). `data` may be NULL
// when `len` is 0. Ownership: `*out` is a new reference released with `vt_ref_free`;
// NULL on failure. The caller keeps `data`.
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED` (read-only store),
// `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `data` has `len` readable bytes; `out` writable.
enum vt_result vt_blockify_buffer(struct vt_store *store,
                                  const uint8_t *data,
                                  size_t len,
                                  struct vt_ref **out);

// Blockifies everything readable from the file descriptor `fd` (from its current
// offset to end of file, or until a pipe closes) and stores a new reference in `*out`.
//
// The descriptor is not closed; its offset ends at end of file. Ownership and storing
// as `vt_blockify_buffer`.
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (negative fd), `VT_ERR_IO` (bad descriptor,
// read error), `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED`, `VT_ERR_INDEX`.
// Thread-safety: any thread (not concurrently with other readers of the same fd).
//
// # Safety
// `store` is NULL or live; `fd` is an open descriptor or negative; `out` writable.
enum vt_result vt_blockify_fd(struct vt_store *store, int fd, struct vt_ref **out);

// Blockifies the file at `path` and stores a new reference in `*out`.
//
// Ownership and storing as `vt_blockify_buffer`.
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (empty path), `VT_ERR_IO` (cannot open or
// read), `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED`, `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `path` NUL-terminated; `out` writable.
enum vt_result vt_blockify_path(struct vt_store *store, const char *path, struct vt_ref **out);

// Reads the whole content of `*r` from the store into `buf` (`buf_len` bytes).
//
// Required-size protocol: `*out_len` receives the content length (the reference's
// span), both on success and on `VT_ERR_BUFFER_TOO_SMALL` (nothing is read then).
// `buf` may be NULL when `buf_len` is 0. Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`,
// `VT_ERR_BUFFER_TOO_SMALL`, `VT_ERR_INVALID` (span exceeds `SIZE_MAX`),
// `VT_ERR_NOT_FOUND` (a block is missing), `VT_ERR_CORRUPT`, `VT_ERR_IO`, `VT_ERR_INDEX`;
// after an error the buffer's contents are unspecified. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `r` is NULL or a live reference; `buf` has `buf_len`
// writable bytes; `out_len` writable.
enum vt_result vt_read(struct vt_store *store,
                       const struct vt_ref *r,
                       uint8_t *buf,
                       size_t buf_len,
                       size_t *out_len);

// Reads up to `buf_len` bytes of `*r`'s content starting at byte `offset` into `buf`,
// like `pread`: the range is clipped to the content's end, and `*out_len` receives the
// number of bytes read (0 at or past the end).
//
// Only the blocks overlapping the range are fetched. Errors: `VT_ERR_NULL`,
// `VT_ERR_CLOSED`, `VT_ERR_NOT_FOUND`, `VT_ERR_CORRUPT`, `VT_ERR_IO`, `VT_ERR_INDEX`.
// Thread-safety: any thread.
//
// # Safety
// As `vt_read`.
enum vt_result vt_read_range(struct vt_store *store,
                             const struct vt_ref *r,
                             uint64_t offset,
                             uint8_t *buf,
                             size_t buf_len,
                             size_t *out_len);

// Reads the whole content of `*r` into a buffer the library allocates. Ownership:
// `*out_data` receives `*out_len` bytes, released with `vt_bytes_free(*out_data, *out_len)`. Empty
// content gives NULL and 0; on failure both are NULL and 0.
//
// Errors: as `vt_read`, without `VT_ERR_BUFFER_TOO_SMALL`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `r` NULL or live; `out_data`, `out_len` writable.
enum vt_result vt_read_alloc(struct vt_store *store,
                             const struct vt_ref *r,
                             uint8_t **out_data,
                             size_t *out_len);

// Writes the whole content of `*r` to the file descriptor `fd` (at its current offset;
// the descriptor is not closed). `*out_written` (if not NULL) receives the bytes
// written, also after a failure part-way.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (negative fd), `VT_ERR_IO` (bad descriptor or
// write error), `VT_ERR_CLOSED`, `VT_ERR_NOT_FOUND`, `VT_ERR_CORRUPT`, `VT_ERR_INDEX`.
// Thread-safety: any thread (not concurrently with other writers of the same fd).
//
// # Safety
// `store` NULL or live; `r` NULL or live; `fd` open or negative; `out_written` NULL or writable.
enum vt_result vt_read_to_fd(struct vt_store *store,
                             const struct vt_ref *r,
                             int fd,
                             uint64_t *out_written);

// Parses a block reference transcription into a new reference in `*out`: the forms
// printed by `vt_ref_format` and the `vt` command (`B{hash:H{blake3:..},span:N}`,
// `I{hash:..,span:N}`, `LB{..}`, `RLE{span:N,octet:xx}`, `SubB{block:..,offset:N,span:N}`)
// and the cs.vt forms that carry their span.
//
// Ownership: `*out` is released with `vt_ref_free`; NULL on failure.
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (not UTF-8, malformed; the message says
// where). Thread-safety: any thread.
//
// # Safety
// `text` is NULL or NUL-terminated; `out` writable.
enum vt_result vt_ref_parse(const char *text, struct vt_ref **out);

// Writes `*r`'s transcription plus a NUL into `buf`. `*out_len` receives the text
// length without the NUL, also on `VT_ERR_BUFFER_TOO_SMALL` (then the buffer needs
// `*out_len + 1` bytes). `buf` may be NULL when `buf_len` is 0.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_BUFFER_TOO_SMALL`. Thread-safety: any thread.
//
// # Safety
// `r` NULL or live; `buf` has `buf_len` writable bytes; `out_len` writable.
enum vt_result vt_ref_format(const struct vt_ref *r, char *buf, size_t buf_len, size_t *out_len);

// Stores `*r`'s transcription as a new NUL-terminated string in `*out`. Ownership:
// release it with `vt_string_free`; NULL on failure.
//
// Errors: `VT_ERR_NULL`. Thread-safety: any thread.
//
// # Safety
// `r` NULL or live; `out` writable.
enum vt_result vt_ref_to_string(const struct vt_ref *r, char **out);

// Sets `*out` to the length in bytes of the content `*r` stands for.
//
// Errors: `VT_ERR_NULL`. Thread-safety: any thread.
//
// # Safety
// `r` NULL or live; `out` writable.
enum vt_result vt_ref_span(const struct vt_ref *r, uint64_t *out);

// Sets `*out` to the hashcode of the stored block `*r` names (for hash and indirect
// references; an indirect reference's block holds its children's references).
//
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (a literal, run or sub-range reference has no
// hashcode of its own). Thread-safety: any thread.
//
// # Safety
// `r` NULL or live; `out` writable.
enum vt_result vt_ref_hashcode(const struct vt_ref *r, struct vt_hashcode *out);

// Releases a reference. NULL is ignored.
//
// Ownership: takes the reference. Errors: none. Thread-safety: must be the last call on it.
//
// # Safety
// `r` is NULL or a reference from this library, not yet freed.
void vt_ref_free(struct vt_ref *r);

// Releases a string returned by the library (`vt_ref_to_string`, `vt_pack`,
// `vt_archive_revision`). NULL is ignored.
//
// Ownership: takes the string. Errors: none. Thread-safety: any thread.
//
// # Safety
// `s` is NULL or a string from this library, not yet freed.
void vt_string_free(char *s);

// Opens (or with `VT_OPEN_CREATE` creates) the DataDir store at `path` and stores a
// new handle in `*out`.
//
// `flags` is 0 or a combination of `VT_OPEN_CREATE` and `VT_OPEN_READ_ONLY` (not both).
// A writable handle holds the store's writer lock until closed; read-only handles take
// no lock. `path` is a NUL-terminated file-system path (bytes, not necessarily UTF-8).
// Ownership: on success `*out` is a new handle the caller releases with
// `vt_store_free`; on failure `*out` is set to NULL.
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (unknown flags, empty path, no store there
// without `VT_OPEN_CREATE`), `VT_ERR_LOCKED` (another handle or process writes it),
// `VT_ERR_IO`, `VT_ERR_INDEX`, `VT_ERR_CORRUPT`, `VT_ERR_UNSUPPORTED` (newer format).
// Thread-safety: any thread.
//
// # Safety
// `path` is NULL or NUL-terminated; `out` is NULL or writable.
enum vt_result vt_store_open(const char *path, uint32_t flags, struct vt_store **out);

// Creates a process-local memory store holding at most about `capacity_bytes` of block
// data (least recently used blocks are evicted; 0 means unbounded), hashing with BLAKE3.
//
// Nothing persists; `vt_store_flush` is a no-op and the transaction calls fail with
// `VT_ERR_UNSUPPORTED`. Ownership: `*out` is a new handle released with
// `vt_store_free`; NULL on failure. Errors: `VT_ERR_NULL`. Thread-safety: any thread.
//
// # Safety
// `out` is NULL or writable.
enum vt_result vt_store_open_memory(uint64_t capacity_bytes, struct vt_store **out);

// Closes the store but keeps the handle: an open transaction is aborted, other adds are
// committed (as `vt_store_flush`), files and the writer lock are released. Waits for
// calls in progress on other threads. Afterwards every call on the handle fails with
// `VT_ERR_CLOSED`; release it with `vt_store_free`.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED` (already closed), and the errors of the final
// commit (`VT_ERR_IO`, `VT_ERR_INDEX`): the store is closed even then.
// Thread-safety: any thread.
//
// # Safety
// `store` is NULL or a live handle.
enum vt_result vt_store_close(struct vt_store *store);

// Releases a store handle, closing it first if needed (as `vt_store_close`, but any
// error is discarded: call `vt_store_close` first to see it). NULL is ignored.
//
// Ownership: takes the handle; it must not be used afterwards, by any thread.
// Errors: none reported.
// Thread-safety: must not run concurrently with any other call on the same handle.
//
// # Safety
// `store` is NULL or a handle from `vt_store_open*` not yet freed.
void vt_store_free(struct vt_store *store);

// Starts an explicit write transaction: first commits any earlier adds, then marks the
// handle so that `vt_txn_commit` makes the adds since this call durable and
// `vt_txn_abort` discards them.
//
// The transaction belongs to the handle, not to a thread: adds from every thread
// between begin and commit/abort are part of it. Without an explicit transaction, adds
// are committed by `vt_store_flush` (or close). Inside one, `vt_store_flush` and
// `vt_pack` fail with `VT_ERR_STATE`.
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (one is already open),
// `VT_ERR_UNSUPPORTED` (memory or read-only store), `VT_ERR_IO`, `VT_ERR_INDEX`.
// Thread-safety: any thread.
//
// # Safety
// `store` is NULL or a live handle.
enum vt_result vt_txn_begin(struct vt_store *store);

// Commits the open transaction: every add since `vt_txn_begin` is durable when this
// returns. On an I/O error the transaction stays open (retry, or abort).
//
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (no open transaction),
// `VT_ERR_UNSUPPORTED` (memory store), `VT_ERR_IO`, `VT_ERR_INDEX`.
// Thread-safety: any thread.
//
// # Safety
// `store` is NULL or a live handle.
enum vt_result vt_txn_commit(struct vt_store *store);

// Aborts the open transaction: every add since `vt_txn_begin` is forgotten (blocks it
// added are no longer found). The transaction ends even when this fails.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (no open transaction),
// `VT_ERR_UNSUPPORTED` (memory store), `VT_ERR_IO`.
// Thread-safety: any thread; adds racing with the abort on other threads may land on
// either side of it.
//
// # Safety
// `store` is NULL or a live handle.
enum vt_result vt_txn_abort(struct vt_store *store);

// Makes every add so far durable and visible to other processes (commits). A no-op on
// memory and read-only stores.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_STATE` (inside an explicit
// transaction: use `vt_txn_commit`), `VT_ERR_IO`, `VT_ERR_INDEX`.
// Thread-safety: any thread.
//
// # Safety
// `store` is NULL or a live handle.
enum vt_result vt_store_flush(struct vt_store *store);

// Stores one block of `len` bytes and writes its hashcode to `*out` (if `out` is not
// NULL). Adding a block that is present writes nothing. The block is durable after the
// next commit (`vt_store_flush`, `vt_txn_commit`, close).
//
// `data` may be NULL when `len` is 0. The library copies the data; the caller keeps
// ownership of `data`.
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_UNSUPPORTED` (read-only store),
// `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `data` has `len` readable bytes; `out` is NULL or writable.
enum vt_result vt_add(struct vt_store *store,
                      const uint8_t *data,
                      size_t len,
                      struct vt_hashcode *out);

// Copies the block `*hash` into the caller's buffer `buf` of `buf_len` bytes.
//
// Required-size protocol: `*out_len` receives the block's length, both on success and
// when it fails with `VT_ERR_BUFFER_TOO_SMALL` (then nothing is copied: call again with
// a buffer of `*out_len` bytes). `buf` may be NULL when `buf_len` is 0 (a size query).
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_INVALID` (bad hashcode),
// `VT_ERR_NOT_FOUND` (absent), `VT_ERR_CORRUPT` (stored bytes fail their hash),
// `VT_ERR_BUFFER_TOO_SMALL`, `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `hash` readable; `buf` has `buf_len` writable bytes;
// `out_len` writable.
enum vt_result vt_get(struct vt_store *store,
                      const struct vt_hashcode *hash,
                      uint8_t *buf,
                      size_t buf_len,
                      size_t *out_len);

// Like `vt_get`, but the library allocates the buffer. Ownership: `*out_data` receives a pointer to
// `*out_len` bytes, to be released with `vt_bytes_free(*out_data, *out_len)`. An empty
// block gives NULL and 0. On failure `*out_data` is NULL and `*out_len` 0.
//
// Errors: as `vt_get`, without `VT_ERR_BUFFER_TOO_SMALL`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `hash` readable; `out_data` and `out_len` writable.
enum vt_result vt_get_alloc(struct vt_store *store,
                            const struct vt_hashcode *hash,
                            uint8_t **out_data,
                            size_t *out_len);

// Releases a buffer returned by `vt_get_alloc` or `vt_read_alloc`; `len` must be the
// length returned with it. NULL is ignored.
//
// Ownership: takes the buffer. Errors: none. Thread-safety: any thread.
//
// # Safety
// `data` is NULL or a buffer from this library with exactly `len` bytes, not yet freed.
void vt_bytes_free(uint8_t *data, size_t len);

// Sets `*out` to whether the block `*hash` is in the store.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_INVALID` (bad hashcode), `VT_ERR_IO`,
// `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `hash` readable; `out` writable.
enum vt_result vt_contains(struct vt_store *store, const struct vt_hashcode *hash, bool *out);

// Sets `*out` to the number of distinct blocks in the store (committed and pending).
//
// Errors: `VT_ERR_NULL`, `VT_ERR_CLOSED`, `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` is NULL or live; `out` writable.
enum vt_result vt_store_block_count(struct vt_store *store, uint64_t *out);

// Packs the directory (or single file) at `dir_path` into the store, commits, and
// appends the new revision to the archive file `archive_path` (created if missing),
// optionally named `name` (NULL for none).
//
// Ownership: if `out_transcription` is not NULL it receives the revision's root dirent
// transcription (the text in the archive line), released with `vt_string_free`.
// Entries that cannot be stored (sockets) are skipped.
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (empty path, name not UTF-8 or with a newline),
// `VT_ERR_STATE` (inside an explicit transaction: packing commits), `VT_ERR_CLOSED`,
// `VT_ERR_UNSUPPORTED` (memory or read-only store: an archive needs durable blocks),
// `VT_ERR_IO`, `VT_ERR_INDEX`. Thread-safety: any thread; concurrent appends to one
// archive are serialized by its lock file.
//
// # Safety
// `store` NULL or live; paths NUL-terminated; `name` NULL or NUL-terminated;
// `out_transcription` NULL or writable.
enum vt_result vt_pack(struct vt_store *store,
                       const char *dir_path,
                       const char *archive_path,
                       const char *name,
                       char **out_transcription);

// Sets `*out` to the number of revisions in the archive at `archive_path` (0 when the
// file does not exist).
//
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (a malformed line), `VT_ERR_IO`.
// Thread-safety: any thread.
//
// # Safety
// `archive_path` NULL or NUL-terminated; `out` writable.
enum vt_result vt_archive_count(const char *archive_path, uint64_t *out);

// Stores the root dirent transcription of revision `revision` of the archive (0 =
// oldest, negative counts from the latest: -1 = `VT_REVISION_LATEST`) as a new string in
// `*out`. Ownership: release it with `vt_string_free`; NULL on failure.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_NOT_FOUND` (no such revision), `VT_ERR_INVALID`
// (malformed archive), `VT_ERR_IO`. Thread-safety: any thread.
//
// # Safety
// `archive_path` NULL or NUL-terminated; `out` writable.
enum vt_result vt_archive_revision(const char *archive_path, int64_t revision, char **out);

// Restores revision `revision` of the archive (numbered as in `vt_archive_revision`)
// as the new path `target_path`, which must not exist. Content is always restored
// exactly or the call fails; metadata that cannot be applied (owners when not root) is
// skipped silently. On failure a partial tree may be left at `target_path`.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_NOT_FOUND` (no such revision, or a block missing),
// `VT_ERR_INVALID` (target exists, malformed archive, hostile entries such as symlinks
// leading outside the target), `VT_ERR_CORRUPT`, `VT_ERR_IO`, `VT_ERR_CLOSED`,
// `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` NULL or live; paths NULL or NUL-terminated.
enum vt_result vt_unpack(struct vt_store *store,
                         const char *archive_path,
                         int64_t revision,
                         const char *target_path);

// Restores the tree of a dirent transcription (as returned by `vt_pack` or
// `vt_archive_revision`) as the new path `target_path`. Errors: as `vt_unpack`
// (`VT_ERR_INVALID` also for a malformed transcription). Thread-safety: any thread.
//
// # Safety
// `store` NULL or live; `transcription` and `target_path` NULL or NUL-terminated.
enum vt_result vt_restore(struct vt_store *store,
                          const char *transcription,
                          const char *target_path);

// Opens an iterator over the entries of a directory, given as a text `transcription`:
// either a Dir dirent (`D{...}`, as from `vt_pack` or `vt_dir_entry.transcription`) or a
// block reference to a Dir's encoded entries. Reads and validates all entries now.
//
// Ownership: `*out` is released with `vt_dir_free`; NULL on failure.
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (malformed text, not a directory, malformed
// entries), `VT_ERR_NOT_FOUND` (a block is missing), `VT_ERR_CORRUPT`, `VT_ERR_IO`,
// `VT_ERR_CLOSED`, `VT_ERR_INDEX`. Thread-safety: any thread.
//
// # Safety
// `store` NULL or live; `transcription` NULL or NUL-terminated; `out` writable.
enum vt_result vt_dir_open(struct vt_store *store,
                           const char *transcription,
                           struct vt_dir_iter **out);

// Advances the iterator. When there is another entry, fills `*out_entry` and sets
// `*out_has` to true; at the end sets `*out_has` to false and leaves `*out_entry` alone.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_INVALID` (an entry's transcription holds a NUL — not
// produced by valid stores). Thread-safety: not concurrently on one iterator.
//
// # Safety
// `iter` NULL or live; `out_entry` and `out_has` writable.
enum vt_result vt_dir_next(struct vt_dir_iter *iter, struct vt_dir_entry *out_entry, bool *out_has);

// Stores a new reference to the content of the entry last returned by `vt_dir_next`
// (a file's data, a directory's encoded entries) in `*out`. Ownership: release it with
// `vt_ref_free`; NULL on failure.
//
// Errors: `VT_ERR_NULL`, `VT_ERR_STATE` (no current entry), `VT_ERR_NOT_FOUND` (the entry
// has no content: symlinks, hard links). Thread-safety: not concurrently on one iterator.
//
// # Safety
// `iter` NULL or live; `out` writable.
enum vt_result vt_dir_entry_ref(const struct vt_dir_iter *iter, struct vt_ref **out);

// Releases an iterator (and the strings of its last entry). NULL is ignored.
//
// Ownership: takes the iterator. Errors: none. Thread-safety: must be the last call on it.
//
// # Safety
// `iter` is NULL or an iterator from `vt_dir_open`, not yet freed.
void vt_dir_free(struct vt_dir_iter *iter);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* VT_H */
