//! The engine handle and the functions on it.

use std::ffi::c_void;
use std::sync::mpsc;
use std::time::Duration;

use engine::{ConnectionId, Engine, Handshake, Message, Position};
use libc::{c_char, c_int, size_t};

use crate::authorizer::{wspush_authorize_callback, Authorizer};
use crate::callbacks::{self, wspush_callbacks, wspush_userdata_free, Handler};
use crate::config;
use crate::error::Failure;
use crate::last_error::record;
use crate::panic::boundary;
use crate::ptr::{self, Castable, OwnershipBox};
use crate::stats::wspush_stats;
use crate::status::wspush_status;
use crate::{
    WSPUSH_OPCODE_BINARY, WSPUSH_OPCODE_TEXT, WSPUSH_REGISTER_PERFORM_HANDSHAKE, WSPUSH_REGISTER_UPGRADED,
};

/// A running engine (opaque). Create it with `wspush_engine_start`, free it with
/// `wspush_engine_free`. Every function taking a `const wspush_engine *` may be called from
/// any thread, concurrently, until `wspush_engine_free`.
pub struct wspush_engine {
    // Only a name for C: a `*const wspush_engine` points to an `Engine` (see `Castable`).
    _private: [u8; 0],
}

impl Castable for wspush_engine {
    type Ownership = OwnershipBox;
    type RustType = Engine;
}

/// How long `wspush_engine_free` waits for sockets to close when the engine was not stopped.
const FREE_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A message from C: text (which must be UTF-8) or binary.
fn message<'a>(data: *const c_void, len: size_t, opcode: u32) -> Result<Message<'a>, Failure> {
    let bytes = ptr::bytes(data, len, "data")?;
    match opcode {
        WSPUSH_OPCODE_TEXT => std::str::from_utf8(bytes).map(Message::Text).map_err(|e| {
            Failure::new(wspush_status::InvalidUtf8, format!("a text message must be valid UTF-8: {e}"))
        }),
        WSPUSH_OPCODE_BINARY => Ok(Message::Binary(bytes)),
        other => Err(Failure::invalid(format!(
            "opcode {other} is neither WSPUSH_OPCODE_TEXT (1) nor WSPUSH_OPCODE_BINARY (2)"
        ))),
    }
}

/// Starts an engine: its worker threads and, if `ws_listen` is set, its listener.
///
/// `config_json` is `len` bytes of UTF-8 JSON (not necessarily NUL-terminated): an object
/// whose keys are the engine's settings, each optional; unknown keys are errors. The keys,
/// defaults and meanings are the server's (README's settings table, "C/Java key" column;
/// declared once in the engine's `settings` table), for example:
/// - `"ws_listen"`: `"IP:PORT"` to accept WebSocket clients at `ws://IP:PORT{path_prefix}{id}`
///   (port 0: any free port, see `wspush_engine_local_port`), or `null` (the default): no
///   listener, sockets arrive only through `wspush_engine_register`;
/// - `"workers"`: worker threads, 1 to 256, or `null` (the default): one per CPU;
/// - sizes are bytes, as numbers or strings with a unit (`"max_buffered_bytes": "8MiB"`);
///   durations are seconds, as numbers or strings with a unit (`"idle_timeout": "500ms"`);
///   the former `"ping_interval_ms"`, `"idle_timeout_ms"`, `"handshake_timeout_ms"` and
///   `"auth_leeway_ms"` (milliseconds) are still accepted;
/// - cluster mode: `"redis": "redis://HOST:PORT"` turns it on, and the other cluster keys
///   (`"redis_prefix"`, `"node_id"`, `"compat_channel"`, ...) need it;
/// - who may connect (SECURITY.md), checked in this order before the upgrade, each refusal
///   counted in `wspush_stats`: `"allowed_origins"` (403), the token checks
///   (`"auth_jwt_secret"` or `"auth_jwt_public_key"`, PEM text or a PEM file's path, then
///   `"auth_leeway"`, `"auth_audience"`, `"auth_issuer"`, `"auth_close_on_expiry"`; 401),
///   the authorizer if set (`wspush_engine_set_authorizer`; 403),
///   `"max_connections_per_ip"` (429), `"max_connections"` (503).
///
/// Example: `{"ws_listen": "0.0.0.0:8081", "workers": 2, "idle_timeout": 600}`; with
/// tokens: `{"ws_listen": "0.0.0.0:8081", "auth_jwt_secret": "...32 bytes or more..."}`.
///
/// Borrows `config_json` for the duration of the call. On OK, writes a new engine to `*out`:
/// the caller owns it and must release it with `wspush_engine_stop` then
/// `wspush_engine_free`. On error `*out` is untouched. Errors: `WSPUSH_STATUS_NULL_ARGUMENT`,
/// `WSPUSH_STATUS_INVALID_UTF8`, `WSPUSH_STATUS_INVALID_CONFIG` (the last error names the
/// key), `WSPUSH_STATUS_IO` (e.g. the address is in use). Any thread.
#[no_mangle]
pub extern "C" fn wspush_engine_start(
    config_json: *const c_char,
    len: size_t,
    out: *mut *mut wspush_engine,
) -> wspush_status {
    boundary("wspush_engine_start", || {
        let json = ptr::utf8(config_json, len, "config_json")?;
        let out = ptr::out(out, "out")?;
        let config = config::parse(json)?;
        let engine = Engine::start(config)?;
        ptr::write(out, ptr::into_box::<wspush_engine>(engine));
        Ok(())
    })
}

