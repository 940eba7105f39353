//! Committing files outside the filesystem lock.
//!
//! A commit freezes a file's content in a [`Snapshot`] (cheap: pages are shared
//! copy-on-write), blockifies it without holding the lock, and then installs the
//! result, keeping whatever was written meanwhile. A node's `committing` flag
//! allows one commit per file at a time; the condition variable wakes whoever
//! waits for it. Files past the dirty limit are committed by a background thread,
//! so a long sequential write is chunked and stored while more data arrives.

use super::error::FsResult;
use super::file::Snapshot;
use super::node::{Body, State};
use super::{CachedStore, Ino};
use crate::block::BlockRef;
use crate::blockify::BlockifyOptions;
use crate::error::Result;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::Arc;

/// What commits need: the state, its condition variable, the store and options.
#[derive(Debug)]
pub(crate) struct Committer {
    pub state: Arc<Mutex<State>>,
    /// Signalled whenever a commit finishes.
    pub done: Condvar,
    store: Arc<CachedStore>,
    opts: BlockifyOptions,
}

impl Committer {
    pub fn new(state: Arc<Mutex<State>>, store: Arc<CachedStore>, opts: BlockifyOptions) -> Self {
        Committer {
            state,
            done: Condvar::new(),
            store,
            opts,
        }
    }

    /// Waits (releasing the lock meanwhile) until `ino` has no commit running.
    pub fn wait_for(&self, st: &mut MutexGuard<'_, State>, ino: Ino) {
        while st.nodes.get(&ino).is_some_and(|n| n.committing) {
            self.done.wait(st);
        }
    }

    /// Waits until no file has a commit running.
    pub fn wait_idle(&self, st: &mut MutexGuard<'_, State>) {
        while st.nodes.values().any(|n| n.committing) {
            self.done.wait(st);
        }
    }

    /// Marks `ino` as committing and snapshots it, if it is a dirty file with no
    /// commit running.
    pub fn claim(st: &mut State, ino: Ino) -> Option<Snapshot> {
        let n = st.nodes.get_mut(&ino)?;
        if n.committing {
            return None;
        }
        let Body::File(f) = &mut n.body else {
            return None;
        };
        if !f.is_dirty() {
            return None;
        }
        n.committing = true;
        Some(f.snapshot())
    }

    /// Commits file `ino` (waiting for a running commit first), blockifying
    /// outside the lock.
    pub fn commit_file(&self, ino: Ino) -> FsResult<()> {
        let snap = {
            let mut st = self.state.lock();
            self.wait_for(&mut st, ino);
            match Self::claim(&mut st, ino) {
                Some(s) => s,
                None => return Ok(()),
            }
        };
        let top = snap.commit(self.store.as_ref(), &self.opts);
        self.finish(ino, &snap, top)
    }

    /// Installs a finished commit of `ino` (or, on failure, keeps the pages so
    /// the next commit retries) and wakes the waiters.
    pub fn finish(&self, ino: Ino, snap: &Snapshot, top: Result<BlockRef>) -> FsResult<()> {
        let mut st = self.state.lock();
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.committing = false;
            if let (Ok(top), Body::File(f)) = (&top, &mut n.body) {
                f.install(snap, top.clone());
            }
            // Unreferenced while committing: release or forget left it to us.
            if n.is_unreferenced() {
                st.free(ino);
            }
        }
        drop(st);
        self.done.notify_all();
        top.map(|_| ()).map_err(Into::into)
    }
}

/// A background thread committing snapshots of files past the dirty limit.
#[derive(Debug)]
pub(crate) struct Flusher {
    tx: Option<crossbeam_channel::Sender<(Ino, Snapshot)>>,
}

impl Flusher {
    /// Starts the thread; without one, [`Flusher::send`] hands the work back.
    pub fn start(c: Arc<Committer>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<(Ino, Snapshot)>();
        let spawned = std::thread::Builder::new()
            .name("vt-flusher".into())
            .spawn(move || {
                for (ino, snap) in rx {
                    let top = snap.commit(c.store.as_ref(), &c.opts);
                    // A failed commit keeps its pages; the next flush reports it.
                    let _ = c.finish(ino, &snap, top);
                }
            });
        Flusher {
            tx: spawned.ok().map(|_| tx),
        }
    }

    /// Queues a snapshot for committing; gives it back when there is no thread.
    pub fn send(&self, ino: Ino, snap: Snapshot) -> Option<(Ino, Snapshot)> {
        match &self.tx {
            Some(tx) => tx.send((ino, snap)).err().map(|e| e.0),
            None => Some((ino, snap)),
        }
    }
}
