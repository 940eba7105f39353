//! Staged appends: what is appended to a file collects in a memory buffer first. Each full
//! buffer (a *chunk*) is written with [`FileIo::write_direct_at`], which for the operating
//! system bypasses the page cache (`O_DIRECT`), by background writers (several at once,
//! into space allocated ahead with [`FileIo::allocate`]). Whatever is staged when the file
//! is synced, written elsewhere or truncated goes out then: a small rest with one ordinary
//! write, a big one (the end of a big stream) mostly direct; space allocated past the end
//! is cut off before the sync, so a synced file ends exactly at its last byte.
//!
//! Why: a large stream written through the page cache costs the kernel more CPU than the
//! disk needs (per-page allocation and accounting, then writeback), and that CPU is taken
//! from hashing and chunking. Direct writes of aligned megabytes cost little CPU and
//! overlap ingest. Small transactions never fill a chunk, so they only see one write per
//! sync instead of one per append, and never a direct write.
//!
//! Reads see every byte written through the handle at once (staged or queued bytes are
//! served from memory or waited for). Other handles see bytes once they reach the file,
//! at the latest when [`FileIo::sync`] returns, as before. A failed chunk write is kept and
//! fails every later write, read of unwritten bytes and sync of this handle, like a failed
//! background writeback; truncating below the failed bytes clears it.

use super::FileIo;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How a [`StagedFile`] stages appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staging {
    /// Alignment in bytes (a power of two) of chunk writes: their file offset, length and
    /// memory address.
    pub align: usize,
    /// Bytes per staging buffer (a multiple of `align`); a full buffer is one chunk.
    pub chunk: usize,
    /// Chunks are written by background threads (true) or by the appending thread.
    pub background: bool,
    /// In background mode, the most chunks queued at once; appends wait beyond it.
    pub depth: usize,
    /// In background mode, how many chunks are written at once (one thread each).
    pub writers: usize,
    /// Bytes of file space allocated ahead of the chunks ([`FileIo::allocate`]; 0: none).
    /// Direct writes into allocated space within the file's length need no allocation
    /// and do not extend the file, so a file system can run several at once. The file is
    /// cut back to its real end when it is synced (a crash leaves a zero tail, which
    /// recovery cuts like any torn tail).
    pub prealloc: u64,
}

impl Staging {
    /// The operating system's: 4 KiB alignment (covers logical block sizes up to 4 KiB),
    /// 8 MiB chunks, up to 3 queued, two written at once, 128 MiB allocated ahead.
    pub const OS: Staging = Staging {
        align: 4096,
        chunk: 8 << 20,
        background: true,
        depth: 3,
        writers: 2,
        prealloc: 128 << 20,
    };
}

/// How long an idle background writer waits for the next chunk before it exits.
const WRITER_IDLE: Duration = Duration::from_millis(200);

/// A buffer of up to `cap` bytes starting at an `align`ed address. Safe code cannot ask
/// the allocator for an alignment, so it over-allocates and starts at the first aligned
/// byte; the vector never grows past its capacity, so the address stays put. Bytes are
/// appended rather than written into zeroed memory: a fresh buffer per small transaction
/// costs an allocation, not a memset of the whole chunk.
struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    fn new(cap: usize, align: usize) -> Self {
        let mut mem: Vec<u8> = Vec::with_capacity(cap + align);
        let start = (align - mem.as_ptr().addr() % align) % align;
        mem.resize(start, 0);
        AlignedBuf { mem, start, cap }
    }
    /// The bytes put so far, from the aligned start.
    fn bytes(&self) -> &[u8] {
        &self.mem[self.start..]
    }
    /// Puts `data` at `pos` and drops what was after it (stale bytes before `pos` stay,
    /// or zeros are filled in).
    fn put(&mut self, pos: usize, data: &[u8]) {
        assert!(pos + data.len() <= self.cap, "staging buffer overflow");
        self.mem.resize(self.start + pos, 0);
        self.mem.extend_from_slice(data);
    }
}

/// A full buffer on its way to the file: `buf[from..]` belongs at `at + from`.
struct Chunk {
    buf: AlignedBuf,
    /// File offset of `buf[0]`, a multiple of the alignment.
    at: u64,
    from: usize,
}

/// A chunk write that failed: what, and the first file offset it did not write.
#[derive(Debug, Clone)]
struct Failure {
    kind: io::ErrorKind,
    what: String,
    at: u64,
}