/// The TCP port the engine's listener is bound to (useful with `"ws_listen": "...:0"`).
///
/// Borrows `engine`. On OK writes the port to `*out`. Errors: `WSPUSH_STATUS_NULL_ARGUMENT`,
/// `WSPUSH_STATUS_NO_LISTENER` if `ws_listen` was not configured. Any thread.
#[no_mangle]
pub extern "C" fn wspush_engine_local_port(engine: *const wspush_engine, out: *mut u16) -> wspush_status {
    boundary("wspush_engine_local_port", || {
        let engine = ptr::borrow(engine, "engine")?;
        let out = ptr::out(out, "out")?;
        let addr = engine.local_addr().ok_or_else(|| {
            Failure::new(wspush_status::NoListener, "the engine has no listener (`ws_listen` is not set)")
        })?;
        ptr::write(out, addr.port());
        Ok(())
    })
}

/// Reads the engine's certificate and key files (`"tls_cert"`, `"tls_key"`) again, as the
/// server does on SIGHUP: connections accepted from now on get the new certificate, those
/// already open keep theirs. The files are the ones named at `wspush_engine_start` (a
/// certificate manager renews them in place); replace each through a rename, so that a reload
/// never reads half a file. On any error the certificate in use stays.
///
/// Borrows `engine`. Reads two files on the calling thread, so prefer a thread of the host's
/// own to a callback (which would hold up the worker's sockets meanwhile). Errors:
/// `WSPUSH_STATUS_NULL_ARGUMENT`; `WSPUSH_STATUS_NO_TLS` when the engine serves no TLS;
/// `WSPUSH_STATUS_INVALID_CONFIG` when a file cannot be used: unreadable, not PEM, no
/// certificate, or a key that does not belong to the first certificate (the last error names
/// the setting, the file and the fault). Any thread, concurrently with every other call.
#[no_mangle]
pub extern "C" fn wspush_engine_reload_tls(engine: *const wspush_engine) -> wspush_status {
    boundary("wspush_engine_reload_tls", || {
        let engine = ptr::borrow(engine, "engine")?;
        if engine.reload_tls()? {
            Ok(())
        } else {
            Err(Failure::new(
                wspush_status::NoTls,
                "the engine serves no TLS (`tls_cert` and `tls_key` are not set): nothing to reload",
            ))
        }
    })
}

