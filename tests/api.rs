//! The server binary's HTTP API, as a service pushing through it would use it: POST to an
//! id or to everyone, read `/stats`, `/metrics` and `/healthz`, authenticate with a token.

#[path = "support.rs"]
mod support;

use support::*;

/// A 200 answer to a push: `{"id": ID, "sockets": N, ...}` (`{"sockets": N, ...}` for a
/// broadcast).
fn assert_delivered(response: &HttpResponse, id: Option<&str>, sockets: u64) {
    assert_eq!(response.status(), 200, "{response:?}");
    let body = json(response);
    assert_eq!(body["sockets"].as_u64(), Some(sockets), "{response:?}");
    if let Some(id) = id {
        assert_eq!(body["id"].as_str(), Some(id), "{response:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_to_an_id_reaches_each_of_its_three_sockets_exactly_once() {
    let server = Server::start(&[]);
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(connect(&server.ws_url("456")).await);
    }
    let mut other = connect(&server.ws_url("457")).await;
    wait_connections(&server, 4);

    let response = server.post("/socket/456", "order 456 shipped");
    assert_delivered(&response, Some("456"), 3);
    for tab in &mut tabs {
        assert_eq!(recv_text(tab, TIMEOUT).await, "order 456 shipped");
    }

    assert_eq!(server.post("/socket/456", "sentinel").status(), 200);
    assert_eq!(server.post("/socket/457", "sentinel 457").status(), 200);
    for tab in &mut tabs {
        assert_eq!(recv_text(tab, TIMEOUT).await, "sentinel", "a socket got the message twice");
    }
    assert_eq!(recv_text(&mut other, TIMEOUT).await, "sentinel 457", "another id got the message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octet_stream_bodies_arrive_as_binary_messages() {
    let server = Server::start(&[]);
    let mut ws = connect(&server.ws_url("bin")).await;
    wait_connections(&server, 1);
    let data: Vec<u8> = (0..=255u8).rev().collect();
    let response = server.http("POST", "/socket/bin", &[("Content-Type", "application/octet-stream")], &data);
    assert_delivered(&response, Some("bin"), 1);
    assert_eq!(recv_binary(&mut ws, TIMEOUT).await, data);

    let response =
        server.http("POST", "/socket/bin", &[("Content-Type", "text/plain")], "caf\u{e9}".as_bytes());
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "caf\u{e9}");
}

#[test]
fn post_to_an_id_without_sockets_answers_zero() {
    let server = Server::start(&[]);
    let response = server.post("/socket/nobody", "hello?");
    assert_delivered(&response, Some("nobody"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_50_sockets_over_50_ids_exactly_once() {
    let server = Server::start(&[]);
    let mut sockets = Vec::new();
    for i in 0..50 {
        sockets.push(connect(&server.ws_url(&i.to_string())).await);
    }
    wait_connections(&server, 50);
    let response = server.post("/broadcast", "to everyone");
    assert_delivered(&response, None, 50);
    for ws in &mut sockets {
        assert_eq!(recv_text(ws, TIMEOUT).await, "to everyone");
    }
    assert_eq!(server.post("/broadcast", "sentinel").status(), 200);
    for ws in &mut sockets {
        assert_eq!(recv_text(ws, TIMEOUT).await, "sentinel", "a socket got the broadcast twice");
    }
}

#[test]
fn bad_ids_are_400_with_a_json_error() {
    let server = Server::start(&[]);
    for path in [format!("/socket/{}", "x".repeat(129)), "/socket/%FF".to_owned(), "/socket/a%2Fb".to_owned()]
    {
        let response = server.post(&path, "x");
        assert_eq!(response.status(), 400, "{path}: {response:?}");
        assert!(json(&response)["error"].is_string(), "{path}: {response:?}");
    }
    assert_eq!(server.get("/no/such/route").status(), 404);
}

#[test]
fn healthz_answers_200() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/healthz").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_carry_every_counter_and_nested_handshake_failures() {
    let server = Server::start(&["--workers", "2"]);
    let _ws = connect(&server.ws_url("s")).await;
    let request = upgrade_request("/websocket/s", "").replace("Version: 13", "Version: 12");
    assert_eq!(raw_exchange(server.ws_addr, request.as_bytes()).unwrap().status, 426);
    eventually_eq(TIMEOUT, "handshake_failures.bad_version", 1, || {
        server_counter(&server, "handshake_failures.bad_version")
    });

    let stats = server_stats(&server);
    for field in [
        "connections",
        "ids",
        "connections_opened",
        "messages_in",
        "bytes_in",
        "messages_out",
        "bytes_out",
        "slow_consumer_disconnects",
        "slow_consumer_drops",
        "idle_timeouts",
        "protocol_errors",
        "queue_full",
    ] {
        assert!(stats[field].is_u64(), "no counter {field} in {stats}");
    }
    for field in ["bad_request", "bad_version", "bad_path", "too_large", "timeout", "over_capacity", "io"] {
        assert!(stats["handshake_failures"][field].is_u64(), "no handshake_failures.{field} in {stats}");
    }
    assert_eq!((stats["connections"].as_u64(), stats["ids"].as_u64()), (Some(1), Some(1)), "{stats}");
    let per_worker = stats["worker_connections"].as_array().expect("worker_connections is a list");
    assert_eq!(per_worker.len(), 2, "{stats}");
    assert_eq!(per_worker.iter().filter_map(|n| n.as_u64()).sum::<u64>(), 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_one_open_connection() {
    let server = Server::start(&[]);
    let _ws = connect(&server.ws_url("m")).await;
    wait_connections(&server, 1);
    let response = server.get("/metrics");
    assert_eq!(response.status(), 200, "{response:?}");
    let text = response.text();
    assert!(
        text.lines().any(|line| line == "wspush_connections 1"),
        "no `wspush_connections 1` line in:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_is_required_when_set() {
    let server = Server::start(&["--api-token", "s3cret"]);
    let mut ws = connect(&server.ws_url("t")).await;
    wait_connections_with_token(&server, 1);

    let missing = server.post("/socket/t", "no token");
    assert_eq!(missing.status(), 401, "{missing:?}");
    assert!(json(&missing)["error"].is_string(), "{missing:?}");
    let wrong = server.http("POST", "/socket/t", &[("Authorization", "Bearer wrong")], b"wrong token");
    assert_eq!(wrong.status(), 401, "{wrong:?}");

    let right = server.http("POST", "/socket/t", &[("Authorization", "Bearer s3cret")], b"right token");
    assert_delivered(&right, Some("t"), 1);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "right token", "a refused request was delivered");
}

fn wait_connections_with_token(server: &Server, n: u64) {
    eventually_eq(TIMEOUT, "connections", Some(n), || {
        let response = server.http("GET", "/stats", &[("Authorization", "Bearer s3cret")], b"");
        json(&response)["connections"].as_u64()
    });
}
