//! The detail of the last failure on each thread, and `wspush_last_error` to read it.

use std::cell::RefCell;
use std::panic;

use libc::{c_char, size_t};

use crate::error::Failure;
use crate::ptr;
use crate::status::wspush_status;

thread_local! {
    /// The message of the last failure on this thread.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Makes `message` the calling thread's last error.
pub(crate) fn set(message: String) {
    // `try_with`: during thread teardown the slot may be gone; the message is lost then.
    let _ = LAST_ERROR.try_with(|last| *last.borrow_mut() = message);
}

/// Records a failure of a function that cannot return a status (`wspush_engine_free`).
pub(crate) fn record(failure: Failure) {
    set(failure.message);
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
    // Not `panic::boundary`: that records failures as the last error, which this function
    // reports and must never change (and the boundary module depends on this one). The
    // same guard, then: a panic becomes WSPUSH_STATUS_PANIC instead of unwinding into C.
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
            ptr::write_c_string(buf, len, &message.as_bytes()[..n]);
        }
        if !out_len.is_null() {
            ptr::write(out_len, message.len());
        }
        wspush_status::Ok
    });
    result.unwrap_or(wspush_status::Panic)
}

/// The calling thread's last error, read through [`wspush_last_error`] as C would.
#[cfg(test)]
pub(crate) fn read() -> String {
    let mut buf = [0 as c_char; 256];
    let mut n = 0;
    assert_eq!(wspush_last_error(buf.as_mut_ptr(), buf.len(), &mut n), wspush_status::Ok);
    // SAFETY: wspush_last_error NUL-terminated the buffer.
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap().to_owned();
    assert_eq!(text.len(), n);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole_and_reports_the_full_length() {
        record(Failure::invalid("id `é1` is bad"));
        let full = "id `é1` is bad".len();
        // Room for "id `" and one byte of "é": the cut falls back to the boundary.
        let mut buf = [1 as c_char; 6];
        let mut n = 0;
        assert_eq!(wspush_last_error(buf.as_mut_ptr(), buf.len(), &mut n), wspush_status::Ok);
        assert_eq!(n, full);
        // SAFETY: NUL-terminated by wspush_last_error.
        assert_eq!(unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }, c"id `");
        // Length only.
        let mut n = 0;
        assert_eq!(wspush_last_error(std::ptr::null_mut(), 0, &mut n), wspush_status::Ok);
        assert_eq!(n, full);
        assert_eq!(wspush_last_error(std::ptr::null_mut(), 1, &mut n), wspush_status::NullArgument);
        assert_eq!(read(), "id `é1` is bad", "a NULL buffer does not change the last error");
    }

    #[test]
    fn each_thread_has_its_own_last_error() {
        record(Failure::invalid("here"));
        std::thread::spawn(|| assert_eq!(read(), "")).join().unwrap();
        assert_eq!(read(), "here");
    }
}