/// Sets the callbacks that receive socket events, replacing any earlier ones.
///
/// `callbacks` is copied (each member may be NULL). `userdata` is passed as the first
/// argument of every callback; the callbacks run on the engine's worker threads, several at
/// once, so whatever `userdata` points to must be safe to use from them. If
/// `userdata_free` is not NULL, the engine takes ownership of `userdata` on OK and calls
/// `userdata_free(userdata)` exactly once: when these callbacks are replaced or removed and
/// no call to them is running any more, or in `wspush_engine_free` at the latest (see
/// `wspush_userdata_free` for the thread). With `callbacks` NULL the current callbacks are
/// removed (their `userdata_free` runs); `userdata` and `userdata_free` must be NULL then.
///
/// Borrows `engine` and `callbacks` for the duration of the call. On error nothing is
/// taken: `userdata` stays the caller's and `userdata_free` is not called. Errors:
/// `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_INVALID_ARGUMENT`. Any thread, callbacks
/// included.
#[no_mangle]
pub extern "C" fn wspush_engine_set_callbacks(
    engine: *const wspush_engine,
    callbacks: *const wspush_callbacks,
    userdata: *mut c_void,
    userdata_free: wspush_userdata_free,
) -> wspush_status {
    boundary("wspush_engine_set_callbacks", || {
        let engine = ptr::borrow(engine, "engine")?;
        match ptr::copy_of(callbacks) {
            Some(callbacks) => {
                let handler = Handler::new(callbacks, userdata, userdata_free);
                engine.set_event_handler(move |event: &engine::Event<'_>| handler.on_event(event));
            }
            None if userdata.is_null() && userdata_free.is_none() => engine.clear_event_handler(),
            None => {
                return Err(Failure::invalid(
                    "`callbacks` is NULL (remove the callbacks) but `userdata` or `userdata_free` is not",
                ))
            }
        }
        Ok(())
    })
}

/// Sets the host's authorizer, which decides about every upgrade the engine answers (on its
/// listener, or registered with `WSPUSH_REGISTER_PERFORM_HANDSHAKE`), replacing any earlier
/// one: `callback(userdata, request)` returning `false` refuses the client with 403. See
/// `wspush_authorize_callback` for when it is asked, on which thread, and what it may do;
/// `wspush_authorize_request` for what it is told. Sockets registered with
/// `WSPUSH_REGISTER_UPGRADED` are not put to it (the host decided).
///
/// `userdata` is passed as the first argument of every call, on the acceptor thread. If
/// `userdata_free` is not NULL, the engine takes ownership of `userdata` on OK and calls
/// `userdata_free(userdata)` exactly once: when this authorizer is replaced or removed and
/// no call to it is running any more, or in `wspush_engine_free` at the latest (see
/// `wspush_userdata_free` for the thread). With `callback` NULL the current authorizer is
/// removed (its `userdata_free` runs) and every upgrade that passes the other checks is
/// accepted; `userdata` and `userdata_free` must be NULL then.
///
/// Borrows `engine` for the duration of the call. On error nothing is taken: `userdata`
/// stays the caller's and `userdata_free` is not called. Errors:
/// `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_INVALID_ARGUMENT`. Any thread, callbacks
/// (the authorizer itself included) too.
#[no_mangle]
pub extern "C" fn wspush_engine_set_authorizer(
    engine: *const wspush_engine,
    callback: wspush_authorize_callback,
    userdata: *mut c_void,
    userdata_free: wspush_userdata_free,
) -> wspush_status {
    boundary("wspush_engine_set_authorizer", || {
        let engine = ptr::borrow(engine, "engine")?;
        match callback {
            Some(callback) => {
                let authorizer = Authorizer::new(callback, userdata, userdata_free);
                engine.set_authorizer(move |request: &engine::AuthorizeRequest<'_>| {
                    authorizer.authorize(request)
                });
            }
            None if userdata.is_null() && userdata_free.is_none() => engine.clear_authorizer(),
            None => {
                return Err(Failure::invalid(
                    "`callback` is NULL (remove the authorizer) but `userdata` or `userdata_free` is not",
                ))
            }
        }
        Ok(())
    })
}

