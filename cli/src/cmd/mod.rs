//! One module per subcommand, plus the shared [`Context`].

pub mod cat;
pub mod compact;
pub mod dump;
pub mod forget;
pub mod gc;
pub mod import;
pub mod info;
pub mod init;
pub mod log;
pub mod ls;
pub mod pack;
pub mod pin;
pub mod reindex;
pub mod roots;
pub mod save;
pub mod unpack;
pub mod verify;

use crate::storespec::StoreSpec;
use crate::Cli;
use std::sync::Arc;
use vt_engine::HashAlg;

/// What every subcommand gets: the parsed global options.
#[derive(Debug)]
pub struct Context {
    /// The store the user named (or the default).
    pub spec: StoreSpec,
    /// Hash algorithm for new blocks.
    pub hash: HashAlg,
    /// Suppress progress and summaries.
    pub quiet: bool,
    /// Verbosity level.
    pub verbose: u8,
}

impl Context {
    /// Interprets the global options.
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        Ok(Context {
            spec: StoreSpec::resolve(cli.store.as_deref())?,
            hash: HashAlg::from_name(&cli.hash)?,
            quiet: cli.quiet,
            verbose: cli.verbose,
        })
    }

    /// Opens the store for reading and writing (creating the default store on first use).
    pub fn open_store(&self) -> anyhow::Result<Arc<dyn vt_engine::Store>> {
        self.spec.open(self.hash, false)
    }

    /// Opens the store for reading only.
    pub fn open_store_readonly(&self) -> anyhow::Result<Arc<dyn vt_engine::Store>> {
        self.spec.open(self.hash, true)
    }
}

impl Context {
    /// Tree options from the global flags and the store's hash algorithm.
    pub fn tree_options(&self) -> vt_engine::tree::TreeOptions {
        let mut o = vt_engine::tree::TreeOptions::default();
        o.blockify.hash_alg = self.hash;
        o
    }

    /// Where the files cache for packing `path` lives (`None` for non-DataDir stores).
    pub fn files_cache_path(&self, path: &std::path::Path) -> Option<std::path::PathBuf> {
        let store_dir = self.spec.datadir_path().ok()?;
        let abs = std::fs::canonicalize(path).ok()?;
        use std::os::unix::ffi::OsStrExt;
        let key = vt_engine::HashAlg::Blake3
            .hash(abs.as_os_str().as_bytes())
            .hex();
        Some(
            store_dir
                .join("cache")
                .join(format!("files-{}.cache", &key[..24])),
        )
    }

    /// The DataDir store for writing, or `None` when the store is not a DataDir.
    pub fn open_datadir_if_any(&self) -> anyhow::Result<Option<Arc<vt_engine::store::DataDir>>> {
        match self.spec {
            StoreSpec::DataDir { .. } => Ok(Some(self.spec.open_datadir(self.hash, false)?)),
            StoreSpec::Memory => Ok(None),
        }
    }
}
