//! `vt dump`: list the records of a segment file.

use super::Context;
use anyhow::Context as _;
use std::io::Write;
use std::path::PathBuf;
use vt_engine::io::{Fs, OpenMode, OsFs};
use vt_engine::segment::{self, HeaderCheck, RecordKind, ScanEnd, ScannedRecord, SegmentFormat};

/// Arguments of `vt dump`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.vtd` segment file.
    pub segment: PathBuf,
    /// Also decompress and re-hash each record.
    #[arg(long)]
    pub verify: bool,
}

/// Prints one line per record: offset, hashcode, codec, stored and raw lengths. A group
/// record's line says `group` after the lengths and is followed by one line per member:
/// a tab, `#<number>`, the member's hashcode, its length and its share of the stored bytes.
pub fn run(ctx: &Context, args: &Args) -> anyhow::Result<std::process::ExitCode> {
    let name = args.segment.display().to_string();
    let file = OsFs
        .open(&args.segment, OpenMode::Read)
        .with_context(|| format!("open {name}"))?;
    let mut head = vec![0u8; segment::SEGMENT_HEADER_LEN as usize];
    let len = file.len().with_context(|| format!("stat {name}"))?;
    head.truncate(len.min(head.len() as u64) as usize);
    file.read_at(&mut head, 0)
        .with_context(|| format!("read {name}"))?;
    let format = match segment::check_header(&head, &name)? {
        HeaderCheck::Format(f) => f,
        HeaderCheck::Torn => anyhow::bail!("{name}: torn segment header"),
    };
    let version = match format {
        SegmentFormat::V1 => segment::header_version(file.as_ref())
            .map_or_else(String::new, |v| format!(" (format version {v})")),
        SegmentFormat::Legacy => String::new(),
    };
    println!("# {name}: {format:?} segment{version}, {len} bytes");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let print = |r: ScannedRecord| {
        let io = |e| vt_engine::Error::io("write to standard output", e);
        let kind = match r.kind {
            RecordKind::Group => format!("\tgroup of {}", r.members.len()),
            RecordKind::Block => String::new(),
        };
        writeln!(
            out,
            "{}\t{}\t{:?}\t{}\t{}{kind}",
            r.offset, r.hash, r.codec, r.stored_len, r.raw_len
        )
        .map_err(io)?;
        for (i, m) in r.members.iter().enumerate() {
            writeln!(out, "\t#{i}\t{}\t{}\t{}", m.hash, m.len, m.share).map_err(io)?;
        }
        Ok(())
    };
    let end = match format {
        SegmentFormat::V1 => segment::scan_v1(
            file.as_ref(),
            segment::SEGMENT_HEADER_LEN,
            args.verify,
            print,
        )?,
        SegmentFormat::Legacy => segment::scan_legacy(file.as_ref(), 0, ctx.hash, print)?,
    };
    out.flush().context("write to standard output")?;
    match end {
        ScanEnd::Clean(off) => {
            println!("# end at {off}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        ScanEnd::Bad { offset, what } => {
            eprintln!("vt: {name}: bad record at offset {offset}: {what}");
            Ok(std::process::ExitCode::from(1))
        }
    }
}