#[derive(Default)]
struct State {
    /// The file's length including queued and staged bytes; `None` until the first write.
    end: Option<u64>,
    /// File offset of `buf[0]`, a multiple of the alignment.
    base: u64,
    /// The staged bytes are `buf[from..end - base]`; everything before `base + from` is
    /// in the file or queued. Always less than the alignment.
    from: usize,
    buf: Option<AlignedBuf>,
    queue: VecDeque<Chunk>,
    /// File offsets of the chunks background writers took from the queue and are writing.
    in_flight: Vec<u64>,
    writers_alive: usize,
    closing: bool,
    spare: Vec<AlignedBuf>,
    failed: Option<Failure>,
}

struct Shared {
    inner: Arc<dyn FileIo>,
    staging: Staging,
    state: Mutex<State>,
    changed: Condvar,
    /// Every byte below this offset is in the file: reads below it need no lock.
    written: AtomicU64,
    alloc: Mutex<Allocated>,
}

/// Space allocated ahead ([`Staging::prealloc`]).
#[derive(Default)]
struct Allocated {
    /// The file is allocated (and long) up to here.
    to: u64,
    /// The file may be longer than its real end: cut it back before syncing.
    trim: bool,
}

/// A [`FileIo`] that stages appends (see the module documentation).
pub struct StagedFile {
    shared: Arc<Shared>,
}

impl fmt::Debug for StagedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedFile")
            .field("inner", &self.shared.inner)
            .field("staging", &self.shared.staging)
            .finish()
    }
}

fn align_down(x: u64, align: usize) -> u64 {
    x - x % align as u64
}

impl StagedFile {
    /// Stages appends to `inner` as `staging` says.
    pub fn new(inner: Arc<dyn FileIo>, staging: Staging) -> Self {
        assert!(staging.align.is_power_of_two() && staging.chunk.is_multiple_of(staging.align));
        assert!(staging.chunk > 0 && staging.depth > 0 && staging.writers > 0);
        StagedFile {
            shared: Arc::new(Shared {
                inner,
                staging,
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                written: AtomicU64::new(u64::MAX),
                alloc: Mutex::new(Allocated::default()),
            }),
        }
    }
}

impl Shared {
    fn check(&self, st: &State) -> io::Result<()> {
        match &st.failed {
            Some(f) => Err(io::Error::new(
                f.kind,
                format!("an earlier write to this file failed: {}", f.what),
            )),
            None => Ok(()),
        }
    }

    fn fail(&self, st: &mut State, e: &io::Error, at: u64) {
        st.failed.get_or_insert(Failure {
            kind: e.kind(),
            what: e.to_string(),
            at,
        });
    }

    /// The file's length, read once when this handle first writes.
    fn end(&self, st: &mut State) -> io::Result<u64> {
        if let Some(e) = st.end {
            return Ok(e);
        }
        let e = self.inner.len()?;
        self.restart_at(st, e);
        Ok(e)
    }

    /// Nothing is staged or queued and the file ends at `end`.
    fn restart_at(&self, st: &mut State, end: u64) {
        st.end = Some(end);
        st.base = align_down(end, self.staging.align);
        st.from = (end - st.base) as usize;
        self.written.store(end, Ordering::Release);
    }

    /// Waits until no chunk is queued or being written.
    fn wait_idle(&self, st: &mut MutexGuard<'_, State>) {
        while !st.queue.is_empty() || !st.in_flight.is_empty() {
            self.changed.wait(st);
        }
    }

    /// Publishes how far the file is complete: up to the first chunk not written yet.
    fn advance_written(&self, st: &State) {
        let queued = st.queue.front().map(|c| c.at + c.from as u64);
        let low = st.in_flight.iter().copied().chain(queued).min();
        let staged = st.base + st.from as u64;
        self.written.store(low.unwrap_or(staged), Ordering::Release);
    }

    /// Allocates file space ahead of a chunk ending at `end` (see [`Staging::prealloc`]).
    /// Only an optimization: a failure leaves ordinary, extending writes.
    fn allocate_for(&self, start: u64, end: u64) {
        if self.staging.prealloc == 0 {
            return;
        }
        let mut a = self.alloc.lock();
        if end <= a.to {
            return;
        }
        let from = a.to.max(start);
        let to = end + self.staging.prealloc;
        let _ = self.inner.allocate(from, to - from);
        a.to = to;
        a.trim = true;
    }

    /// Cuts off space allocated past the real `end` (nothing is in flight).
    fn trim(&self, end: u64) -> io::Result<()> {
        let mut a = self.alloc.lock();
        if a.trim {
            self.inner.set_len(end)?;
        }
        *a = Allocated {
            to: end,
            trim: false,
        };
        Ok(())
    }

    /// Writes a chunk (allocating ahead first).
    fn write_full(&self, c: &Chunk) -> io::Result<()> {
        let end = c.at + c.buf.bytes().len() as u64;
        self.allocate_for(c.at, end);
        write_chunk(&*self.inner, c, self.staging.align)
    }

