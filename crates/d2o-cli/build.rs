//! Link options of the `d2o` binary.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if packs_relative_relocations() {
        // About 270,000 relative relocations: as DT_RELR they take 70 kB instead of 6.5 MB of
        // 24-byte entries, which the loader read at every start (docs/benchmarks.md, "Binary size").
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the binary's relative relocations can be packed: a Linux glibc binary built on the
/// machine it targets, whose glibc (2.36 or later) can load such binaries. A binary built for
/// another machine, or by an older glibc, keeps the classic format.
fn packs_relative_relocations() -> bool {
    let var = |key: &str| std::env::var(key).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" || var("CARGO_CFG_TARGET_ENV") != "gnu" || var("HOST") != var("TARGET") {
        return false;
    }
    glibc_version().is_some_and(|version| version >= (2, 36))
}

/// The build machine's glibc version, from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn glibc_version() -> Option<(u32, u32)> {
    let out = Command::new("getconf").arg("GNU_LIBC_VERSION").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor = minor.split(|c: char| !c.is_ascii_digit()).next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
