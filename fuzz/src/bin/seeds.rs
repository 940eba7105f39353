//! Writes each fuzz target's seeds (see `vt_fuzz::seeds`) as files under
//! `DIR/<target>/`, the starting corpus of `fuzz/run.sh`.
//!
//!     fuzz_seeds DIR

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds DIR");
        std::process::exit(2);
    };
    for (name, _) in vt_fuzz::TARGETS {
        let d = dir.join(name);
        std::fs::create_dir_all(&d)?;
        for (i, seed) in vt_fuzz::seeds(name).iter().enumerate() {
            std::fs::write(d.join(format!("seed-{i}")), seed)?;
        }
    }
    Ok(())
}
