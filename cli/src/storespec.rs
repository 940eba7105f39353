//! Store specifications: which store a command works on, and opening it.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vt_engine::store::datadir::{DataDir, DataDirOptions};
use vt_engine::store::memory::MemoryStore;
use vt_engine::{HashAlg, Store};

/// A store named on the command line or in the environment.
#[derive(Debug, Clone)]
pub enum StoreSpec {
    /// A DataDir at a path; `default` when it is the embedded default store.
    DataDir {
        /// The store directory.
        path: PathBuf,
        /// True for the embedded default store, created on first use.
        default: bool,
    },
    /// A process-local memory store (for trials; nothing persists).
    Memory,
}

impl StoreSpec {
    /// Interprets `-S` / `$VT_STORE`; `None` means the embedded default store.
    pub fn resolve(spec: Option<&str>) -> anyhow::Result<Self> {
        match spec {
            None | Some("") => Ok(StoreSpec::DataDir {
                path: crate::default_store_dir(),
                default: true,
            }),
            Some("memory" | "memory()") => Ok(StoreSpec::Memory),
            Some(s) if s.starts_with('[') || s.contains('(') || s.starts_with('|') => {
                bail!("store spec {s:?}: only directory paths and 'memory' are supported")
            }
            Some(s) => Ok(StoreSpec::DataDir {
                path: PathBuf::from(s),
                default: false,
            }),
        }
    }

    /// The DataDir path, or an error for other kinds of store.
    pub fn datadir_path(&self) -> anyhow::Result<&Path> {
        match self {
            StoreSpec::DataDir { path, .. } => Ok(path),
            StoreSpec::Memory => bail!("this command needs a DataDir store (-S DIR)"),
        }
    }

    /// Opens the store. The default store is created when missing; others must exist.
    pub fn open(&self, hash: HashAlg, read_only: bool) -> anyhow::Result<Arc<dyn Store>> {
        match self {
            StoreSpec::Memory => Ok(Arc::new(MemoryStore::with_capacity(hash, 1 << 30))),
            StoreSpec::DataDir { .. } => Ok(self.open_datadir(hash, read_only)?),
        }
    }

    /// Opens the DataDir store, creating the default store on first use.
    pub fn open_datadir(&self, hash: HashAlg, read_only: bool) -> anyhow::Result<Arc<DataDir>> {
        self.open_datadir_cache(hash, read_only, DataDirOptions::default().index_cache_bytes)
    }

    /// Like [`StoreSpec::open_datadir`], with a redb page cache of `cache_bytes`.
    pub fn open_datadir_cache(
        &self,
        hash: HashAlg,
        read_only: bool,
        cache_bytes: usize,
    ) -> anyhow::Result<Arc<DataDir>> {
        let (path, default) = match self {
            StoreSpec::DataDir { path, default } => (path, *default),
            StoreSpec::Memory => bail!("this command needs a DataDir store (-S DIR)"),
        };
        let opts = DataDirOptions {
            hash_alg: hash,
            read_only,
            index_cache_bytes: cache_bytes,
            ..DataDirOptions::default()
        };
        let store = if default && !read_only {
            DataDir::open_or_create(path, opts)
        } else if !path.exists() {
            bail!(
                "no store at {} (create one with: vt -S {} init)",
                path.display(),
                path.display()
            )
        } else {
            DataDir::open(path, opts)
        };
        Ok(Arc::new(store.with_context(|| {
            format!("open store {}", path.display())
        })?))
    }
}
