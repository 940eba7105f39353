//! The C ABI from real C programs: `tests/c/*.c` are compiled with
//! `cc -Wall -Wextra -Werror -std=c11` against `include/vt.h`, linked against libvt
//! both dynamically and statically, and run (and, when valgrind is installed, run again
//! under memcheck, failing on any error or definite/indirect leak). The committed header
//! is also checked against a fresh cbindgen run (`VT_BLESS=1` rewrites it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The profile directory this test binary was built into (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/c_abi-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// Builds libvt (cdylib + staticlib) with the same profile as this test, once per run,
/// and returns the directory holding `libvt.so` and `libvt.a`.
fn libdir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        let target = dir.parent().expect("target dir");
        let profile = dir.file_name().and_then(|n| n.to_str()).expect("profile");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root())
            .args(["build", "--quiet", "-p", "vt-ffi", "--lib", "--target-dir"])
            .arg(target);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let st = cmd.status().expect("run cargo build -p vt-ffi");
        assert!(st.success(), "cargo build -p vt-ffi failed");
        for lib in ["libvt.so", "libvt.a"] {
            assert!(
                dir.join(lib).is_file(),
                "{} missing",
                dir.join(lib).display()
            );
        }
        dir
    })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Link {
    Dynamic,
    Static,
}

/// Compiles `tests/c/<name>.c` and returns the executable's path.
fn compile(name: &str, link: Link, out_dir: &Path) -> PathBuf {
    let lib = libdir();
    let src = root().join("tests/c").join(format!("{name}.c"));
    let exe = out_dir.join(format!("{name}-{link:?}"));
    let mut cmd = Command::new("cc");
    cmd.args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-g", "-O1", "-I"])
        .arg(root().join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(&src);
    match link {
        Link::Dynamic => {
            cmd.arg("-L")
                .arg(lib)
                .arg(format!("-Wl,-rpath,{}", lib.display()));
            cmd.args(["-lvt", "-lpthread"]);
        }
        Link::Static => {
            cmd.arg(lib.join("libvt.a"));
            cmd.args(["-lpthread", "-ldl", "-lm"]);
        }
    }
    let out = cmd.output().expect("run cc");
    assert!(
        out.status.success(),
        "compiling {name} ({link:?}) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Compiles and runs a C test program in a fresh scratch directory.
fn run_c(name: &str, link: Link, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile(name, link, tmp.path());
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let out = Command::new(&exe)
        .arg(&scratch)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} ({link:?}) failed: {}",
        show(&out)
    );
}

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs a C test program under valgrind memcheck: any memory error or a definite or
/// indirect leak fails (exit code 99). "Still reachable" blocks (Rust's thread-locals
/// and globals at exit) are allowed.
fn run_valgrind(name: &str, extra: &[&str]) {
    if !have_valgrind() {
        eprintln!("valgrind not installed: skipping the memcheck run of {name}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = compile(name, Link::Dynamic, tmp.path());
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--track-origins=no",
            "-q",
        ])
        .arg(&exe)
        .arg(&scratch)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} under valgrind failed: {}",
        show(&out)
    );
}

#[test]
fn header_is_current() {
    let ffi = root().join("ffi");
    let config = cbindgen::Config::from_file(ffi.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&ffi)
        .with_config(config)
        .generate()
        .expect("cbindgen");
    let mut fresh = Vec::new();
    bindings.write(&mut fresh);
    let path = root().join("include/vt.h");
    if std::env::var_os("VT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/vt.h is stale: regenerate it with `VT_BLESS=1 cargo test -p vt-tests --test c_abi header`"
    );
}

#[test]
fn roundtrip_dynamic() {
    run_c("roundtrip", Link::Dynamic, &[]);
}

#[test]
fn roundtrip_static() {
    run_c("roundtrip", Link::Static, &[]);
}

#[test]
fn roundtrip_valgrind() {
    run_valgrind("roundtrip", &["small"]);
}

#[test]
fn errors_dynamic() {
    run_c("errors", Link::Dynamic, &[]);
}

#[test]
fn errors_static() {
    run_c("errors", Link::Static, &[]);
}

#[test]
fn errors_valgrind() {
    run_valgrind("errors", &[]);
}

