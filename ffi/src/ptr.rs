//! The one place that turns what C hands us into Rust values: pointers into references and
//! slices, file descriptors into sockets, and the one place that writes through C pointers.
//!
//! These helpers are crate-private and only ever called with arguments that come straight
//! from a C caller. What makes them sound is the contract written in the header on every
//! function: a non-NULL pointer points to as many valid bytes as its length says, for the
//! duration of the call, and a handle (an engine) came from the function that made it and
//! has not been freed. That part cannot be checked; everything else is (NULL, lengths,
//! UTF-8, the kind of file descriptor) before any reference or slice is made.
//!
//! The types behind C pointers belong to the modules that define them; they say how C holds
//! them by implementing [`Castable`], and the helpers here are generic over it, so this
//! module needs nothing from the crate but the status and failure types.

use std::ffi::c_void;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, RawFd};

use libc::c_char;

use crate::error::Failure;
use crate::status::wspush_status;

/// A C type that stands for a Rust value behind a pointer: `*const Self` points to a
/// [`Castable::RustType`], held as [`Castable::Ownership`] says.
pub(crate) trait Castable {
    /// [`OwnershipBox`] or [`OwnershipRef`].
    type Ownership;
    /// What a pointer to `Self` points to.
    type RustType;
}

/// A handle libwspush makes and C owns: [`into_box`] moves a `RustType` to the heap and
/// hands C the pointer, C lends it to calls ([`borrow`]) and gives it back once to its free
/// function ([`take_box`]). `Self` is an opaque name in the header.
pub(crate) enum OwnershipBox {}

/// A plain C struct (`RustType` is `Self`, `#[repr(C)]` and `Copy`) that C owns and lends to
/// a call, which keeps a copy ([`copy_of`]).
pub(crate) enum OwnershipRef {}

/// The value behind a handle that [`into_box`] made, borrowed for the duration of a call.
pub(crate) fn borrow<'a, C>(handle: *const C, what: &str) -> Result<&'a C::RustType, Failure>
where
    C: Castable<Ownership = OwnershipBox>,
{
    if handle.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL, and by the header's contract a live handle from into_box (a
    // Box<C::RustType> leaked into a raw pointer) that is not freed while any call on it runs.
    // Only shared references are made from handles, so many threads may hold them at once
    // (the handle types' values are Sync).
    Ok(unsafe { &*handle.cast::<C::RustType>() })
}

/// Moves `value` to the heap and hands its pointer to C, which owns it until it gives it
/// back to [`take_box`].
pub(crate) fn into_box<C>(value: C::RustType) -> *mut C
where
    C: Castable<Ownership = OwnershipBox>,
{
    Box::into_raw(Box::new(value)).cast()
}

/// Takes back a handle from [`into_box`]; `None` for NULL. Dropping the box frees it.
pub(crate) fn take_box<C>(handle: *mut C) -> Option<Box<C::RustType>>
where
    C: Castable<Ownership = OwnershipBox>,
{
    if handle.is_null() {
        return None;
    }
    // SAFETY: by the header's contract `handle` came from into_box (Box::into_raw of a
    // Box<C::RustType>), is given back only once, and no other call on it runs any more.
    Some(unsafe { Box::from_raw(handle.cast::<C::RustType>()) })
}

/// A copy of a struct the caller lends for the duration of the call; `None` for NULL.
pub(crate) fn copy_of<C>(value: *const C) -> Option<C>
where
    C: Castable<Ownership = OwnershipRef, RustType = C> + Copy,
{
    if value.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and by the header's contract a readable, aligned C for the duration
    // of the call; C is a plain Copy C struct (function pointers, integers), copied here.
    Some(unsafe { value.read() })
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

/// `len` writable `uint64_t` at `out`, for a struct of `uint64_t` fields whose size the
/// caller gave (see `wspush_engine_stats`).
pub(crate) fn words_out<'a>(out: *mut u64, len: usize, what: &str) -> Result<&'a mut [u64], Failure> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    if !out.is_aligned() {
        return Err(Failure::invalid(format!("`{what}` is not aligned for uint64_t")));
    }
    if len > isize::MAX as usize / 8 {
        return Err(Failure::invalid(format!("`{what}` size is larger than any buffer can be")));
    }
    // SAFETY: non-NULL, aligned, the size fits in isize, and by the header's contract `out`
    // points to `len` writable `uint64_t` (the caller's `sizeof`) that nothing else touches
    // during the call; the slice does not outlive it.
    Ok(unsafe { std::slice::from_raw_parts_mut(out, len) })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle type for the tests: C sees `handle`, Rust keeps a `String` behind it.
    struct handle {
        _private: [u8; 0],
    }

    impl Castable for handle {
        type Ownership = OwnershipBox;
        type RustType = String;
    }

    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct pair {
        a: u32,
        b: u64,
    }

    impl Castable for pair {
        type Ownership = OwnershipRef;
        type RustType = pair;
    }

    #[test]
    fn a_boxed_value_is_borrowed_then_taken_back_once() {
        let raw: *mut handle = into_box::<handle>("kept".to_owned());
        assert_eq!(borrow(raw, "h").unwrap(), "kept");
        assert_eq!(*take_box(raw).unwrap(), "kept");
    }

    #[test]
    fn null_handles_are_errors_or_nothing() {
        let failure = borrow::<handle>(std::ptr::null(), "h").unwrap_err();
        assert_eq!(failure.status, wspush_status::NullArgument);
        assert_eq!(failure.message, "`h` is NULL");
        assert!(take_box::<handle>(std::ptr::null_mut()).is_none());
    }

    #[test]
    fn a_lent_struct_is_copied() {
        let lent = pair { a: 1, b: 2 };
        assert_eq!(copy_of(&lent), Some(lent));
        assert_eq!(copy_of::<pair>(std::ptr::null()), None);
    }
}
