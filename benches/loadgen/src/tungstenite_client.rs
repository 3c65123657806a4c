//! The second client kind (`--client tungstenite`): a client process whose WebSocket side is
//! tokio-tungstenite, not this repository's code, so a fault in the mio client's framing or
//! upgrade handling cannot hide in both. It opens the same sockets (`/websocket/{id}`, from
//! the same spread of loopback addresses, through `client::socket`), at most
//! [`MAX_IN_FLIGHT`] upgrades at once, and hands every message it reads to the same checks and
//! accounting as the mio client (`check::Tally`), speaking the same JSON lines to the parent:
//! progress while connecting, `connected`, `received` counts every 100 ms, a `report` on
//! `report K`, and exit on `quit` (or EOF).
//!
//! One thread (a current-thread runtime, one task per socket), as the mio client is one
//! thread. tungstenite answers pings itself (while reading); a slow client stops reading after
//! its upgrade, as the mio client's does.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::check::{self, Tally};
use crate::client::{emit, socket, spread_source, ClientPlan, V1_PROTOCOL};
use crate::clock::now_ns;

/// Upgrades in flight at once per process (as the mio client).
const MAX_IN_FLIGHT: usize = 256;

/// What the connection tasks and the command loop share (one thread: a `RefCell`).
struct Shared {
    tally: Tally,
    sockets: Vec<check::Socket>,
    /// Upgraded and not closed, per socket.
    open: Vec<bool>,
    connected: usize,
    failed: usize,
    failures: BTreeMap<String, u64>,
}

impl Shared {
    fn failed(&mut self, why: String) {
        self.failed += 1;
        *self.failures.entry(why).or_insert(0) += 1;
    }
}

/// Runs a client process until `quit`; returns the process exit code.
pub fn run(plan: ClientPlan) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wspush-bench client (tungstenite): {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run_inner(plan)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("wspush-bench client (tungstenite): {e}");
            1
        }
    }
}

