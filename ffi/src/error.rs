//! Status codes, the thread-local last error, and the panic boundary every exported
//! function runs inside.

use std::cell::RefCell;
use std::ffi::CStr;
use std::panic::{self, AssertUnwindSafe};

use libc::{c_char, size_t};

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
    /// is not a connected stream socket, a close code.
    InvalidArgument = 4,
    /// The configuration is not valid JSON, has an unknown key, or a bad value.
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
}

impl wspush_status {
    const ALL: [wspush_status; 13] = [
        Self::Ok,
        Self::NullArgument,
        Self::InvalidUtf8,
        Self::InvalidId,
        Self::InvalidArgument,
        Self::InvalidConfig,
        Self::Io,
        Self::QueueFull,
        Self::ShutDown,
        Self::InCallback,
        Self::NoListener,
        Self::Panic,
        Self::Internal,
    ];

    /// The name of the code, as in the header.
    pub(crate) fn name(self) -> &'static CStr {
        match self {
            Self::Ok => c"WSPUSH_STATUS_OK",
            Self::NullArgument => c"WSPUSH_STATUS_NULL_ARGUMENT",
            Self::InvalidUtf8 => c"WSPUSH_STATUS_INVALID_UTF8",
            Self::InvalidId => c"WSPUSH_STATUS_INVALID_ID",
            Self::InvalidArgument => c"WSPUSH_STATUS_INVALID_ARGUMENT",
            Self::InvalidConfig => c"WSPUSH_STATUS_INVALID_CONFIG",
            Self::Io => c"WSPUSH_STATUS_IO",
            Self::QueueFull => c"WSPUSH_STATUS_QUEUE_FULL",
            Self::ShutDown => c"WSPUSH_STATUS_SHUT_DOWN",
            Self::InCallback => c"WSPUSH_STATUS_IN_CALLBACK",
            Self::NoListener => c"WSPUSH_STATUS_NO_LISTENER",
            Self::Panic => c"WSPUSH_STATUS_PANIC",
            Self::Internal => c"WSPUSH_STATUS_INTERNAL",
        }
    }
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

/// A failed call: its status and what went wrong.
#[derive(Debug)]
pub(crate) struct Failure {
    pub status: wspush_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: wspush_status, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn null(what: &str) -> Self {
        Self::new(wspush_status::NullArgument, format!("`{what}` is NULL"))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(wspush_status::InvalidArgument, message)
    }
}

impl From<engine::Error> for Failure {
    fn from(error: engine::Error) -> Self {
        let status = match &error {
            engine::Error::InvalidConfig { .. } => wspush_status::InvalidConfig,
            engine::Error::InvalidId(_) => wspush_status::InvalidId,
            engine::Error::QueueFull => wspush_status::QueueFull,
            engine::Error::ShutDown => wspush_status::ShutDown,
            engine::Error::Io { .. } => wspush_status::Io,
            _ => wspush_status::Internal,
        };
        Self::new(status, error.to_string())
    }
}

thread_local! {
    /// The message of the last failure on this thread.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: String) {
    // `try_with`: during thread teardown the slot may be gone; the message is lost then.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = message);
}

/// Runs the body of an exported function: a failure becomes its status and the thread's
/// last error, a panic becomes `WSPUSH_STATUS_PANIC` instead of unwinding into C.
pub(crate) fn boundary(function: &str, body: impl FnOnce() -> Result<(), Failure>) -> wspush_status {
    match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => wspush_status::Ok,
        Ok(Err(failure)) => {
            set_last_error(failure.message);
            failure.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("a panic without a message");
            set_last_error(format!("{function} panicked (a bug in libwspush): {what}"));
            wspush_status::Panic
        }
    }
}

/// Records a failure of a function that cannot return a status (`wspush_engine_free`).
pub(crate) fn record(failure: Failure) {
    set_last_error(failure.message);
}

