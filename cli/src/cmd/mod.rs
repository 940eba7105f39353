//! One module per subcommand, plus the shared [`Context`].

pub mod cat;
pub mod dump;
pub mod info;
pub mod init;
pub mod mount;
pub mod reindex;
pub mod save;
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
