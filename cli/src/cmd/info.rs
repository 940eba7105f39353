//! `vt info`: store statistics.

use super::Context;
use crate::output::human_bytes;

/// Arguments of `vt info`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints blocks, stored vs logical bytes, segments and index size.
pub fn run(ctx: &Context, _args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let store = ctx.spec.open_datadir(ctx.hash, true)?;
    let i = store.info()?;
    println!("store:          {}", store.path().display());
    println!("blocks:         {}", i.blocks);
    println!(
        "logical bytes:  {} ({})",
        i.logical_bytes,
        human_bytes(i.logical_bytes)
    );
    println!(
        "stored bytes:   {} ({})",
        i.stored_bytes,
        human_bytes(i.stored_bytes)
    );
    if i.logical_bytes > 0 {
        println!(
            "compression:    {:.1}%",
            100.0 * i.stored_bytes as f64 / i.logical_bytes as f64
        );
    }
    println!(
        "segments:       {} ({})",
        i.segments,
        human_bytes(i.segment_bytes)
    );
    println!(
        "index bytes:    {} ({})",
        i.index_bytes,
        human_bytes(i.index_bytes)
    );
    print_gc(&store)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The GC lines: roots, dead space known without a mark, the last GC.
fn print_gc(store: &vt_engine::store::DataDir) -> anyhow::Result<()> {
    let g = store.gc_info()?;
    println!("roots:          {} archives, {} pins", g.archives, g.pins);
    println!(
        "dead space:     {} unindexed; {} left by the last GC",
        human_bytes(g.unindexed_bytes),
        human_bytes(g.last_dead_left_bytes)
    );
    match g.last_gc {
        Some(t) => println!(
            "last gc:        {} (freed {})",
            vt_engine::timefmt::iso_utc(t),
            human_bytes(g.last_freed_bytes)
        ),
        None => println!("last gc:        never"),
    }
    Ok(())
}
