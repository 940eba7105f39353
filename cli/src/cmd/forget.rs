//! `vt forget`: drop revisions from an archive by retention rules.

use super::Context;
use std::path::PathBuf;
use vt_engine::archive::Archive;
use vt_engine::gc::retention::{self, parse_duration, Policy};
use vt_engine::timefmt::iso_utc;

/// Arguments of `vt forget`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive file.
    pub archive: PathBuf,
    /// Keep the newest N revisions.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep revisions within this long of the newest one (e.g. 30d).
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep the newest revision of each of the last N days (UTC) that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Likewise per week (Monday to Sunday, UTC).
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Likewise per month (UTC).
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Forget revision N (1 = the oldest line; repeatable; not with --keep-*).
    #[arg(long = "rev", value_name = "N")]
    pub revs: Vec<usize>,
    /// Show what would be forgotten; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// Decides, rewrites the archive atomically (unless a dry run) and lists the verdicts.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let policy = Policy {
        keep_last: args.keep_last,
        keep_within: args
            .keep_within
            .as_deref()
            .map(parse_duration)
            .transpose()?
            .map(|d| d.as_secs_f64()),
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        forget_revs: args.revs.clone(),
    };
    let archive = Archive::new(&args.archive);
    let decided = retention::forget(&archive, &policy, args.dry_run)?;
    let gone = decided.iter().filter(|(d, _)| !d.keep).count();
    for (d, e) in &decided {
        if ctx.quiet && d.keep {
            continue;
        }
        let verdict = if d.keep { "keep  " } else { "forget" };
        let name = e
            .name
            .as_deref()
            .map(|n| format!(" # {n}"))
            .unwrap_or_default();
        let why = if d.keep {
            format!(" ({})", d.reasons.join(", "))
        } else {
            String::new()
        };
        println!("{verdict} {:>4}  {}{why}{name}", d.rev, iso_utc(e.when));
    }
    if !ctx.quiet {
        let what = if args.dry_run {
            "would forget"
        } else {
            "forgot"
        };
        println!(
            "{what} {gone} of {} revisions; run `vt gc` to reclaim the space",
            decided.len()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
