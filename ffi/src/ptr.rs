//! The one place that turns what C hands us into Rust values: pointers into references and
//! slices, file descriptors into sockets, and the one place that writes through C pointers.
//!
//! These helpers are crate-private and only ever called with arguments that come straight
//! from a C caller. What makes them sound is the contract written in the header on every
//! function: a non-NULL pointer points to as many valid bytes as its length says, for the
//! duration of the call, and an engine pointer came from `wspush_engine_start` and has not
//! been freed. That part cannot be checked; everything else is (NULL, lengths, UTF-8, the
//! kind of file descriptor) before any reference or slice is made.

use std::ffi::c_void;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, RawFd};

use libc::c_char;

use crate::callbacks::wspush_callbacks;
use crate::error::Failure;
use crate::handle::wspush_engine;
use crate::status::wspush_status;

/// The engine behind a handle from `wspush_engine_start`.
pub(crate) fn engine<'a>(engine: *const wspush_engine) -> Result<&'a wspush_engine, Failure> {
    if engine.is_null() {
        return Err(Failure::null("engine"));
    }
    // SAFETY: non-NULL, and by the header's contract a live handle from wspush_engine_start
    // (a Box leaked into a raw pointer) that is not freed while any call on it runs. The
    // engine is Sync, so shared references from many threads are fine.
    Ok(unsafe { &*engine })
}

/// `len` bytes at `data`; NULL is accepted only with `len == 0` (an empty message).
pub(crate) fn bytes<'a>(data: *const c_void, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    if data.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(Failure::null(what)) };
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!("`{what}` length {len} is larger than any buffer can be")));
    }
    // SAFETY: non-NULL, len fits in isize, and by the header's contract `data` points to
    // `len` readable bytes that stay unchanged for the duration of the call (the slice does
    // not outlive it: callers copy what they keep).
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

/// `len` bytes of UTF-8 at `text` (not NUL-terminated); NULL is always an error.
pub(crate) fn utf8<'a>(text: *const c_char, len: usize, what: &str) -> Result<&'a str, Failure> {
    if text.is_null() {
        return Err(Failure::null(what));
    }
    let bytes = bytes(text.cast(), len, what)?;
    std::str::from_utf8(bytes)
        .map_err(|e| Failure::new(wspush_status::InvalidUtf8, format!("`{what}` is not valid UTF-8: {e}")))
}

/// Checks an output pointer before any work is done, so that a NULL one fails early.
pub(crate) fn out<T>(out: *mut T, what: &str) -> Result<*mut T, Failure> {
    if out.is_null() {
        Err(Failure::null(what))
    } else {
        Ok(out)
    }
}

/// Writes an output value through a pointer checked by [`out`] (or known non-NULL).
pub(crate) fn write<T>(out: *mut T, value: T) {
    debug_assert!(!out.is_null());
    // SAFETY: non-NULL (checked by the caller), and by the header's contract aligned and
    // writable for a T. T is a plain C type (integer, pointer, repr(C) struct of integers),
    // so the old value needs no drop.
    unsafe { out.write(value) }
}

/// Copies `text` and a NUL into `buf`, which has room for `len > text.len()` bytes.
pub(crate) fn write_c_string(buf: *mut c_char, len: usize, text: &[u8]) {
    assert!(!buf.is_null() && text.len() < len);
    // SAFETY: `buf` is non-NULL and by the header's contract has `len` writable bytes;
    // text.len() + 1 <= len bytes are written; `text` is a Rust slice, so the two regions
    // cannot overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        buf.add(text.len()).write(0);
    }
}

/// A copy of the caller's callback table; `None` for NULL.
pub(crate) fn callbacks(callbacks: *const wspush_callbacks) -> Option<wspush_callbacks> {
    if callbacks.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and by the header's contract a readable wspush_callbacks for the
    // duration of the call; it is Copy (three nullable function pointers), copied here.
    Some(unsafe { callbacks.read() })
}

/// Moves a new engine to the heap and hands its pointer to C.
pub(crate) fn into_handle(engine: wspush_engine) -> *mut wspush_engine {
    Box::into_raw(Box::new(engine))
}

/// Takes back a handle from [`into_handle`]; `None` for NULL.
pub(crate) fn from_handle(engine: *mut wspush_engine) -> Option<Box<wspush_engine>> {
    if engine.is_null() {
        return None;
    }
    // SAFETY: by the header's contract `engine` came from wspush_engine_start (Box::into_raw
    // in into_handle), is freed only once, and no other call on it runs any more.
    Some(unsafe { Box::from_raw(engine) })
}

/// Takes ownership of `fd` as a socket, after checking that it is an open, connected stream
/// socket. On error nothing is taken: the descriptor is still the caller's.
pub(crate) fn take_socket(fd: RawFd) -> Result<TcpStream, Failure> {
    if fd < 0 {
        return Err(Failure::invalid(format!("the file descriptor {fd} is negative")));
    }
    let os_error =
        |what: &str| Failure::invalid(format!("fd {fd} {what}: {}", std::io::Error::last_os_error()));
    // SAFETY: fstat only writes the stat buffer we pass; an invalid fd gives EBADF.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err(os_error("is not an open file descriptor"));
    }
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Failure::invalid(format!("fd {fd} is not a socket")));
    }
    let mut kind: libc::c_int = 0;
    let mut size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `size` bytes into `kind`, and updates `size`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut size,
        )
    };
    if rc != 0 {
        return Err(os_error("cannot be queried"));
    }
    if kind != libc::SOCK_STREAM {
        return Err(Failure::invalid(format!("fd {fd} is not a stream (TCP) socket")));
    }
    // SAFETY: an all-zero sockaddr_storage is a valid value; getpeername writes at most
    // `size` bytes into it.
    let mut peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut size = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    if unsafe { libc::getpeername(fd, (&mut peer as *mut libc::sockaddr_storage).cast(), &mut size) } != 0 {
        return Err(os_error("is not a connected socket"));
    }
    // SAFETY: fd is an open, connected stream socket, and by the header's contract the
    // caller gives up ownership of it with this call: nothing else closes or uses it.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}