    fn append(self: &Arc<Self>, st: &mut MutexGuard<'_, State>, mut data: &[u8]) -> io::Result<()> {
        let (align, cap) = (self.staging.align, self.staging.chunk);
        while !data.is_empty() {
            let end = st.end.unwrap_or(0);
            let pos = (end - st.base) as usize;
            let n = (cap - pos).min(data.len());
            if st.buf.is_none() {
                st.buf = Some(
                    st.spare
                        .pop()
                        .unwrap_or_else(|| AlignedBuf::new(cap, align)),
                );
            }
            if let Some(buf) = st.buf.as_mut() {
                buf.put(pos, &data[..n]);
            }
            st.end = Some(end + n as u64);
            data = &data[n..];
            if pos + n == cap {
                self.spill(st)?;
            }
        }
        Ok(())
    }

    /// Hands the full buffer over as a chunk and starts a new one at the file's end.
    fn spill(self: &Arc<Self>, st: &mut MutexGuard<'_, State>) -> io::Result<()> {
        // Wait for room first: until the chunk is queued, the state must still show its
        // bytes as staged (writers publish how far the file is complete from it).
        if self.staging.background {
            while st.queue.len() >= self.staging.depth && st.failed.is_none() {
                self.changed.wait(st);
            }
            self.check(st)?;
        }
        let Some(buf) = st.buf.take() else {
            return Ok(());
        };
        let chunk = Chunk {
            buf,
            at: st.base,
            from: st.from,
        };
        st.base = st.end.unwrap_or(0);
        st.from = 0;
        if !self.staging.background {
            return self.write_now(st, chunk);
        }
        st.queue.push_back(chunk);
        if st.writers_alive < self.staging.writers {
            self.start_writer(st)?;
        }
        self.changed.notify_all();
        Ok(())
    }

    /// Writes `chunk` from the calling thread, keeping its buffer for reuse.
    fn write_now(&self, st: &mut State, chunk: Chunk) -> io::Result<()> {
        let r = self.write_full(&chunk);
        let start = chunk.at + chunk.from as u64;
        st.spare.push(chunk.buf);
        match r {
            Ok(()) => {
                self.advance_written(st);
                Ok(())
            }
            Err(e) => {
                self.fail(st, &e, start);
                Err(e)
            }
        }
    }

    fn start_writer(self: &Arc<Self>, st: &mut MutexGuard<'_, State>) -> io::Result<()> {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("vt-append".into())
            .spawn(move || me.run_writer());
        if spawned.is_ok() {
            st.writers_alive += 1;
            return Ok(());
        }
        // No thread: write the queue here.
        while let Some(chunk) = st.queue.pop_front() {
            self.write_now(st, chunk)?;
        }
        Ok(())
    }

    /// A background writer: writes queued chunks (in queue order; with several writers
    /// they may finish out of order) until idle for a while.
    fn run_writer(&self) {
        let mut st = self.state.lock();
        loop {
            if let Some(chunk) = st.queue.pop_front() {
                let start = chunk.at + chunk.from as u64;
                st.in_flight.push(start);
                let skip = st.failed.is_some();
                let r = MutexGuard::unlocked(&mut st, || {
                    if skip {
                        Ok(())
                    } else {
                        self.write_full(&chunk)
                    }
                });
                st.in_flight.retain(|&s| s != start);
                if let Err(e) = r {
                    self.fail(&mut st, &e, start);
                }
                if st.failed.is_none() {
                    self.advance_written(&st);
                }
                st.spare.push(chunk.buf);
                self.changed.notify_all();
            } else if st.closing
                || (self.changed.wait_for(&mut st, WRITER_IDLE).timed_out() && st.queue.is_empty())
            {
                break;
            }
        }
        st.writers_alive -= 1;
        self.changed.notify_all();
    }

    /// Writes everything queued and staged to the file: a small rest (a small transaction)
    /// with one ordinary write, a big one (the end of a big stream) mostly direct.
    fn flush(&self, st: &mut MutexGuard<'_, State>) -> io::Result<()> {
        self.wait_idle(st);
        self.check(st)?;
        let Some(end) = st.end else {
            return Ok(());
        };
        let start = st.base + st.from as u64;
        if let (true, Some(buf)) = (end > start, st.buf.as_ref()) {
            let (from, to) = (st.from, (end - st.base) as usize);
            let r = if to - from >= self.staging.chunk / 2 {
                write_span(
                    &*self.inner,
                    buf.bytes(),
                    st.base,
                    from,
                    to,
                    self.staging.align,
                )
            } else {
                self.inner.write_at(&buf.bytes()[from..to], start)
            };
            if let Err(e) = r {
                self.fail(st, &e, start);
                return Err(e);
            }
        }
        if let Err(e) = self.trim(end) {
            self.fail(st, &e, end);
            return Err(e);
        }
        self.restart_at(st, end);
        Ok(())
    }

