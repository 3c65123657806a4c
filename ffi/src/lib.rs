//! libwspush, the C ABI of the wspush engine.
//!
//! Placeholder member: the C ABI (cdylib + staticlib, cbindgen header in `include/`) is
//! built by its own issue on top of the engine's public API.
#![deny(missing_docs)]

/// The version of the engine this library wraps.
pub fn engine_version() -> &'static str {
    wspush::VERSION
}
