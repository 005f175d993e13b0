//! Link flags for the daemon binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Relative relocations packed (DT_RELR, glibc 2.36: Debian 12, Raspberry Pi OS 12): the
        // loader reads a few KiB instead of 190 KiB of RELA entries at every start, and those
        // pages stay resident, counted in the speaker's memory for its whole life.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
