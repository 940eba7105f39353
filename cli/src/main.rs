//! The `vt` command line tool.
#![forbid(unsafe_code)]

fn main() {
    println!("vt {}", env!("CARGO_PKG_VERSION"));
}
