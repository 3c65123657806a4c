//! The host's callbacks: how engine events reach C, and when the host's userdata is freed.

use std::cell::Cell;
use std::ffi::c_void;

use engine::{Event, Message, MAX_ID_LEN};
use libc::{c_char, size_t};

use crate::ptr::{Castable, OwnershipRef};
use crate::{WSPUSH_OPCODE_BINARY, WSPUSH_OPCODE_TEXT};

/// Called when a socket completed its upgrade and now receives messages for `id`.
///
/// `conn` names this socket until its `on_close` (pass it to `wspush_engine_send_to` or
/// `wspush_engine_close_connection`); handles are never reused within an engine's life.
/// `id` is `id_len` bytes of UTF-8, followed by a NUL for convenience (an id may contain a
/// NUL byte: `id_len` is authoritative).
///
/// Thread: called on one of the engine's worker threads (the one owning the socket, or the
/// one that read a message from Redis and wrote it for the owner), one call at a time per
/// socket, never on the thread that calls wspush functions. Workers serve many sockets: return quickly
/// and never block. May call `wspush_engine_send`, `_send_to`, `_broadcast`,
/// `_close_connection`, `_stats` and `_set_callbacks`, but not `wspush_engine_stop`,
/// `wspush_engine_free` or `wspush_engine_send_positioned` (they would wait for the worker
/// itself; they fail with `WSPUSH_STATUS_IN_CALLBACK` or `WSPUSH_STATUS_WRONG_THREAD`). Must
/// not unwind (catch C++ exceptions).
/// Ownership: `id` is borrowed for the duration of the call only: copy what you keep.
pub type wspush_on_open =
    Option<unsafe extern "C" fn(userdata: *mut c_void, conn: u64, id: *const c_char, id_len: size_t)>;

/// Called when a complete message arrived from a client on socket `conn` of `id`.
///
/// `opcode` is `WSPUSH_OPCODE_TEXT` (then `data` is valid UTF-8) or `WSPUSH_OPCODE_BINARY`.
/// `data` is `len` bytes, NOT NUL-terminated (print it with `"%.*s", (int)len, data`);
/// when `len` is 0 it must not be read. Fragments are already reassembled.
///
/// Thread and rules: as `wspush_on_open` (a worker thread; return quickly, never block).
/// Ownership: `id` and `data` are borrowed for the duration of the call only.
pub type wspush_on_message = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        conn: u64,
        id: *const c_char,
        id_len: size_t,
        opcode: u32,
        data: *const u8,
        len: size_t,
    ),
>;

/// Called once when socket `conn` of `id` is gone, with the close code the engine sent or
/// received (1001 when the engine stops, 1006 when the connection dropped without a close
/// frame). `conn` is invalid afterwards.
///
/// Thread and rules: as `wspush_on_open` (a worker thread; return quickly, never block).
/// Ownership: `id` is borrowed for the duration of the call only.
pub type wspush_on_close = Option<
    unsafe extern "C" fn(userdata: *mut c_void, conn: u64, id: *const c_char, id_len: size_t, code: u16),
>;

/// Frees the `userdata` given to `wspush_engine_set_callbacks` or
/// `wspush_engine_set_authorizer`. Called exactly once per successful call with a non-NULL
/// destructor: after those callbacks (or that authorizer) were replaced or removed and no
/// call to them is running any more, or in `wspush_engine_free` at the latest.
///
/// Thread: the thread that replaced the callbacks (or the authorizer) or freed the engine,
/// or, if a call was running at that moment, the thread that ran it (a worker, or the
/// acceptor for the authorizer), right after it returned. It must not call
/// `wspush_engine_stop`, `wspush_engine_free` or `wspush_engine_send_positioned` (it counts
/// as a callback: they fail).
pub type wspush_userdata_free = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// The host's callbacks, all optional (NULL: that event is ignored). Copied by
/// `wspush_engine_set_callbacks`: the struct itself need not outlive the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct wspush_callbacks {
    /// A socket opened (see `wspush_on_open`).
    pub on_open: wspush_on_open,
    /// A message arrived (see `wspush_on_message`).
    pub on_message: wspush_on_message,
    /// A socket closed (see `wspush_on_close`).
    pub on_close: wspush_on_close,
}

impl Castable for wspush_callbacks {
    type Ownership = OwnershipRef;
    type RustType = wspush_callbacks;
}

thread_local! {
    /// How deep this thread is in host callbacks (stop and free must not run there).
    static IN_CALLBACK: Cell<u32> = const { Cell::new(0) };
}

