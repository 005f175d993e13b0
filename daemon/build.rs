//! Link flags for the daemon binary: both make a speaker's resident memory smaller.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cold.ld");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    // Relative relocations packed (DT_RELR, glibc 2.36: Debian 12, Raspberry Pi OS 12): the
    // loader reads 2 KiB instead of 190 KiB of RELA entries at every start, and those pages
    // stayed resident. lld (Rust's default linker on x86-64) packs them; Debian 12's GNU ld for
    // arm64 ignores the flag and the binary keeps RELA.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    // Code a speaker never runs (decoders, TLS, the controller, ...) in a block of its own
    // ahead of .text. The kernel maps 64 KiB of a file around each page a process touches, so
    // cold functions between hot ones are resident too: 0.5 MiB of a speaker's 8.3 (see
    // cold.ld). A linker-script fragment (INSERT), understood by lld and GNU ld.
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/cold.ld");
}