/// Copies the detail of the last failure on the calling thread into `buf`.
///
/// Writes `min(len - 1, message length)` bytes and a terminating NUL (the message is cut at
/// a UTF-8 character boundary if `buf` is too small) and, if `out_len` is not NULL, stores
/// the full length of the message in bytes (without the NUL): if `*out_len >= len`, the
/// message was truncated. With `len == 0` nothing is written to `buf` (which may then be
/// NULL): use it to ask for the length. The message is empty if no call on this thread has
/// failed yet. Successful calls leave the last error as it was; this function never
/// changes it.
///
/// Borrows `buf` (`len` writable bytes) and `out_len` for the duration of the call.
/// Returns `WSPUSH_STATUS_NULL_ARGUMENT` if `buf` is NULL while `len > 0`. Any thread:
/// each thread has its own last error.
#[no_mangle]
pub extern "C" fn wspush_last_error(buf: *mut c_char, len: size_t, out_len: *mut size_t) -> wspush_status {
    let result = panic::catch_unwind(|| {
        if buf.is_null() && len > 0 {
            return wspush_status::NullArgument;
        }
        let message = LAST_ERROR.try_with(|last| last.borrow().clone()).unwrap_or_default();
        if len > 0 {
            let mut n = message.len().min(len - 1);
            while !message.is_char_boundary(n) {
                n -= 1;
            }
            crate::ptr::write_c_string(buf, len, &message.as_bytes()[..n]);
        }
        if !out_len.is_null() {
            crate::ptr::write(out_len, message.len());
        }
        wspush_status::Ok
    });
    result.unwrap_or(wspush_status::Panic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        let mut buf = [0 as c_char; 256];
        let mut n = 0;
        assert_eq!(wspush_last_error(buf.as_mut_ptr(), buf.len(), &mut n), wspush_status::Ok);
        // SAFETY: wspush_last_error NUL-terminated the buffer.
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap().to_owned();
        assert_eq!(text.len(), n);
        text
    }

    #[test]
    fn every_status_has_its_header_name() {
        for status in wspush_status::ALL {
            // SAFETY: wspush_status_str returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(wspush_status_str(status as u32)) };
            assert_eq!(name, status.name());
            assert!(name.to_str().unwrap().starts_with("WSPUSH_STATUS_"));
        }
        for unknown in [13, 99, u32::MAX] {
            // SAFETY: as above.
            let name = unsafe { CStr::from_ptr(wspush_status_str(unknown)) };
            assert_eq!(name, c"WSPUSH_STATUS_UNKNOWN");
        }
    }

    #[test]
    fn a_failure_sets_the_last_error_and_a_success_keeps_it() {
        let status = boundary("f", || Err(Failure::invalid("the opcode 7 is neither text nor binary")));
        assert_eq!(status, wspush_status::InvalidArgument);
        assert_eq!(last_error(), "the opcode 7 is neither text nor binary");
        assert_eq!(boundary("g", || Ok(())), wspush_status::Ok);
        assert_eq!(last_error(), "the opcode 7 is neither text nor binary");
    }

    #[test]
    fn a_panic_becomes_a_status() {
        let status = boundary("wspush_test", || panic!("boom"));
        assert_eq!(status, wspush_status::Panic);
        assert_eq!(last_error(), "wspush_test panicked (a bug in libwspush): boom");
    }

    #[test]
    fn truncation_keeps_characters_whole_and_reports_the_full_length() {
        let _ = boundary("f", || Err(Failure::invalid("id `é1` is bad")));
        let full = "id `é1` is bad".len();
        // Room for "id `" and one byte of "é": the cut falls back to the boundary.
        let mut buf = [1 as c_char; 6];
        let mut n = 0;
        assert_eq!(wspush_last_error(buf.as_mut_ptr(), buf.len(), &mut n), wspush_status::Ok);
        assert_eq!(n, full);
        // SAFETY: NUL-terminated by wspush_last_error.
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }, c"id `");
        // Length only.
        let mut n = 0;
        assert_eq!(wspush_last_error(std::ptr::null_mut(), 0, &mut n), wspush_status::Ok);
        assert_eq!(n, full);
        assert_eq!(wspush_last_error(std::ptr::null_mut(), 1, &mut n), wspush_status::NullArgument);
    }

    #[test]
    fn each_thread_has_its_own_last_error() {
        let _ = boundary("f", || Err(Failure::invalid("here")));
        std::thread::spawn(|| assert_eq!(last_error(), "")).join().unwrap();
        assert_eq!(last_error(), "here");
    }
}