async fn run_inner(plan: ClientPlan) -> io::Result<()> {
    let (commands_tx, mut commands) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if commands_tx.send(line).is_err() {
                return;
            }
        }
        let _ = commands_tx.send("quit".into());
    });

    let shared = Rc::new(RefCell::new(Shared {
        tally: plan.tally(),
        sockets: (0..plan.count).map(|_| check::Socket::default()).collect(),
        open: vec![false; plan.count],
        connected: 0,
        failed: 0,
        failures: BTreeMap::new(),
    }));
    let permits = Rc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Small buffers: up to 19,000 sockets per process (tungstenite's default read buffer is
    // 128 KiB a socket).
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    for i in 0..plan.count {
        let id = plan.id(i);
        let target = plan.targets[i % plan.targets.len()];
        let slow = plan.slow_every > 0 && id % plan.slow_every == 0;
        let source = plan.source.map(|base| spread_source(base, i));
        let url = format!("ws://{target}{}{id}", plan.path_prefix);
        let v1 = plan.v1;
        shared.borrow_mut().sockets[i].slow = slow;
        let (shared, permits) = (shared.clone(), permits.clone());
        tokio::task::spawn_local(async move {
            let permit = permits.acquire().await.expect("never closed");
            let stream = match socket(target, source, slow) {
                Ok(socket) => TcpSocket::from_std_stream(socket.into()).connect(target).await,
                Err(e) => Err(e),
            };
            let stream = match stream {
                Ok(stream) => stream,
                Err(e) => return shared.borrow_mut().failed(e.kind().to_string()),
            };
            let _ = stream.set_nodelay(true);
            let mut request = match url.into_client_request() {
                Ok(request) => request,
                Err(e) => return shared.borrow_mut().failed(format!("request: {e}")),
            };
            if v1 {
                request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(V1_PROTOCOL));
            }
            let mut ws = match tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
            {
                Ok((_, response))
                    if v1
                        && response.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok())
                            != Some(V1_PROTOCOL) =>
                {
                    return shared.borrow_mut().failed(format!("{V1_PROTOCOL} not selected"))
                }
                Ok((ws, _response)) => ws,
                Err(WsError::Http(response)) => {
                    return shared.borrow_mut().failed(format!("status {}", response.status().as_u16()))
                }
                Err(WsError::Io(e)) => return shared.borrow_mut().failed(e.kind().to_string()),
                Err(e) => return shared.borrow_mut().failed(format!("upgrade: {e}")),
            };
            drop(permit);
            {
                let mut shared = shared.borrow_mut();
                shared.connected += 1;
                shared.open[i] = true;
            }
            if slow {
                // Stops reading: the server's queue for it grows until its limit applies.
                std::future::pending::<()>().await;
            }
            read(&mut ws, id as u32, i, v1, &shared).await;
            shared.borrow_mut().open[i] = false;
        });
    }

    let started = Instant::now();
    let mut connect_seconds = None;
    let mut last_progress = Instant::now();
    let mut reported_deliveries = u64::MAX;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            command = commands.recv() => {
                let command = command.unwrap_or_else(|| "quit".into());
                let mut words = command.split_whitespace();
                match words.next() {
                    Some("quit") => return Ok(()),
                    Some("report" | "report-range") => {
                        let expect = check::Expect::from_command(&command).expect("a report command");
                        let mut guard = shared.borrow_mut();
                        let Shared { tally, sockets, open, connected, .. } = &mut *guard;
                        let seen = sockets
                            .iter_mut()
                            .zip(open.iter())
                            .enumerate()
                            .map(|(i, (socket, &open))| (plan.id(i) as u32, socket, open));
                        emit(check::report(seen, tally, expect, *connected, plan.v1));
                        *tally = tally.next_phase();
                        reported_deliveries = u64::MAX;
                    }
                    _ => eprintln!("wspush-bench client: unknown command {command:?}"),
                }
            }
            _ = tick.tick() => {}
        }
        let state = shared.borrow();
        if connect_seconds.is_none() {
            if state.connected + state.failed == plan.count {
                let seconds = started.elapsed().as_secs_f64();
                connect_seconds = Some(seconds);
                emit(json!({"type": "connected", "connected": state.connected, "failed": state.failed,
                            "seconds": seconds, "failures": state.failures}));
            } else if last_progress.elapsed() >= Duration::from_millis(200) {
                last_progress = Instant::now();
                emit(json!({"type": "progress", "connected": state.connected, "failed": state.failed}));
            }
        } else if last_progress.elapsed() >= Duration::from_millis(100)
            && state.tally.good != reported_deliveries
        {
            last_progress = Instant::now();
            reported_deliveries = state.tally.good;
            emit(json!({"type": "received", "count": state.tally.good}));
        }
    }
}

/// Reads socket `index` (connected as `id`) until it closes, handing every message to the
/// shared tally.
async fn read<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    id: u32,
    index: usize,
    v1: bool,
    shared: &RefCell<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(message) = ws.next().await {
        let mut guard = shared.borrow_mut();
        let Shared { tally, sockets, .. } = &mut *guard;
        match message {
            Ok(Message::Text(text)) => tally.frame(text.as_bytes(), id, now_ns(), &mut sockets[index], v1),
            Ok(Message::Binary(data)) => tally.frame(&data, id, now_ns(), &mut sockets[index], v1),
            // Answered by tungstenite itself, with the next read.
            Ok(Message::Ping(_)) => tally.pings += 1,
            Ok(Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Close(frame)) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                tally.closed(format!("close {code}"));
                return;
            }
            Err(WsError::Io(_) | WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                tally.closed("eof");
                return;
            }
            Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => {
                tally.closed("eof");
                return;
            }
            // A frame the client could not accept (masked, a bad opcode, bad UTF-8, too big).
            Err(_) => {
                tally.bad_frames += 1;
                return;
            }
        }
    }
    // The stream ended without a close frame.
    shared.borrow_mut().tally.closed("eof");
}