/// Hands a connected TCP socket accepted by the host to the engine, for id `id`.
///
/// `id` is `id_len` bytes of UTF-8 (1 to `WSPUSH_MAX_ID_LEN`, no `/`; need not be
/// NUL-terminated). `flags`: `WSPUSH_REGISTER_UPGRADED` if the host already answered the
/// WebSocket upgrade (101): no admission check applies, though the socket counts against
/// `"max_connections_per_ip"`; or `WSPUSH_REGISTER_PERFORM_HANDSHAKE` for the engine to read
/// the upgrade request and answer it (any path; `id` decides) after the same admission
/// checks as its listener (origin, token for `id`, authorizer, limits). `on_open` follows
/// once the socket is live.
///
/// Ownership of `fd`: if this returns `WSPUSH_STATUS_NULL_ARGUMENT`,
/// `WSPUSH_STATUS_INVALID_UTF8`, `WSPUSH_STATUS_INVALID_ID` or
/// `WSPUSH_STATUS_INVALID_ARGUMENT` (bad flags, or `fd` is negative, not open, not a
/// connected stream socket), nothing was done and `fd` is still the caller's. With any other
/// status, `WSPUSH_STATUS_OK` included, the engine owns `fd`: it closes it when the socket
/// ends, or already did if the status is an error (`WSPUSH_STATUS_IO`, `_QUEUE_FULL`,
/// `_SHUT_DOWN`). Either way never use or close `fd` after such a call. The engine makes it
/// non-blocking.
///
/// Borrows `engine` and `id` for the duration of the call. Any thread.
#[no_mangle]
pub extern "C" fn wspush_engine_register(
    engine: *const wspush_engine,
    id: *const c_char,
    id_len: size_t,
    fd: c_int,
    flags: u32,
) -> wspush_status {
    boundary("wspush_engine_register", || {
        let engine = ptr::borrow(engine, "engine")?;
        let id = ptr::utf8(id, id_len, "id")?;
        engine::validate_id(id)?;
        let handshake = match flags {
            WSPUSH_REGISTER_UPGRADED => Handshake::Done,
            WSPUSH_REGISTER_PERFORM_HANDSHAKE => Handshake::Perform,
            other => {
                return Err(Failure::invalid(format!(
                    "flags {other} are neither WSPUSH_REGISTER_UPGRADED (0) nor WSPUSH_REGISTER_PERFORM_HANDSHAKE (1)"
                )))
            }
        };
        // The last check; from here on the engine owns the socket, and closes it on error.
        let stream = ptr::take_socket(fd)?;
        engine.register(stream, id, handshake)?;
        Ok(())
    })
}

/// Queues a message for every socket of `id` (none is fine: the message is dropped).
/// Never blocks: the message is framed once and queued to the id's worker.
///
/// `id` is `id_len` bytes of UTF-8 (not necessarily NUL-terminated). `data` is `len` bytes
/// (may be NULL when `len` is 0); `opcode` is `WSPUSH_OPCODE_TEXT` (then `data` must be
/// UTF-8) or `WSPUSH_OPCODE_BINARY`.
///
/// Borrows `engine`, `id` and `data` for the duration of the call (the engine copies the
/// message). Errors: `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_INVALID_UTF8`,
/// `WSPUSH_STATUS_INVALID_ID`, `WSPUSH_STATUS_INVALID_ARGUMENT` (the opcode, or `len` over
/// `max_outbound_message_size`: nothing is sent), `WSPUSH_STATUS_QUEUE_FULL`,
/// `WSPUSH_STATUS_SHUT_DOWN`. Any thread, callbacks included.
#[no_mangle]
pub extern "C" fn wspush_engine_send(
    engine: *const wspush_engine,
    id: *const c_char,
    id_len: size_t,
    data: *const c_void,
    len: size_t,
    opcode: u32,
) -> wspush_status {
    boundary("wspush_engine_send", || {
        let engine = ptr::borrow(engine, "engine")?;
        let id = ptr::utf8(id, id_len, "id")?;
        let message = message(data, len, opcode)?;
        engine.send(id, message)?;
        Ok(())
    })
}