    /// Reads `buf` at `offset` when some of it is not known to be in the file.
    fn read_slow(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut st = self.state.lock();
        let Some(end) = st.end else {
            drop(st);
            return self.inner.read_at(buf, offset);
        };
        let want = offset + buf.len() as u64;
        if want > end {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        let staged = st.base + st.from as u64;
        if offset < staged {
            self.wait_idle(&mut st);
            self.check(&st)?;
        }
        let split = staged.clamp(offset, want);
        let (from_file, from_mem) = buf.split_at_mut((split - offset) as usize);
        if !from_file.is_empty() {
            self.inner.read_at(from_file, offset)?;
        }
        if let (false, Some(b)) = (from_mem.is_empty(), st.buf.as_ref()) {
            let at = (split - st.base) as usize;
            from_mem.copy_from_slice(&b.bytes()[at..at + from_mem.len()]);
        }
        Ok(())
    }
}

/// Writes `bytes[from..to]` at `at + from` (`at` aligned, `bytes` at an aligned address):
/// the aligned middle with a direct write, the unaligned head and tail with ordinary writes.
fn write_span(
    inner: &dyn FileIo,
    bytes: &[u8],
    at: u64,
    from: usize,
    to: usize,
    align: usize,
) -> io::Result<()> {
    let head = from.next_multiple_of(align).min(to);
    let tail = (to - to % align).max(head);
    if head > from {
        inner.write_at(&bytes[from..head], at + from as u64)?;
    }
    if tail > head {
        inner.write_direct_at(&bytes[head..tail], at + head as u64)?;
    }
    if to > tail {
        inner.write_at(&bytes[tail..to], at + tail as u64)?;
    }
    Ok(())
}

/// Writes a full chunk (only the first chunk after a sync has an unaligned head).
fn write_chunk(inner: &dyn FileIo, c: &Chunk, align: usize) -> io::Result<()> {
    let bytes = c.buf.bytes();
    write_span(inner, bytes, c.at, c.from, bytes.len(), align)
}

impl FileIo for StagedFile {
    fn len(&self) -> io::Result<u64> {
        match self.shared.state.lock().end {
            Some(e) => Ok(e),
            None => self.shared.inner.len(),
        }
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let want = offset.checked_add(buf.len() as u64);
        if want.is_some_and(|w| w <= self.shared.written.load(Ordering::Acquire)) {
            return self.shared.inner.read_at(buf, offset);
        }
        self.shared.read_slow(buf, offset)
    }
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let s = &self.shared;
        let mut st = s.state.lock();
        s.check(&st)?;
        let end = s.end(&mut st)?;
        if offset == end {
            return s.append(&mut st, data);
        }
        s.flush(&mut st)?;
        s.inner.write_at(data, offset)?;
        s.restart_at(&mut st, end.max(offset + data.len() as u64));
        Ok(())
    }
    fn write_parts_at(&self, parts: &[&[u8]], offset: u64) -> io::Result<()> {
        let s = &self.shared;
        let mut st = s.state.lock();
        s.check(&st)?;
        if offset != s.end(&mut st)? {
            drop(st);
            return self.write_at(&parts.concat(), offset);
        }
        parts.iter().try_for_each(|p| s.append(&mut st, p))
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let s = &self.shared;
        let mut st = s.state.lock();
        if st.end.is_none() {
            return s.inner.set_len(len);
        }
        s.wait_idle(&mut st);
        if len <= st.base + st.from as u64 {
            // The staged bytes are all cut off: never write them.
            st.end = Some(st.base + st.from as u64);
        }
        if st.failed.as_ref().is_some_and(|f| len <= f.at) {
            st.failed = None;
        }
        s.flush(&mut st)?;
        s.inner.set_len(len)?;
        s.trim(len)?;
        s.restart_at(&mut st, len);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let s = &self.shared;
        let mut st = s.state.lock();
        s.flush(&mut st)?;
        // Small transactions must not keep a chunk-sized buffer per file between syncs.
        st.buf = None;
        st.spare.clear();
        drop(st);
        s.inner.sync()
    }
    fn start_writeback(&self) {
        self.shared.inner.start_writeback();
    }
}

impl Drop for StagedFile {
    /// Writes what is staged (best effort: unsynced bytes carry no promise) and lets the
    /// background writer go.
    fn drop(&mut self) {
        let s = &self.shared;
        let mut st = s.state.lock();
        let _ = s.flush(&mut st);
        st.closing = true;
        s.changed.notify_all();
    }
}

#[cfg(test)]
mod tests;