/// Whether the current thread is running one of the host's callbacks (an event callback,
/// the authorizer or a `userdata_free`): the only host code that runs on the engine's own
/// threads, so also the test for "waiting here would block a worker".
pub(crate) fn in_callback() -> bool {
    IN_CALLBACK.try_with(Cell::get).unwrap_or(0) > 0
}

/// Marks the current thread as running a host callback while it lives.
pub(crate) struct CallbackScope;

impl CallbackScope {
    pub(crate) fn enter() -> Self {
        let _ = IN_CALLBACK.try_with(|depth| depth.set(depth.get() + 1));
        CallbackScope
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        let _ = IN_CALLBACK.try_with(|depth| depth.set(depth.get() - 1));
    }
}

/// The host's userdata and its destructor, run when the handler holding it is dropped:
/// the engine drops a replaced handler (or authorizer) only once no thread is running it.
pub(crate) struct Userdata {
    pub(crate) pointer: *mut c_void,
    pub(crate) free: wspush_userdata_free,
}

// SAFETY: the header requires userdata to be usable from the engine's worker threads (and
// the acceptor thread, for an authorizer's) and freeable from any thread (it is passed to
// callbacks there, and its destructor runs where the handler is dropped); libwspush itself
// never dereferences it.
unsafe impl Send for Userdata {}
// SAFETY: as above: callbacks on several workers may receive the same userdata at once,
// which the header says.
unsafe impl Sync for Userdata {}

impl Drop for Userdata {
    fn drop(&mut self) {
        if let Some(free) = self.free {
            // It may run on a worker (after the last call to its callbacks there).
            let _scope = CallbackScope::enter();
            // SAFETY: the host gave this destructor for this pointer, to be called once; this
            // Userdata is dropped exactly once.
            unsafe { free(self.pointer) }
        }
    }
}

/// The event handler installed in the engine for a set of C callbacks.
pub(crate) struct Handler {
    callbacks: wspush_callbacks,
    userdata: Userdata,
}

impl Handler {
    pub fn new(callbacks: wspush_callbacks, userdata: *mut c_void, free: wspush_userdata_free) -> Self {
        Self { callbacks, userdata: Userdata { pointer: userdata, free } }
    }

    /// Hands one event to the matching C callback, if the host set one.
    pub fn on_event(&self, event: &Event<'_>) {
        let _scope = CallbackScope::enter();
        let userdata = self.userdata.pointer;
        match *event {
            Event::Open { conn, id } => {
                if let Some(on_open) = self.callbacks.on_open {
                    with_c_id(id, |id, id_len| {
                        // SAFETY: a function pointer the host registered, called with the
                        // argument types its typedef declares; `id` lives during the call.
                        unsafe { on_open(userdata, conn.as_u64(), id, id_len) }
                    });
                }
            }
            Event::Message { conn, id, message } => {
                if let Some(on_message) = self.callbacks.on_message {
                    let opcode = match message {
                        Message::Text(_) => WSPUSH_OPCODE_TEXT,
                        Message::Binary(_) => WSPUSH_OPCODE_BINARY,
                    };
                    let data = message.as_bytes();
                    with_c_id(id, |id, id_len| {
                        // SAFETY: as for on_open; `data` lives during the call.
                        unsafe {
                            on_message(userdata, conn.as_u64(), id, id_len, opcode, data.as_ptr(), data.len())
                        }
                    });
                }
            }
            Event::Close { conn, id, code } => {
                if let Some(on_close) = self.callbacks.on_close {
                    with_c_id(id, |id, id_len| {
                        // SAFETY: as for on_open.
                        unsafe { on_close(userdata, conn.as_u64(), id, id_len, code) }
                    });
                }
            }
        }
    }
}

/// Calls `f` with the id as a NUL-terminated C string and its length. Ids are at most
/// [`MAX_ID_LEN`] bytes, so the copy lives on the stack.
fn with_c_id(id: &str, f: impl FnOnce(*const c_char, usize)) {
    let mut buf = [0u8; MAX_ID_LEN + 1];
    if id.len() <= MAX_ID_LEN {
        buf[..id.len()].copy_from_slice(id.as_bytes());
        f(buf.as_ptr().cast(), id.len());
    } else {
        // Not reachable with the engine's id rules; kept correct all the same.
        let mut owned = id.as_bytes().to_vec();
        owned.push(0);
        f(owned.as_ptr().cast(), id.len());
    }
}
