//! The status codes every fallible function returns, and their names.
//!
//! The enum is written out once, plainly, because cbindgen reads source text and cannot see
//! an enum a macro makes; `status_table!` below then lists its variants with their header
//! names, and generates [`wspush_status::ALL`] and [`wspush_status::name`] from that one
//! list. `name` is an exhaustive `match`, so a variant missing from the list (or listed but
//! not in the enum) does not compile; a test checks the names and values against the
//! committed header.

use std::ffi::CStr;

use libc::c_char;

/// The outcome of a call. `WSPUSH_STATUS_OK` is 0; every other value is a failure whose
/// detail `wspush_last_error()` returns on the same thread. Values are explicit and never
/// reused; new ones may be added, so treat unknown values as failures.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wspush_status {
    /// Success.
    Ok = 0,
    /// A pointer that must not be NULL was NULL.
    NullArgument = 1,
    /// A string (id, text message, configuration) is not valid UTF-8.
    InvalidUtf8 = 2,
    /// An id is empty, longer than `WSPUSH_MAX_ID_LEN` bytes, or contains `/`.
    InvalidId = 3,
    /// Another argument is out of range: a length, an opcode, flags, a file descriptor that
    /// is not a connected stream socket, a close code, a message larger than
    /// `max_outbound_message_size`.
    InvalidArgument = 4,
    /// The configuration is not valid JSON, has an unknown key, or a bad value; or a file it
    /// names cannot be used (`wspush_engine_reload_tls`: the certificate or key file).
    InvalidConfig = 5,
    /// An operating system error (binding the listener, preparing a socket).
    Io = 6,
    /// A worker's command queue is full: the engine is overloaded; try again later.
    QueueFull = 7,
    /// The engine has been stopped.
    ShutDown = 8,
    /// Called from a callback where that would deadlock (`wspush_engine_stop`,
    /// `wspush_engine_free`).
    InCallback = 9,
    /// The engine has no listener (`ws_listen` was not configured).
    NoListener = 10,
    /// A bug: libwspush panicked; the panic was caught at the boundary.
    Panic = 11,
    /// An engine error this version of libwspush does not classify; see the last error.
    Internal = 12,
    /// A blocking call did not get its answer in time; what it started still happens
    /// (`wspush_engine_send_positioned`: the message was sent, its position is not known).
    Timeout = 13,
    /// Called on a thread where waiting would deadlock: inside a callback, the authorizer or
    /// a `userdata_free` (they run on the engine's own threads, which must answer the call).
    /// Nothing was done.
    WrongThread = 14,
    /// The engine serves no TLS (`tls_cert` and `tls_key` were not configured): there is no
    /// certificate to reload.
    NoTls = 15,
}

/// Generates [`wspush_status::ALL`] and [`wspush_status::name`] from one list of
/// `Variant => c"HEADER_NAME"`.
macro_rules! status_table {
    ($($variant:ident => $name:literal,)+) => {
        impl wspush_status {
            /// Every status code, in the enum's order.
            pub(crate) const ALL: &'static [wspush_status] = &[$(Self::$variant),+];

            /// The name of the code, as in the header.
            pub(crate) fn name(self) -> &'static CStr {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }
    };
}

status_table! {
    Ok => c"WSPUSH_STATUS_OK",
    NullArgument => c"WSPUSH_STATUS_NULL_ARGUMENT",
    InvalidUtf8 => c"WSPUSH_STATUS_INVALID_UTF8",
    InvalidId => c"WSPUSH_STATUS_INVALID_ID",
    InvalidArgument => c"WSPUSH_STATUS_INVALID_ARGUMENT",
    InvalidConfig => c"WSPUSH_STATUS_INVALID_CONFIG",
    Io => c"WSPUSH_STATUS_IO",
    QueueFull => c"WSPUSH_STATUS_QUEUE_FULL",
    ShutDown => c"WSPUSH_STATUS_SHUT_DOWN",
    InCallback => c"WSPUSH_STATUS_IN_CALLBACK",
    NoListener => c"WSPUSH_STATUS_NO_LISTENER",
    Panic => c"WSPUSH_STATUS_PANIC",
    Internal => c"WSPUSH_STATUS_INTERNAL",
    Timeout => c"WSPUSH_STATUS_TIMEOUT",
    WrongThread => c"WSPUSH_STATUS_WRONG_THREAD",
    NoTls => c"WSPUSH_STATUS_NO_TLS",
}

/// The name of a status code, e.g. "WSPUSH_STATUS_INVALID_ID"; "WSPUSH_STATUS_UNKNOWN" for
/// a value this version does not know.
///
/// `status` is a `wspush_status` value (taken as an integer so that any value is safe).
/// Returns a static NUL-terminated string: never NULL, never freed. Any thread.
#[no_mangle]
pub extern "C" fn wspush_status_str(status: u32) -> *const c_char {
    wspush_status::ALL
        .iter()
        .find(|known| **known as u32 == status)
        .map_or(c"WSPUSH_STATUS_UNKNOWN", |known| known.name())
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_header_name() {
        for &status in wspush_status::ALL {
            // SAFETY: wspush_status_str returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(wspush_status_str(status as u32)) };
            assert_eq!(name, status.name());
            assert!(name.to_str().unwrap().starts_with("WSPUSH_STATUS_"));
        }
        for unknown in [16, 99, u32::MAX] {
            // SAFETY: as above.
            let name = unsafe { CStr::from_ptr(wspush_status_str(unknown)) };
            assert_eq!(name, c"WSPUSH_STATUS_UNKNOWN");
        }
    }

    #[test]
    fn the_table_lists_the_headers_codes_in_its_order() {
        // `WSPUSH_STATUS_NAME = value,` lines of the committed header (itself checked fresh
        // against this crate by tests/ffi_c.rs).
        let header = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/wspush.h"));
        let in_header: Vec<(String, u32)> = header
            .lines()
            .filter_map(|line| line.trim().strip_suffix(','))
            .filter_map(|line| line.split_once(" = "))
            .filter(|(name, _)| name.starts_with("WSPUSH_STATUS_"))
            .map(|(name, value)| (name.to_owned(), value.parse().unwrap()))
            .collect();
        let in_table: Vec<(String, u32)> = wspush_status::ALL
            .iter()
            .map(|&status| (status.name().to_str().unwrap().to_owned(), status as u32))
            .collect();
        assert_eq!(in_table, in_header);
    }
}
