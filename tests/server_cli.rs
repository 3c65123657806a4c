//! The `wspush` command line: bad settings exit 2 naming the setting, `--help` exits 0,
//! the startup lines carry the bound addresses, flags reach the engine.

#[path = "support.rs"]
mod support;

use support::*;

/// Runs `wspush ARGS` and checks it exits 2 with a message naming one of `names`.
fn refused(args: &[&str], names: &[&str]) {
    let out = run_server_binary(args);
    assert_eq!(out.status.code(), Some(2), "wspush {args:?}: {out:?}");
    let all = out.all();
    assert!(names.iter().any(|name| all.contains(name)), "wspush {args:?} does not name {names:?}:\n{all}");
}

#[test]
fn workers_0_exits_2_naming_the_setting() {
    refused(&["--workers", "0"], &["workers"]);
}

#[test]
fn an_unknown_slow_consumer_policy_exits_2_naming_the_setting() {
    refused(&["--slow-consumer", "maybe"], &["slow-consumer", "slow_consumer"]);
}

#[test]
fn a_size_that_is_not_a_number_exits_2_naming_the_setting() {
    refused(&["--max-message-size", "lots"], &["max-message-size", "max_message_size"]);
}

#[test]
fn an_unknown_key_in_the_config_file_exits_2_naming_it() {
    let path = std::env::temp_dir().join(format!("wspush-test-{}-unknown-key.toml", std::process::id()));
    std::fs::write(&path, "bogus_key = 1\n").unwrap();
    let out = run_server_binary(&["--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.all().contains("bogus_key"), "the error does not name `bogus_key`:\n{}", out.all());
}

#[test]
fn help_exits_0_and_lists_the_flags() {
    let out = run_server_binary(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for flag in ["--ws-listen", "--api-listen", "--workers", "--slow-consumer", "--api-token", "--config"] {
        assert!(out.stdout.contains(flag), "--help does not mention {flag}:\n{}", out.stdout);
    }
}

#[test]
fn startup_lines_carry_the_bound_addresses() {
    let server = Server::start(&[]);
    assert!(server.ws_addr.ip().is_loopback() && server.ws_addr.port() != 0);
    assert!(server.api_addr.ip().is_loopback() && server.api_addr.port() != 0);
    assert_ne!(server.ws_addr, server.api_addr);
    assert_eq!(server.ws_prefix, "/websocket/");
    assert_eq!(server.get("/healthz").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_flag_sends_messages_back() {
    let server = Server::start(&["--echo"]);
    let mut ws = connect(&server.ws_url("e")).await;
    send_text(&mut ws, "ping?").await;
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "ping?");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_flag_refuses_the_next_upgrade_with_503() {
    let server = Server::start(&["--max-connections", "1"]);
    let _ws = connect(&server.ws_url("one")).await;
    wait_connections(&server, 1);
    let head = raw_exchange(server.ws_addr, upgrade_request("/websocket/two", "").as_bytes()).unwrap();
    assert_eq!(head.status, 503, "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_message_size_flag_closes_bigger_messages_with_1009() {
    let server = Server::start(&["--max-message-size", "100"]);
    let mut ws = connect(&server.ws_url("big")).await;
    send_text(&mut ws, &"x".repeat(101)).await;
    assert_eq!(expect_close(&mut ws).await, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_prefix_flag_moves_the_upgrade_url() {
    let server = Server::start(&["--path-prefix", "/ws/"]);
    assert_eq!(server.ws_prefix, "/ws/");
    let head = raw_exchange(server.ws_addr, upgrade_request("/websocket/a", "").as_bytes()).unwrap();
    assert_eq!(head.status, 404, "{head:?}");
    let mut ws = connect(&server.ws_url("a")).await;
    wait_connections(&server, 1);
    assert_eq!(server.post("/socket/a", "moved").status(), 200);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "moved");
}

#[test]
fn check_accepts_the_example_config_and_exits_0_without_serving() {
    let example = workspace_root().join("docs/wspush.example.toml");
    let out = run_server_binary(&["--config", example.to_str().unwrap(), "--check"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, "wspush: the settings are valid\n", "{out:?}");
    // It printed no listening line: it did not start.
    assert!(!out.all().contains("listening"), "{}", out.all());
}

#[test]
fn check_refuses_a_bad_setting_with_exit_2_naming_it() {
    let path = std::env::temp_dir().join(format!("wspush-test-{}-check.toml", std::process::id()));
    std::fs::write(&path, "# from the example, edited\nmax_headers = \"many\"\n").unwrap();
    let out = run_server_binary(&["--config", path.to_str().unwrap(), "--check"]);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.starts_with("wspush: invalid max_headers in "), "{out:?}");
}

#[test]
fn example_config_prints_the_committed_example() {
    let out = run_server_binary(&["--example-config"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let committed = std::fs::read_to_string(workspace_root().join("docs/wspush.example.toml")).unwrap();
    assert!(out.stdout == committed, "docs/wspush.example.toml differs from `wspush --example-config`");
}
