//! The host's authorizer: a C callback the engine asks about every upgrade it answers.

use std::cell::Cell;
use std::ffi::c_void;
use std::io::Write;

use engine::AuthorizeRequest;
use libc::{c_char, size_t};

use crate::callbacks::{wspush_userdata_free, CallbackScope, Userdata};

/// One header of an upgrade request, as `wspush_authorize_request` lists them.
///
/// `name` is `name_len` bytes, lower-cased (`"cookie"`, `"x-session"`); `value` is
/// `value_len` bytes as the client sent them, usually ASCII but not necessarily UTF-8.
/// Neither is NUL-terminated (print with `"%.*s"`); a pointer whose length is 0 must not be
/// read. Both borrow until the callback returns.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wspush_header {
    /// The header's name, lower-cased.
    pub name: *const c_char,
    /// Bytes in `name`.
    pub name_len: size_t,
    /// The header's value.
    pub value: *const c_char,
    /// Bytes in `value` (may be 0).
    pub value_len: size_t,
}

/// What a `wspush_authorize_callback` is told about an upgrade request.
///
/// - `id`: the id the client connects as (from the path, percent-decoded; or the id given to
///   `wspush_engine_register`), `id_len` bytes of UTF-8;
/// - `path`: the request target exactly as sent, path and query
///   (`"/websocket/456?token=..."`), `path_len` bytes;
/// - `headers`: every request header in the order sent (a repeated header appears once per
///   line), `headers_len` of them; cookies are in the `"cookie"` header(s);
/// - `peer`: the client's address as text, `"127.0.0.1:54321"` or `"[::1]:54321"`,
///   `peer_len` bytes; NULL with `peer_len` 0 when the socket has no address.
///
/// None of the strings is NUL-terminated. Every pointer here, `headers` and what its entries
/// point to included, borrows until the callback returns: copy what you keep.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wspush_authorize_request {
    /// The id, UTF-8.
    pub id: *const c_char,
    /// Bytes in `id` (1 to `WSPUSH_MAX_ID_LEN`).
    pub id_len: size_t,
    /// The request target: path and query, as sent.
    pub path: *const c_char,
    /// Bytes in `path`.
    pub path_len: size_t,
    /// The request headers, names lower-cased.
    pub headers: *const wspush_header,
    /// Entries in `headers`.
    pub headers_len: size_t,
    /// The client's address, e.g. `"127.0.0.1:54321"`; NULL if unknown.
    pub peer: *const c_char,
    /// Bytes in `peer`; 0 if unknown.
    pub peer_len: size_t,
}

/// Decides whether an upgrade may proceed: return `true` to allow it, `false` to refuse it
/// with 403 (counted in `handshake_forbidden`).
///
/// It is asked only about requests that passed the other checks before it: a well-formed
/// upgrade for a valid id, an allowed `Origin` (`"allowed_origins"`) and a valid token (when
/// `"auth_jwt_secret"` or `"auth_jwt_public_key"` is set); the connection limits
/// (`"max_connections_per_ip"`, `"max_connections"`) come after it. `request` and everything
/// it points to are borrowed until the callback returns.
///
/// Thread: called on the engine's acceptor thread (`wspush-acceptor`), which answers every
/// pending upgrade: return quickly, from memory (a session map, a local cache), and never
/// block (no network round trip), or every other client waits. Calls are never concurrent
/// with each other. May call `wspush_engine_send`, `_send_to`, `_broadcast`,
/// `_close_connection`, `_stats`, `_set_callbacks` and `_set_authorizer`, but not
/// `wspush_engine_stop` or `wspush_engine_free` (they fail with
/// `WSPUSH_STATUS_IN_CALLBACK`) nor `wspush_engine_send_positioned` (it blocks: it fails with
/// `WSPUSH_STATUS_WRONG_THREAD`). Must not unwind (catch C++ exceptions, and return `false`
/// for a failure).
pub type wspush_authorize_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, request: *const wspush_authorize_request) -> bool>;

/// The authorizer installed in the engine for a C callback.
pub(crate) struct Authorizer {
    callback: unsafe extern "C" fn(userdata: *mut c_void, request: *const wspush_authorize_request) -> bool,
    userdata: Userdata,
}

/// Longest text of a socket address: `[` 39 digits of IPv6 `%` a 10-digit scope `]:` 5 digits
/// is 58 bytes.
const PEER_TEXT_LEN: usize = 64;

thread_local! {
    /// The header array handed to the callback, kept between calls so that asking the host
    /// does not allocate (the acceptor is one thread: this is one Vec).
    static HEADERS: Cell<Vec<wspush_header>> = const { Cell::new(Vec::new()) };
}

impl Authorizer {
    pub fn new(
        callback: unsafe extern "C" fn(*mut c_void, *const wspush_authorize_request) -> bool,
        userdata: *mut c_void,
        free: wspush_userdata_free,
    ) -> Self {
        Self { callback, userdata: Userdata { pointer: userdata, free } }
    }

    /// Puts `request` to the host's callback.
    pub fn authorize(&self, request: &AuthorizeRequest<'_>) -> bool {
        let _scope = CallbackScope::enter();
        let mut peer = [0u8; PEER_TEXT_LEN];
        let peer_len = match request.peer {
            Some(addr) => {
                let mut rest = &mut peer[..];
                match write!(rest, "{addr}") {
                    Ok(()) => PEER_TEXT_LEN - rest.len(),
                    Err(_) => 0,
                }
            }
            None => 0,
        };
        // Taken out of the slot for the call (a callback that somehow re-entered would find
        // it empty, not borrowed), cleared of the borrowed pointers, and put back.
        let mut headers = HEADERS.try_with(Cell::take).unwrap_or_default();
        headers.clear();
        headers.extend(request.headers.iter().map(|(name, value)| wspush_header {
            name: name.as_ptr().cast(),
            name_len: name.len(),
            value: value.as_ptr().cast(),
            value_len: value.len(),
        }));
        let c_request = wspush_authorize_request {
            id: request.id.as_ptr().cast(),
            id_len: request.id.len(),
            path: request.path.as_ptr().cast(),
            path_len: request.path.len(),
            headers: headers.as_ptr(),
            headers_len: headers.len(),
            peer: if peer_len == 0 { std::ptr::null() } else { peer.as_ptr().cast() },
            peer_len,
        };
        // SAFETY: a function pointer the host registered, called with the argument types its
        // typedef declares; `c_request` and everything it points to (the request's strings,
        // `headers`, `peer`) live until it returns. An unwinding callback aborts (extern "C").
        let allowed = unsafe { (self.callback)(self.userdata.pointer, &c_request) };
        headers.clear();
        let _ = HEADERS.try_with(|slot| slot.set(headers));
        allowed
    }
}
