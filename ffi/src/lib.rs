//! libwspush: the C ABI of the wspush engine.
//!
//! A C program (or a JVM through the JNI glue in `bindings/java/`) hosts the engine
//! in-process: [`wspush_engine_start`] with a JSON configuration, hand it connected sockets
//! ([`wspush_engine_register`]) or let it listen, push messages to ids
//! ([`wspush_engine_send`], [`wspush_engine_broadcast`]; [`wspush_engine_send_positioned`]
//! waits for the message's place in the id's history), hear about sockets through
//! callbacks ([`wspush_engine_set_callbacks`]), decide who may connect
//! ([`wspush_engine_set_authorizer`], or token checks in the configuration), read counters
//! ([`wspush_engine_stats`]), reload the `wss://` certificate ([`wspush_engine_reload_tls`]),
//! then [`wspush_engine_stop`] and [`wspush_engine_free`].
//!
//! The header `include/wspush.h` is generated from this crate by cbindgen
//! (`ffi/generate-header.sh`); the doc comments here are the header's documentation.
//!
//! Conventions (stated at the top of the header, from `ffi/cbindgen.toml`, and checked
//! from C by `bindings/c/abi_check.c`): every fallible function returns a
//! [`wspush_status`]; outputs are written only on `WSPUSH_STATUS_OK`; the detail of the last
//! failure on a thread is kept for [`wspush_last_error`]; no panic crosses the boundary.
//! Every pointer from C is checked for NULL, and every length bounded, before a slice is
//! made, all of it in the `ptr` module, the one place that dereferences C pointers.
//!
//! Modules, each depending only on those listed before it (and `lib.rs`'s constants):
//! - `status`: the status codes, their names, `wspush_status_str`;
//! - `error`: `Failure`, a failed call's status and message;
//! - `ptr`: C pointers, lengths and file descriptors into Rust values, generic over
//!   `Castable` (how C holds a type: a handle it owns, or a struct it lends);
//! - `last_error`: the thread's last error, `wspush_last_error`;
//! - `panic`: the boundary every exported function runs inside;
//! - `callbacks`, `authorizer`: the host's C callbacks, and its userdata;
//! - `config`: the JSON configuration; `stats`: the counters struct;
//! - `handle`: `wspush_engine` and the functions on it.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms)]
#![allow(non_camel_case_types)]

// cbindgen writes the header's functions in the order it meets them, module by module in
// the order declared here: the status codes' and the last error's before the engine's.
mod status;

mod last_error;

mod authorizer;
mod callbacks;
mod config;
mod error;
mod handle;
mod panic;
mod ptr;
mod stats;

pub use authorizer::{wspush_authorize_callback, wspush_authorize_request, wspush_header};
pub use callbacks::{
    wspush_callbacks, wspush_on_close, wspush_on_message, wspush_on_open, wspush_userdata_free,
};
pub use handle::*;
pub use last_error::wspush_last_error;
pub use stats::wspush_stats;
pub use status::{wspush_status, wspush_status_str};

/// Major version of libwspush (and of the engine it wraps), as in `wspush_version()`.
pub const WSPUSH_VERSION_MAJOR: u32 = 0;
/// Minor version of libwspush.
pub const WSPUSH_VERSION_MINOR: u32 = 1;
/// Patch version of libwspush.
pub const WSPUSH_VERSION_PATCH: u32 = 0;

/// Opcode of a text message: the payload must be valid UTF-8.
pub const WSPUSH_OPCODE_TEXT: u32 = 1;
/// Opcode of a binary message.
pub const WSPUSH_OPCODE_BINARY: u32 = 2;

/// `wspush_engine_register` flag: the host already answered the upgrade (101); the socket
/// speaks WebSocket frames from now on.
pub const WSPUSH_REGISTER_UPGRADED: u32 = 0;
/// `wspush_engine_register` flag: the engine reads the upgrade request from the socket and
/// answers it, with the admission checks of its listener (`"allowed_origins"`, the token,
/// whose `sub` must be the id given to register, the authorizer, the connection limits). The
/// id given to register decides; the request path is not parsed for one.
pub const WSPUSH_REGISTER_PERFORM_HANDSHAKE: u32 = 1;

/// Longest id in bytes (ids are 1 to 128 bytes of UTF-8 without `/`).
pub const WSPUSH_MAX_ID_LEN: usize = 128;

/// Longest epoch in bytes (ASCII letters and digits; the engine makes 8-character ones).
/// `wspush_position::epoch` holds one and its NUL.
pub const WSPUSH_MAX_EPOCH_LEN: usize = 16;

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The version of libwspush, e.g. "0.1.0".
///
/// Returns a static NUL-terminated string: never NULL, never freed. Any thread.
#[no_mangle]
pub extern "C" fn wspush_version() -> *const libc::c_char {
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_macros_match_the_crate_version() {
        let parse = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(WSPUSH_VERSION_MAJOR, parse(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(WSPUSH_VERSION_MINOR, parse(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(WSPUSH_VERSION_PATCH, parse(env!("CARGO_PKG_VERSION_PATCH")));
        assert_eq!(env!("CARGO_PKG_VERSION"), engine::VERSION);
    }

    #[test]
    fn the_version_string_is_nul_terminated() {
        // SAFETY: wspush_version returns a pointer to a static NUL-terminated string.
        let version = unsafe { std::ffi::CStr::from_ptr(wspush_version()) };
        assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn the_id_limit_is_the_engines() {
        assert_eq!(WSPUSH_MAX_ID_LEN, engine::MAX_ID_LEN);
    }

    #[test]
    fn the_epoch_limit_is_the_engines_and_fits_the_position() {
        assert_eq!(WSPUSH_MAX_EPOCH_LEN, engine::history::MAX_EPOCH_LEN);
        let position = wspush_position { offset: 0, epoch_len: 0, epoch: [0; 17] };
        assert_eq!(position.epoch.len(), WSPUSH_MAX_EPOCH_LEN + 1);
    }
}
