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
pub mod mount;
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
    /// How new data is chunked.
    pub chunker: vt_engine::chunk::ChunkerKind,
}

impl Context {
    /// Interprets the global options.
    pub fn new(cli: &Cli) -> anyhow::Result<Self> {
        Ok(Context {
            spec: StoreSpec::resolve(cli.store.as_deref())?,
            hash: HashAlg::from_name(&cli.hash)?,
            quiet: cli.quiet,
            verbose: cli.verbose,
            chunker: match cli.chunk_kib {
                None => vt_engine::chunk::ChunkerKind::default(),
                Some(k) => {
                    let avg = k
                        .checked_mul(1024)
                        .ok_or_else(|| anyhow::anyhow!("--chunk-kib too large"))?;
                    vt_engine::chunk::ChunkerKind::Default(vt_engine::chunk::ChunkerParams::new(
                        avg / 4,
                        avg,
                        avg.saturating_mul(4),
                    )?)
                }
            },
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
        o.blockify.chunker = self.chunker;
        o
    }

    /// Where the files cache for packing `path` into this store lives: under the user's
    /// cache directory (like restic's and borg's caches, it is not part of the store),
    /// keyed by the store and the packed path. `None` for non-DataDir stores.
    pub fn files_cache_path(&self, path: &std::path::Path) -> Option<std::path::PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        let store_dir = std::fs::canonicalize(self.spec.datadir_path().ok()?).ok()?;
        let abs = std::fs::canonicalize(path).ok()?;
        let mut key = store_dir.as_os_str().as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(abs.as_os_str().as_bytes());
        let key = vt_engine::HashAlg::Blake3.hash(&key).hex();
        let base = dirs::cache_dir().unwrap_or_else(|| store_dir.join("cache"));
        Some(base.join("vt").join(format!("files-{}.cache", &key[..32])))
    }

    /// The DataDir store for writing, or `None` when the store is not a DataDir.
    pub fn open_datadir_if_any(&self) -> anyhow::Result<Option<Arc<vt_engine::store::DataDir>>> {
        match self.spec {
            StoreSpec::DataDir { .. } => Ok(Some(self.spec.open_datadir(self.hash, false)?)),
            StoreSpec::Memory => Ok(None),
        }
    }
}
