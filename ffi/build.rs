//! Gives libwspush.so the SONAME of its major version (`libwspush.so.0`), so programs linked
//! against it keep working across compatible releases and find it through the usual
//! `libwspush.so.0 -> libwspush.so.0.1.0` symlinks (`scripts/dist.sh` installs them).
//!
//! What the library exports needs no linker flag: rustc already exports only a cdylib's
//! `#[no_mangle] extern "C"` functions (all named `wspush_*`; `tests/dist.rs` checks it).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let elf = matches!(
        std::env::var("CARGO_CFG_TARGET_OS").as_deref(),
        Ok("linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "solaris" | "illumos")
    );
    if elf {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwspush.so.{major}");
    }
}