/// Where a message is in its id's history, as `wspush_engine_send_positioned` writes it:
/// `EPOCH:OFFSET` in the server's text form. The epoch names the history (it changes when
/// the id's history was lost: expired, or the node restarted); offsets are 1, 2, 3, ...
/// within an epoch. `offset` 0 and `epoch_len` 0 (and `epoch` all NULs): the message has no
/// position (history is off, `"history_size"` 0).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct wspush_position {
    /// The message's offset in its id's history (1 for the first of an epoch); 0: none.
    pub offset: u64,
    /// Bytes in `epoch` before its NUL (1 to `WSPUSH_MAX_EPOCH_LEN`; 8 for the engine's own
    /// epochs); 0: none.
    pub epoch_len: size_t,
    /// The epoch, ASCII letters and digits, NUL-terminated; the bytes after the NUL are NUL.
    pub epoch: [c_char; 17],
}

impl From<Option<Position>> for wspush_position {
    fn from(position: Option<Position>) -> Self {
        let mut out = wspush_position { offset: 0, epoch_len: 0, epoch: [0; 17] };
        if let Some(position) = position {
            let epoch = position.epoch.as_str().as_bytes();
            // Epochs are at most WSPUSH_MAX_EPOCH_LEN (16) bytes: the NUL always fits.
            let len = epoch.len().min(crate::WSPUSH_MAX_EPOCH_LEN);
            for (slot, byte) in out.epoch.iter_mut().zip(&epoch[..len]) {
                *slot = *byte as c_char;
            }
            out.offset = position.offset;
            out.epoch_len = len;
        }
        out
    }
}