#[test]
fn threads_dynamic() {
    run_c("threads", Link::Dynamic, &[]);
}

#[test]
fn threads_static() {
    run_c("threads", Link::Static, &[]);
}

#[test]
fn threads_valgrind() {
    run_valgrind("threads", &["small"]);
}

/// The C timing loop of `vt_get` runs (timings are printed, never asserted).
#[test]
fn bench_get_smoke() {
    run_c("bench_get", Link::Dynamic, &["1000"]);
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `make -C ffi install` lays out lib, header and vt.pc under a prefix; the README example
/// builds against the installed copy (flags from pkg-config when it is installed) and runs.
#[test]
fn install_and_pkg_config() {
    if !have("make") {
        eprintln!("make not installed: skipping the install test");
        return;
    }
    let lib = libdir();
    let profile = match lib.file_name().and_then(|n| n.to_str()).unwrap() {
        "debug" => "dev".to_string(),
        p => p.to_string(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    let out = Command::new("make")
        .arg("-C")
        .arg(root().join("ffi"))
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("PROFILE={profile}"))
        .arg(format!("TARGET_DIR={}", lib.parent().unwrap().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "make install failed: {}", show(&out));
    for f in [
        "lib/libvt.so",
        "lib/libvt.a",
        "include/vt.h",
        "lib/pkgconfig/vt.pc",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed");
    }
    let pc = std::fs::read_to_string(prefix.join("lib/pkgconfig/vt.pc")).unwrap();
    assert!(
        pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );

    let flags: Vec<String> = if have("pkg-config") {
        let o = Command::new("pkg-config")
            .args(["--cflags", "--libs", "vt"])
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
            .output()
            .unwrap();
        assert!(o.status.success(), "pkg-config failed: {}", show(&o));
        String::from_utf8(o.stdout)
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    } else {
        eprintln!("pkg-config not installed: using the installed paths directly");
        vec![
            format!("-I{}", prefix.join("include").display()),
            format!("-L{}", prefix.join("lib").display()),
            "-lvt".into(),
        ]
    };
    let exe = tmp.path().join("example");
    let o = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-std=c11", "-o"])
        .arg(&exe)
        .arg(root().join("tests/c/example.c"))
        .args(&flags)
        .arg(format!("-Wl,-rpath,{}", prefix.join("lib").display()))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "compiling the example failed: {}",
        show(&o)
    );
    let o = Command::new(&exe)
        .arg(tmp.path().join("store"))
        .output()
        .unwrap();
    assert!(o.status.success(), "example failed: {}", show(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.ends_with("hello from C\n"), "{stdout}");
}

/// Every function in vt.h carries a comment stating its errors and thread-safety, and
/// those that hand out or take ownership (`**` out-parameters, `_free`) say so.
#[test]
fn header_documents_every_function() {
    let h = std::fs::read_to_string(root().join("include/vt.h")).unwrap();
    let mut comment = String::new();
    let mut decl = String::new();
    let mut checked = 0;
    for line in h.lines() {
        let t = line.trim();
        if let Some(c) = t.strip_prefix("//") {
            comment.push_str(c);
            comment.push('\n');
            continue;
        }
        let code = !t.starts_with('#') && !t.starts_with('*') && !t.starts_with("/*");
        if !decl.is_empty()
            || (code && (t.contains(" vt_") || t.contains("*vt_")) && t.contains('('))
        {
            decl.push_str(t);
            if !t.ends_with(';') {
                continue;
            }
            let name = decl
                .split('(')
                .next()
                .and_then(|s| s.rsplit([' ', '*']).next())
                .unwrap()
                .to_string();
            assert!(comment.contains("Errors"), "{name}: comment lacks Errors");
            assert!(
                comment.contains("Thread-safety"),
                "{name}: comment lacks Thread-safety"
            );
            if decl.contains("**") || name.ends_with("_free") {
                assert!(
                    comment.contains("Ownership"),
                    "{name}: comment lacks Ownership"
                );
            }
            checked += 1;
        }
        comment.clear();
        decl.clear();
    }
    assert!(checked >= 40, "only {checked} functions found in vt.h");
}
