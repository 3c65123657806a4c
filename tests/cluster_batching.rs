//! Cluster mode batches its Redis subscriptions: 10,000 ids connecting to one node and
//! leaving again cost a few SUBSCRIBE and UNSUBSCRIBE commands, as Redis's own
//! `INFO commandstats` counts them, not one each.
//!
//! A file of its own: its 10,000 client sockets stay clear of the other tests' descriptors
//! (the limit is 20,000 open files per process; the server is another process).

#[path = "support.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use support::*;

const IDS: usize = 10_000;
/// Upgrades in flight at once: below the listener's backlog (mio listens with 128), so
/// no SYN is dropped (a dropped SYN stalls its client for a second).
const IN_FLIGHT: usize = 100;

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}

/// Makes closing `stream` reset the connection (`SO_LINGER` 0) instead of leaving it in
/// TIME_WAIT: 10,000 TIME_WAIT ports per run would slow every later connect on the machine.
fn reset_on_close(stream: &TcpStream) {
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    // struct linger { l_onoff = 1, l_linger = 0 }
    let linger: [i32; 2] = [1, 0];
    // SAFETY: a valid socket and a pointer to a `struct linger` of the size given.
    let rc = unsafe { setsockopt(stream.as_raw_fd(), SOL_SOCKET, SO_LINGER, linger.as_ptr().cast(), 8) };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER): {}", std::io::Error::last_os_error());
}

/// Opens one raw WebSocket per id (`/websocket/id-{i}`), `IN_FLIGHT` upgrades at a time:
/// write every request of a batch, then read every answer head, which must be 101.
fn connect_ids(addr: SocketAddr, ids: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(ids);
    let mut start = 0;
    while start < ids {
        let batch: Vec<TcpStream> = (start..ids.min(start + IN_FLIGHT))
            .map(|i| {
                let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
                    .unwrap_or_else(|e| panic!("connecting client {i}: {e}"));
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(TIMEOUT)).unwrap();
                reset_on_close(&stream);
                let request = upgrade_request(&format!("/websocket/id-{i}"), "");
                stream.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("upgrade request {i}: {e}"));
                stream
            })
            .collect();
        for (i, mut stream) in (start..).zip(batch) {
            let mut head = Vec::new();
            let mut buf = [0u8; 512];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap_or_else(|e| panic!("reading the answer to {i}: {e}"));
                assert!(n > 0, "client {i}: the server closed before answering: {head:?}");
                head.extend_from_slice(&buf[..n]);
            }
            assert!(head.starts_with(b"HTTP/1.1 101 "), "client {i}: {}", String::from_utf8_lossy(&head));
            sockets.push(stream);
        }
        start += IN_FLIGHT;
    }
    sockets
}

#[test]
fn ten_thousand_ids_connecting_and_leaving_cost_few_subscribe_and_unsubscribe_commands() {
    let redis = RedisServer::start();
    let node = Server::start(&["--redis", &redis.url(), "--node-id", "bulk"]);
    eventually_eq(TIMEOUT, "GET /healthz", 200, || node.get("/healthz").status());
    let stats = || {
        let stats = server_stats(&node);
        (stats["ids"].as_u64().unwrap(), stats["cluster"]["subscribed_channels"].as_u64().unwrap())
    };
    // Only the broadcast channel so far.
    assert_eq!(stats(), (0, 1));

    let started = Instant::now();
    let sockets = connect_ids(node.ws_addr, IDS);
    let connected = started.elapsed();
    eventually_eq(TIMEOUT * 3, "(ids, subscribed_channels) in /stats", (IDS as u64, IDS as u64 + 1), stats);
    let subscribed = started.elapsed();
    // Redis itself sees every id's channel.
    assert_eq!(redis.channels("wspush:u:*").len(), IDS);
    assert_eq!((redis.numsub("wspush:u:id-0"), redis.numsub(&format!("wspush:u:id-{}", IDS - 1))), (1, 1));

    let leaving = Instant::now();
    drop(sockets);
    eventually_eq(TIMEOUT * 3, "(ids, subscribed_channels) in /stats", (0, 1), stats);
    assert_eq!(redis.channels("wspush:u:*"), Vec::<String>::new(), "Redis still has id channels");

    let (subscribes, unsubscribes) = (redis.command_calls("subscribe"), redis.command_calls("unsubscribe"));
    eprintln!(
        "{IDS} ids: connected in {connected:?}, all subscribed after {subscribed:?}, all unsubscribed \
         {:?} after leaving; Redis counted {subscribes} SUBSCRIBE and {unsubscribes} UNSUBSCRIBE",
        leaving.elapsed()
    );
    // The node's own counters agree with Redis.
    assert_eq!(server_counter(&node, "cluster.subscribe_commands"), subscribes);
    assert_eq!(server_counter(&node, "cluster.unsubscribe_commands"), unsubscribes);
    assert!(subscribes < 100, "{subscribes} SUBSCRIBE commands for {IDS} ids");
    assert!(unsubscribes < 100, "{unsubscribes} UNSUBSCRIBE commands for {IDS} ids");
}