/// As `wspush_engine_send`, then waits until the engine has placed the message in the id's
/// history and writes that place to `*out`: the message's offset and its history's epoch.
/// When the message has no position `*out` is `offset` 0, `epoch_len` 0, after the same wait:
/// with history off (`"history_size"` 0), and in cluster mode while Redis is unreachable (the
/// message is queued and gets its offset when Redis is back).
///
/// Blocks the calling thread for at most `timeout_ms` milliseconds (usually far less: one
/// turn of the id's worker).
///
/// Borrows `engine`, `id`, `data` (the engine copies the message) and `out` for the duration
/// of the call; `*out` is written only on OK. Errors, with nothing sent:
/// `WSPUSH_STATUS_NULL_ARGUMENT` (`out` included), `WSPUSH_STATUS_INVALID_UTF8`,
/// `WSPUSH_STATUS_INVALID_ID`, `WSPUSH_STATUS_INVALID_ARGUMENT` (as in `wspush_engine_send`),
/// `WSPUSH_STATUS_QUEUE_FULL`, `WSPUSH_STATUS_SHUT_DOWN`, and `WSPUSH_STATUS_WRONG_THREAD`
/// when called from a callback, the authorizer or a `userdata_free` (the worker that must
/// answer may be the one waiting). After the message was queued:
/// `WSPUSH_STATUS_TIMEOUT`: no answer within `timeout_ms`; the message is still sent (and
/// gets its offset), its position is not reported; `WSPUSH_STATUS_SHUT_DOWN`: the engine
/// stopped before the message was taken. Any thread but the engine's own (its callbacks).
#[no_mangle]
pub extern "C" fn wspush_engine_send_positioned(
    engine: *const wspush_engine,
    id: *const c_char,
    id_len: size_t,
    data: *const c_void,
    len: size_t,
    opcode: u32,
    timeout_ms: u32,
    out: *mut wspush_position,
) -> wspush_status {
    boundary("wspush_engine_send_positioned", || {
        let engine = ptr::borrow(engine, "engine")?;
        let id = ptr::utf8(id, id_len, "id")?;
        let message = message(data, len, opcode)?;
        let out = ptr::out(out, "out")?;
        if callbacks::in_callback() {
            return Err(Failure::new(
                wspush_status::WrongThread,
                "wspush_engine_send_positioned was called from a callback: it waits for a worker, which \
                 may be this thread; nothing was sent",
            ));
        }
        let (answer, answered) = mpsc::sync_channel(1);
        engine.send_with_receipt(id, message, move |receipt| {
            // The caller may have stopped waiting (a timeout): then nobody reads it.
            let _ = answer.send(receipt.position());
        })?;
        match answered.recv_timeout(Duration::from_millis(u64::from(timeout_ms))) {
            Ok(position) => {
                ptr::write(out, wspush_position::from(position));
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Failure::new(
                wspush_status::Timeout,
                format!("the message was sent but its position was not known within {timeout_ms} ms"),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Failure::new(
                wspush_status::ShutDown,
                "the engine stopped before the message's position was known",
            )),
        }
    })
}

/// Queues a message for one socket, named by the `conn` its callbacks received (e.g. a
/// reply in `on_message`). A `conn` whose socket has closed is ignored (OK).
///
/// `data`, `len`, `opcode` and ownership as in `wspush_engine_send`. Errors:
/// `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_INVALID_UTF8`,
/// `WSPUSH_STATUS_INVALID_ARGUMENT` (as in `wspush_engine_send`), `WSPUSH_STATUS_QUEUE_FULL`,
/// `WSPUSH_STATUS_SHUT_DOWN`. Any thread, callbacks included.
#[no_mangle]
pub extern "C" fn wspush_engine_send_to(
    engine: *const wspush_engine,
    conn: u64,
    data: *const c_void,
    len: size_t,
    opcode: u32,
) -> wspush_status {
    boundary("wspush_engine_send_to", || {
        let engine = ptr::borrow(engine, "engine")?;
        let message = message(data, len, opcode)?;
        engine.send_to(ConnectionId::from_u64(conn), message)?;
        Ok(())
    })
}

/// Queues a message for every open socket. Never blocks.
///
/// `data`, `len`, `opcode` and ownership as in `wspush_engine_send`. Errors:
/// `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_INVALID_UTF8`,
/// `WSPUSH_STATUS_INVALID_ARGUMENT` (as in `wspush_engine_send`), `WSPUSH_STATUS_QUEUE_FULL`
/// (some worker's queue was full; the others still deliver), `WSPUSH_STATUS_SHUT_DOWN`. Any thread, callbacks included.
#[no_mangle]
pub extern "C" fn wspush_engine_broadcast(
    engine: *const wspush_engine,
    data: *const c_void,
    len: size_t,
    opcode: u32,
) -> wspush_status {
    boundary("wspush_engine_broadcast", || {
        let engine = ptr::borrow(engine, "engine")?;
        let message = message(data, len, opcode)?;
        engine.broadcast(message)?;
        Ok(())
    })
}

/// Starts the close handshake on one socket with close `code` (1000-1003, 1007-1011 or
/// 3000-4999); its `on_close` follows. A `conn` whose socket has closed is ignored (OK).
///
/// Borrows `engine`. Errors: `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_INVALID_ARGUMENT`
/// (the code), `WSPUSH_STATUS_QUEUE_FULL`, `WSPUSH_STATUS_SHUT_DOWN`. Any thread, callbacks
/// included.
#[no_mangle]
pub extern "C" fn wspush_engine_close_connection(
    engine: *const wspush_engine,
    conn: u64,
    code: u16,
) -> wspush_status {
    boundary("wspush_engine_close_connection", || {
        let engine = ptr::borrow(engine, "engine")?;
        if !engine::frame::is_valid_close_code(code) {
            return Err(Failure::invalid(format!(
                "{code} is not a close code a server may send (1000-1003, 1007-1011, 3000-4999)"
            )));
        }
        engine.close(ConnectionId::from_u64(conn), code)?;
        Ok(())
    })
}

/// Reads a snapshot of the engine's counters into `*out`, whose size the caller gives as
/// `out_size` (pass `sizeof(wspush_stats)`). The struct only ever grows at its end: fields
/// past `out_size` are not written (an older caller), and fields the caller has but this
/// library does not are set to 0 (a newer caller).
///
/// Borrows `engine` and `out` for the duration of the call; `*out` is written only on OK.
/// Works after `wspush_engine_stop` too (the final counts). Errors:
/// `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_INVALID_ARGUMENT` when `out_size` is not a
/// whole, non-zero number of `uint64_t` fields. Any thread, callbacks included.
#[no_mangle]
pub extern "C" fn wspush_engine_stats(
    engine: *const wspush_engine,
    out: *mut wspush_stats,
    out_size: size_t,
) -> wspush_status {
    boundary("wspush_engine_stats", || {
        let engine = ptr::borrow(engine, "engine")?;
        if out_size == 0 || out_size % 8 != 0 {
            return Err(Failure::invalid(format!(
                "out_size must be a non-zero multiple of 8 (sizeof(wspush_stats)), got {out_size}"
            )));
        }
        let words = ptr::words_out(out.cast::<u64>(), out_size / 8, "out")?;
        let snapshot = wspush_stats::from(&engine.stats()).as_words();
        for (index, word) in words.iter_mut().enumerate() {
            *word = snapshot.get(index).copied().unwrap_or(0);
        }
        Ok(())
    })
}

/// Stops the engine: stops accepting, sends close 1001 to every socket (their `on_close`
/// callbacks run), flushes for at most `timeout_ms`, closes what is left and joins the
/// worker threads. Blocks until then. Afterwards sends fail with `WSPUSH_STATUS_SHUT_DOWN`;
/// a second stop returns OK at once. The handle stays valid until `wspush_engine_free`.
///
/// Borrows `engine`. Errors: `WSPUSH_STATUS_NULL_ARGUMENT`, `WSPUSH_STATUS_IN_CALLBACK` when
/// called from a callback (a worker cannot join itself). Any thread but the engine's own.
#[no_mangle]
pub extern "C" fn wspush_engine_stop(engine: *const wspush_engine, timeout_ms: u32) -> wspush_status {
    boundary("wspush_engine_stop", || {
        let engine = ptr::borrow(engine, "engine")?;
        if callbacks::in_callback() {
            return Err(Failure::new(
                wspush_status::InCallback,
                "wspush_engine_stop was called from a callback: a worker cannot wait for itself to stop",
            ));
        }
        engine.shutdown(Duration::from_millis(u64::from(timeout_ms)));
        Ok(())
    })
}

/// Frees an engine, stopping it first (with a 5 second deadline) if `wspush_engine_stop`
/// was not called, then calling the current `userdata_free` of the callbacks and of the
/// authorizer, if any, on this thread.
///
/// Consumes `engine`: do not use it afterwards, and make sure no other thread is still
/// calling a function on it. `NULL` is a no-op. Must not be called from a callback (that
/// would deadlock): there it does nothing (the engine stays alive) and sets the last error.
#[no_mangle]
pub extern "C" fn wspush_engine_free(engine: *mut wspush_engine) {
    if engine.is_null() {
        return;
    }
    if callbacks::in_callback() {
        record(Failure::new(
            wspush_status::InCallback,
            "wspush_engine_free was called from a callback; the engine was not freed",
        ));
        return;
    }
    let status = boundary("wspush_engine_free", || {
        if let Some(engine) = ptr::take_box(engine) {
            engine.shutdown(FREE_STOP_TIMEOUT);
            // The workers and the acceptor are gone: drop the handler and the authorizer (and
            // run their userdata_free) here and now.
            engine.clear_event_handler();
            engine.clear_authorizer();
            drop(engine);
        }
        Ok(())
    });
    debug_assert_eq!(status, wspush_status::Ok);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::CallbackScope;
    use crate::last_error;

    fn start(config: &str) -> *mut wspush_engine {
        let mut engine = std::ptr::null_mut();
        assert_eq!(wspush_engine_start(config.as_ptr().cast(), config.len(), &mut engine), wspush_status::Ok);
        engine
    }

    fn send_positioned(engine: *const wspush_engine, id: &str, out: *mut wspush_position) -> wspush_status {
        wspush_engine_send_positioned(
            engine,
            id.as_ptr().cast(),
            id.len(),
            b"x".as_ptr().cast(),
            1,
            1,
            60_000,
            out,
        )
    }

    fn epoch(position: &wspush_position) -> String {
        position.epoch[..position.epoch_len].iter().map(|&c| c as u8 as char).collect()
    }

    #[test]
    fn positions_with_history_on_are_1_then_2_in_one_epoch() {
        let engine = start(r#"{"workers": 1, "history_size": 4}"#);
        let mut first = wspush_position::from(None);
        let mut second = wspush_position::from(None);
        assert_eq!(send_positioned(engine, "a", &mut first), wspush_status::Ok);
        assert_eq!(send_positioned(engine, "a", &mut second), wspush_status::Ok);
        assert_eq!((first.offset, second.offset), (1, 2));
        assert_eq!(first.epoch_len, 8);
        assert_eq!(epoch(&first), epoch(&second));
        assert!(epoch(&first).bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()));
        assert!(first.epoch[8..].iter().all(|&c| c == 0), "NUL-terminated, NUL-padded");
        let mut other = wspush_position::from(None);
        assert_eq!(send_positioned(engine, "b", &mut other), wspush_status::Ok);
        assert_eq!(other.offset, 1);
        wspush_engine_free(engine);
    }

    #[test]
    fn history_off_is_ok_with_no_position() {
        let engine = start(r#"{"workers": 1}"#);
        let mut out = wspush_position { offset: 7, epoch_len: 7, epoch: [7; 17] };
        assert_eq!(send_positioned(engine, "a", &mut out), wspush_status::Ok);
        assert_eq!(out, wspush_position { offset: 0, epoch_len: 0, epoch: [0; 17] });
        wspush_engine_free(engine);
    }

    #[test]
    fn bad_arguments_and_the_wrong_thread_send_nothing() {
        let engine = start(r#"{"workers": 1, "history_size": 4}"#);
        assert_eq!(send_positioned(engine, "a", std::ptr::null_mut()), wspush_status::NullArgument);
        assert_eq!(last_error::read(), "`out` is NULL");
        let mut out = wspush_position { offset: 7, epoch_len: 7, epoch: [7; 17] };
        let untouched = out;
        assert_eq!(send_positioned(std::ptr::null(), "a", &mut out), wspush_status::NullArgument);
        assert_eq!(send_positioned(engine, "a/b", &mut out), wspush_status::InvalidId);
        {
            let _scope = CallbackScope::enter();
            assert_eq!(send_positioned(engine, "a", &mut out), wspush_status::WrongThread);
        }
        assert!(last_error::read().starts_with("wspush_engine_send_positioned was called from a callback"));
        assert_eq!(out, untouched);
        // Nothing of those reached the history: the next send to "a" is its first.
        assert_eq!(send_positioned(engine, "a", &mut out), wspush_status::Ok);
        assert_eq!(out.offset, 1);
        assert_eq!(wspush_engine_stop(engine, 1000), wspush_status::Ok);
        assert_eq!(send_positioned(engine, "a", &mut out), wspush_status::ShutDown);
        assert_eq!(out.offset, 1);
        wspush_engine_free(engine);
    }

    #[test]
    fn a_reload_needs_an_engine_that_serves_tls() {
        assert_eq!(wspush_engine_reload_tls(std::ptr::null()), wspush_status::NullArgument);
        assert_eq!(last_error::read(), "`engine` is NULL");
        let engine = start(r#"{"ws_listen": "127.0.0.1:0", "workers": 1}"#);
        assert_eq!(wspush_engine_reload_tls(engine), wspush_status::NoTls);
        assert_eq!(
            last_error::read(),
            "the engine serves no TLS (`tls_cert` and `tls_key` are not set): nothing to reload"
        );
        wspush_engine_free(engine);
    }
}
