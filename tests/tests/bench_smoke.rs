//! Smoke test of the macro benchmark harness (benches/macro): runs it in `--smoke` mode on
//! tiny synthetic data, with no apt and no network, so the harness cannot rot unnoticed.
//!
//! vt is played by a small tar-based stand-in script, so the vt code paths of the harness
//! (pack, unpack, save, cat, the vt/peer ratio table) run whatever state the real CLI is in.
//! Peers (restic, borg, casync, bup) are measured when installed and must then restore
//! byte-identical trees; those not installed must be reported as not available.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const PEERS: [&str; 4] = ["restic", "borg", "casync", "bup"];

const SUMMARY_HEADER: &str = "| tool | ingest total s | ingest MB/s | ingest CPU s | \
ingest peak RSS MiB | store MB | logical/store | restore s | restore MB/s | \
restore peak RSS MiB | restore check | re-ingest s | re-ingest growth MB | prune/GC s | \
prune/GC peak RSS MiB | store after GC MB | restore after GC |";

/// A stand-in for vt: trees as tar files, files by copy, archives registered as GC roots.
/// Enough for the harness. Its GC (`compact`) deletes every tar no registered archive
/// names, so a harness that forgot the wrong revisions would fail the restore check after GC.
const FAKE_VT: &str = r#"#!/bin/sh
set -e
if [ "$1" = "--help" ]; then
  printf 'Usage: vt\n\nCommands:\n  init  i\n  pack  p\n  unpack  u\n  save  s\n  cat  c\n'
  printf '  forget  f\n  compact  c\n\nOptions:\n'
  exit 0
fi
[ "$1" = "-S" ] || exit 2
store=$2; shift 2
case "$1" in
init) mkdir -p "$store" ;;
pack)
  rev=$(mktemp "$store/revXXXXXX"); tar -cf "$rev" "$2"; basename "$rev" >> "$2.vt"
  grep -qxF "$PWD/$2.vt" "$store/roots" 2>/dev/null || echo "$PWD/$2.vt" >> "$store/roots" ;;
unpack) last=$(tail -n 1 "$2"); mkdir -p "$3"; tar -xf "$store/$last" -C "$3" --strip-components=1 ;;
forget)
  [ "$3" = "--keep-last" ] || exit 2
  tail -n "$4" "$2" > "$2.tmp"; mv "$2.tmp" "$2" ;;
compact)
  [ "$2" = "--grace" ] && [ "$3" = "0" ] || exit 2
  for rev in "$store"/rev*; do
    name=$(basename "$rev")
    keep=no
    while read -r archive; do grep -qxF "$name" "$archive" && keep=yes; done < "$store/roots"
    [ $keep = yes ] || rm "$rev"
  done ;;
save) cp "$2" "$store/blob"; echo blob ;;
cat) cat "$store/$2" ;;
*) exit 2 ;;
esac
"#;

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/macro/run.sh")
}

/// The rows of the first table after `heading`, as cells (header and separator included).
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in report"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn write_fake_vt(dir: &Path) -> PathBuf {
    let path = dir.join("vt");
    fs::write(&path, FAKE_VT).expect("write stand-in vt");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .expect("chmod");
    assert!(status.success());
    path
}

