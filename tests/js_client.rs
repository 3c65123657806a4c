//! The browser client (`clients/js/wspush.js`) under Node.js: its backoff schedule (bounds,
//! cap, jitter, and its declared types: `tests/js/backoff.mjs`), and a thousand clients of it
//! reconnecting after their server is killed and restarted (`tests/js/storm.mjs`): their
//! attempts spread over time instead of arriving at once, and all of them are back within
//! the bound. Also: the server serves the client, and its copy inside the engine crate is
//! the same bytes.
//!
//! Needs Node.js 20 or later (`scripts/ensure-tools.sh` installs it); without it the Node
//! tests skip with a message, unless `WSPUSH_REQUIRE_NODE=1` (set by `scripts/test.sh`).

#[path = "support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// The client's canonical source.
const CLIENT: &str = include_str!("../clients/js/wspush.js");

fn node_present() -> bool {
    tool_present_or_skip("the JavaScript client test", node_missing(), "WSPUSH_REQUIRE_NODE")
}

/// The engine crate builds from its own files only (`cargo package`), so it holds a copy of
/// the client: the same bytes, and what `GET /client.js` serves, to any origin, without the
/// API token.
#[test]
fn the_server_serves_the_client_byte_for_byte() {
    assert!(
        CLIENT == include_str!("../engine/src/bin/wspush/client.js"),
        "engine/src/bin/wspush/client.js differs from clients/js/wspush.js: \
         cp clients/js/wspush.js engine/src/bin/wspush/client.js"
    );
    let server = Server::start(&["--api-token", "secret"]);
    let response = server.get("/client.js");
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(response.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(response.text(), CLIENT);
}

#[test]
fn the_backoff_is_capped_and_jittered_within_its_bounds() {
    if !node_present() {
        return;
    }
    let output =
        node_command().arg(workspace_root().join("tests/js/backoff.mjs")).output().expect("cannot run node");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tests/js/backoff.mjs failed ({}):\n{stderr}", output.status);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "backoff: every check passed", "{stderr}");
}

/// What one client of the storm did after its connection ended (ms since the first client
/// saw its end).
struct Reconnect {
    /// When it saw its connection end.
    closed: f64,
    /// Its attempts, the successful one last.
    attempts: Vec<f64>,
    reopened: f64,
}

/// The most of `times` that fall in any window of `width` ms.
fn most_in_a_window(times: &[f64], width: f64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut most = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= width {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

const CLIENTS: usize = 1000;

#[test]
fn a_thousand_clients_reconnect_spread_over_time_after_their_server_restarts() {
    if !node_present() {
        return;
    }
    let ws_listen = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(&["--ws-listen", &ws_listen]);
    let mut storm = node_command()
        .arg(workspace_root().join("tests/js/storm.mjs"))
        .arg(format!("ws://{ws_listen}"))
        .arg(CLIENTS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run node");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = storm.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let storm_errors = Transcript::default();
    collect_lines(storm.stderr.take().unwrap(), storm_errors.clone(), "storm.mjs| ");
    let next_line = |what: &str, timeout: Duration| -> String {
        lines.recv_timeout(timeout).unwrap_or_else(|_| {
            panic!("storm.mjs did not report {what} within {timeout:?}:\n{}", storm_errors.text())
        })
    };

    let open = next_line("its clients open", Duration::from_secs(60));
    assert_eq!(open, format!("{{\"open\":{CLIENTS}}}"));
    assert_eq!(server_counter(&server, "connections"), CLIENTS as u64);

    // The server crashes, and is back on its port after the outage: the clients' first
    // attempts (spread over the first wait, up to 1 s) fail, and they keep trying.
    server.kill9();
    let killed = Instant::now();
    thread::sleep(Duration::from_millis(1500)); // the length of the outage, not a wait for an event
    let _server = Server::start(&["--ws-listen", &ws_listen]);
    let restarted_after = killed.elapsed().as_secs_f64() * 1000.0;

    let report = next_line("every client reconnected", Duration::from_secs(60));
    let status = wait_timeout(&mut storm, TIMEOUT);
    assert!(status.is_some_and(|s| s.success()), "storm.mjs: {status:?}\n{}", storm_errors.text());
    let report: serde_json::Value = serde_json::from_str(&report).expect("storm.mjs's report is JSON");
    let reconnects: Vec<Reconnect> = report["clients"]
        .as_array()
        .expect("a list of clients")
        .iter()
        .map(|c| Reconnect {
            closed: c["closed"].as_f64().unwrap(),
            attempts: c["attempts"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect(),
            reopened: c["reopened"].as_f64().unwrap(),
        })
        .collect();
    assert_eq!(reconnects.len(), CLIENTS);

    // The schedule, as each client lived it: its first attempt within 1 s of losing its
    // connection, and each next one within the doubled ceiling (1 s, 2 s, 4 s, ... capped at
    // 30 s) of the one before, give or take the failed attempt's own time and a loaded
    // machine's timer lateness.
    let slack = 250.0;
    let ceiling = |attempt: usize| (1000.0 * 2f64.powi(attempt.min(16) as i32)).min(30_000.0);
    for (i, r) in reconnects.iter().enumerate() {
        assert!(
            r.attempts[0] - r.closed < ceiling(0) + slack,
            "client {i}: {:?} after its close at {}",
            r.attempts,
            r.closed
        );
        for (n, pair) in r.attempts.windows(2).enumerate() {
            assert!(pair[1] - pair[0] < ceiling(n + 1) + slack, "client {i}: attempts {:?}", r.attempts);
        }
        // Only attempts made while the server was down failed: the first after it is back
        // succeeds, so each client is back within one (capped) wait of the restart.
        let failed = &r.attempts[..r.attempts.len() - 1];
        assert!(
            failed.iter().all(|&t| t < restarted_after + slack),
            "client {i}: an attempt after the restart at {restarted_after:.0} ms failed: {:?}",
            r.attempts
        );
        assert!(r.reopened >= *r.attempts.last().unwrap());
    }
    let first_attempts: Vec<f64> = reconnects.iter().map(|r| r.attempts[0]).collect();
    let last_reopen = reconnects.iter().map(|r| r.reopened).fold(0.0, f64::max);
    assert!(
        last_reopen < restarted_after + ceiling(usize::MAX) + slack,
        "the last client reconnected {last_reopen:.0} ms after the crash; the server was back at {restarted_after:.0} ms"
    );

    // Spread: no 100 ms window holds more than a fifth of the first attempts (evenly spread
    // over 1 s it would hold a tenth), nor of the successful reconnects; the first attempts
    // span most of the 1 s jitter interval.
    let width = 100.0;
    let crowd = most_in_a_window(&first_attempts, width);
    assert!(crowd <= CLIENTS / 5, "{crowd} of {CLIENTS} first attempts within {width} ms");
    let reopens: Vec<f64> = reconnects.iter().map(|r| r.reopened).collect();
    let reopen_crowd = most_in_a_window(&reopens, width);
    assert!(reopen_crowd <= CLIENTS / 5, "{reopen_crowd} of {CLIENTS} reconnects within {width} ms");
    let (earliest, latest) =
        first_attempts.iter().fold((f64::MAX, 0.0_f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    assert!(latest - earliest >= 800.0, "first attempts span only {earliest:.0}..{latest:.0} ms");
    let attempts: usize = reconnects.iter().map(|r| r.attempts.len()).sum();
    eprintln!(
        "storm: {CLIENTS} clients, server back after {restarted_after:.0} ms; first attempts {earliest:.0}..{latest:.0} ms \
         (at most {crowd} in {width} ms), all back by {last_reopen:.0} ms (at most {reopen_crowd} in {width} ms), \
         {attempts} attempts in all"
    );
}