#[test]
fn smoke_mode_produces_a_verified_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vt = write_fake_vt(tmp.path());
    let out = tmp.path().join("section.md");
    let run = Command::new("bash")
        .arg(harness())
        .args(["--smoke", "--data"])
        .arg(tmp.path().join("data"))
        .arg("--out")
        .arg(&out)
        .arg("--vt")
        .arg(&vt)
        .output()
        .expect("run benches/macro/run.sh (needs bash and python3)");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "harness failed: {:?}\n{stderr}",
        run.status
    );
    let text = fs::read_to_string(&out).expect("harness wrote no report");

    assert!(text.contains("### Dataset: synthetic"), "{text}");
    assert!(
        text.contains(SUMMARY_HEADER),
        "summary header missing:\n{text}"
    );
    let summary = table_after(&text, "#### Summary");
    let col = |name: &str| {
        summary[0]
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name:?}"))
    };
    let (restore_col, gc_col) = (col("restore check"), col("prune/GC s"));
    let (gc_store_col, gc_check_col) = (col("store after GC MB"), col("restore after GC"));
    let rows: Vec<&Vec<String>> = summary.iter().skip(2).collect();

    let mut expected = vec!["vt"];
    expected.extend(PEERS.iter().copied().filter(|p| on_path(p)));
    for tool in &expected {
        let row = rows
            .iter()
            .find(|r| r[0] == *tool)
            .unwrap_or_else(|| panic!("no summary row for {tool}:\n{text}"));
        assert!(
            row[restore_col].starts_with("ok"),
            "{tool} restore: {}",
            row[restore_col]
        );
        let store_mb: f64 = row[5]
            .parse()
            .unwrap_or_else(|_| panic!("store MB: {}", row[5]));
        assert!(store_mb > 0.0, "{tool} store is empty");
        if *tool == "casync" {
            assert_eq!(row[gc_col], "n/a (casync has no GC)");
            continue;
        }
        // Every other tool has a prune/GC step here, timed, and must still restore after it.
        row[gc_col]
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("{tool} prune/GC s: {}", row[gc_col]));
        assert!(
            row[gc_check_col].starts_with("ok"),
            "{tool} restore after GC: {}",
            row[gc_check_col]
        );
        let after_gc: f64 = row[gc_store_col]
            .parse()
            .unwrap_or_else(|_| panic!("{tool} store after GC: {}", row[gc_store_col]));
        assert!(after_gc > 0.0, "{tool} GC emptied the store");
        if *tool == "vt" {
            // The stand-in keeps one tar of the four it wrote (3 versions + re-ingest).
            assert!(after_gc < store_mb, "stand-in GC reclaimed nothing");
        }
    }
    let ideal = rows
        .iter()
        .find(|r| r[0].starts_with("ideal"))
        .expect("ideal row");
    assert!(ideal[6].parse::<f64>().expect("ideal ratio") > 1.0);
    for peer in PEERS.iter().filter(|p| !on_path(p)) {
        assert!(
            text.contains(&format!("{peer}: not available")),
            "{peer} not reported"
        );
        assert!(
            !rows.iter().any(|r| r[0] == *peer),
            "{peer} measured but not installed"
        );
    }

    // The stand-in's GC leaves exactly the last revision: the size of a store that only
    // ever held it (the tar, the roots file and a one-line archive).
    let space = table_after(&text, "#### Space after prune/GC");
    let vt_space = space
        .iter()
        .find(|r| r[0] == "vt")
        .unwrap_or_else(|| panic!("no vt row in the space table:\n{text}"));
    let over_alone: f64 = vt_space[4]
        .parse()
        .unwrap_or_else(|_| panic!("after GC / last alone: {}", vt_space[4]));
    assert!((0.9..=1.1).contains(&over_alone), "{over_alone}");
    assert!(text.contains("- vt store after GC / last version alone ≤ 1.1: "));

    let ratios = table_after(&text, "#### vt / peer ratios");
    assert_eq!(
        ratios.len() - 2,
        expected.len() - 1,
        "one ratio row per peer:\n{text}"
    );
    assert!(
        ratios[0].iter().any(|c| c == "prune/GC"),
        "no prune/GC ratio"
    );
    for (peer, limit) in [("restic", "0.3"), ("borg", "0.5")] {
        if on_path(peer) {
            let line = format!("- prune/GC target vt / {peer} ≤ {limit}: ");
            assert!(text.contains(&line), "no {peer} GC target line:\n{text}");
        }
    }
    assert!(
        text.contains("  - prune/GC: `"),
        "prune/GC commands missing"
    );

    let single = table_after(&text, "### Single file");
    for op in [
        "read: cat FILE > /dev/null",
        "hash: vt save",
        "read: vt cat REF > /dev/null",
    ] {
        let row = single
            .iter()
            .find(|r| r[0] == op)
            .unwrap_or_else(|| panic!("no {op}"));
        assert_eq!(row[5], "ok", "{op}");
    }
}

#[test]
fn vt_lacking_subcommands_is_reported_not_fatal() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vt = tmp.path().join("vt");
    fs::write(&vt, "#!/bin/sh\necho 'vt 0.1.0'\n").expect("write");
    Command::new("chmod")
        .arg("+x")
        .arg(&vt)
        .status()
        .expect("chmod");
    let out = tmp.path().join("section.md");
    let run = Command::new("bash")
        .arg(harness())
        .args(["--smoke", "--no-single", "--tools", "vt", "--data"])
        .arg(tmp.path().join("data"))
        .arg("--out")
        .arg(&out)
        .arg("--vt")
        .arg(&vt)
        .output()
        .expect("run harness");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = fs::read_to_string(&out).expect("report");
    assert!(
        text.contains("vt: not available (binary lacks: init, pack, unpack)"),
        "{text}"
    );
    assert!(text.contains(SUMMARY_HEADER), "{text}");
}
