//! The load generator against the real server, small: every scenario path it reports on
//! (Redis compat, envelope, HTTP, in-process, broadcast) must count exactly what arrived, and
//! bad arguments must fail with exit code 2 and a message. Speed is not checked here.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    let wspush = wspush_tests::server_binary();
    Command::new(env!("CARGO_BIN_EXE_wspush-bench"))
        .args(args)
        .args(["--quiet", "--stall", "20", "--wspush-bin"])
        .arg(wspush)
        .output()
        .expect("wspush-bench runs")
}

/// Runs a scenario that must succeed; returns its JSON line.
fn result(args: &[&str]) -> Value {
    let output = bench(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "wspush-bench {args:?} failed ({}):\n{stderr}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no JSON line; stderr:\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn assert_exactly_once(result: &Value, deliveries: u64) {
    assert_eq!(result["deliveries"], deliveries, "{result}");
    assert_eq!(result["missing"], 0, "{result}");
    assert_eq!(result["duplicates"], 0, "{result}");
    assert_eq!(result["misrouted"], 0, "{result}");
    assert_eq!(result["publish_errors"], 0, "{result}");
    assert_eq!(result["exact"], true, "{result}");
    assert!(result["server_cpu_s"].as_f64().is_some(), "{result}");
    assert!(result["latency_p99_ms"].as_f64().unwrap() > 0.0, "{result}");
}

#[test]
fn unicast_through_redis_in_the_original_format_is_counted_exactly() {
    let r = result(&["unicast", "--connections", "60", "--messages", "3000", "--via", "redis-compat"]);
    assert_eq!(r["connected"], 60, "{r}");
    assert_exactly_once(&r, 3000);
    assert_eq!(r["redis_publishes"], 3000, "Redis saw every PUBLISH: {r}");
}

#[test]
fn the_tungstenite_client_counts_unicast_through_redis_exactly() {
    let r = result(&[
        "unicast",
        "--client",
        "tungstenite",
        "--connections",
        "60",
        "--messages",
        "3000",
        "--via",
        "redis-compat",
    ]);
    assert_eq!(r["client"], "tungstenite", "{r}");
    assert_eq!(r["connected"], 60, "{r}");
    assert_exactly_once(&r, 3000);
    assert!(r["faults"].as_object().unwrap().values().all(|v| v == 0), "{r}");
}

#[test]
fn the_tungstenite_client_counts_a_fixed_rate_and_broadcasts_exactly() {
    let r = result(&[
        "latency",
        "--client",
        "tungstenite",
        "--connections",
        "40",
        "--rate",
        "2000",
        "--duration",
        "1",
    ]);
    assert_eq!(r["client"], "tungstenite", "{r}");
    assert_exactly_once(&r, 2000);
    let r = result(&[
        "broadcast",
        "--client",
        "tungstenite",
        "--connections",
        "50",
        "--broadcasts",
        "10",
        "--via",
        "http",
    ]);
    assert_exactly_once(&r, 50 * 10);
}

#[test]
fn unicast_over_http_with_redis_publishes_every_send() {
    let r =
        result(&["unicast", "--via", "http", "--with-redis", "--connections", "40", "--messages", "1000"]);
    assert_eq!(r["with_redis"], true, "{r}");
    assert_exactly_once(&r, 1000);
    assert_eq!(r["redis_publishes"], 1000, "every POST went through Redis too: {r}");
    assert_eq!(r["client"], "mio", "the default client: {r}");
}

#[test]
fn unicast_through_envelopes_on_two_nodes_is_counted_exactly() {
    let r = result(&[
        "unicast",
        "--connections",
        "60",
        "--messages",
        "2000",
        "--nodes",
        "2",
        "--via",
        "redis-envelope",
    ]);
    assert_exactly_once(&r, 2000);
}

#[test]
fn broadcast_through_the_http_api_reaches_every_socket_once() {
    let r = result(&["broadcast", "--connections", "150", "--broadcasts", "20", "--via", "http"]);
    assert_exactly_once(&r, 150 * 20);
    assert_eq!(r["broadcasts"], 20);
    assert_eq!(r["mode"], "burst", "{r}");
    assert!(r.get("achieved_rate").is_none(), "a burst has no rate: {r}");
}

#[test]
fn a_paced_broadcast_is_reported_as_sustained_with_its_achieved_rate() {
    let r =
        result(&["broadcast", "--connections", "200", "--rate", "50", "--duration", "2", "--via", "http"]);
    assert_eq!(r["mode"], "sustained", "{r}");
    assert_eq!(r["broadcasts"], 100, "50/s for 2 s: {r}");
    assert_exactly_once(&r, 200 * 100);
    assert_eq!(r["rate"], 50.0, "{r}");
    assert_eq!(r["duration_s"], 2.0, "{r}");
    let achieved = r["achieved_rate"].as_f64().unwrap();
    // Paced, not a burst: 99 intervals take about 2 s (a burst would take milliseconds).
    assert!(achieved > 0.0 && achieved < 60.0, "{r}");
    assert!(r["publish_seconds"].as_f64().unwrap() > 1.5, "{r}");
    // At 50 broadcasts/s the server keeps pace: the last one is delivered within moments of
    // being sent, not seconds later.
    let drained = r["drained_after_publish_ms"].as_f64().unwrap();
    assert!((0.0..1000.0).contains(&drained), "{r}");
    assert!(r["rate_kept"].is_boolean(), "{r}");
    for p in ["latency_p50_ms", "latency_p999_ms", "latency_max_ms"] {
        assert!(r[p].as_f64().is_some(), "{p}: {r}");
    }
}

#[test]
fn in_process_sends_and_a_fixed_rate_are_counted_exactly() {
    let r =
        result(&["latency", "--connections", "40", "--rate", "2000", "--duration", "1", "--via", "inproc"]);
    assert_exactly_once(&r, 2000);
    assert_eq!(r["rate"], 2000.0);
}

#[test]
fn the_cluster_scenario_reports_redis_round_trips() {
    let r = result(&["cluster", "--connections", "40", "--messages", "2000"]);
    assert_exactly_once(&r, 2000);
    assert_eq!(r["node_publishes"], 2000, "{r}");
    let trips = r["redis_round_trips_per_1000_publishes"].as_f64().unwrap();
    assert!(trips > 0.0 && trips <= 1000.0, "{r}");
    assert!(r["connect_storm_subscribe_commands"].as_u64().unwrap() >= 1, "{r}");
}

#[test]
fn the_cluster_scenario_sends_in_process_on_both_nodes() {
    let r = result(&["cluster", "--connections", "40", "--messages", "3001", "--via", "inproc"]);
    assert_exactly_once(&r, 3001);
    assert_eq!(r["node_publishes"], 3001, "{r}");
    assert_eq!(r["server_delivery_dropped"], 0, "{r}");
}

#[test]
fn idle_connections_are_held_and_measured() {
    let r = result(&["idle", "--connections", "300", "--duration", "3"]);
    assert_eq!(r["connected"], 300, "{r}");
    assert_eq!(r["server_connections"], 300, "{r}");
    assert_eq!(r["closed_while_held"], 0, "{r}");
    assert_eq!(r["exact"], true, "{r}");
    assert!(r["pings_answered"].as_u64().unwrap() >= 300, "pings every 2 s over 3 s: {r}");
    assert!(r["server_rss_bytes_per_connection"].as_f64().is_some(), "{r}");
}

#[test]
fn the_baseline_runs_when_its_dependencies_are_installed() {
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../baseline/node_modules/ws").exists();
    if !installed {
        assert!(
            std::env::var_os("WSPUSH_REQUIRE_NODE").is_none(),
            "WSPUSH_REQUIRE_NODE is set but benches/baseline has no node_modules: run `npm ci` there"
        );
        eprintln!("skipped: benches/baseline has no node_modules (npm ci)");
        return;
    }
    let r = result(&["unicast", "--target", "baseline", "--connections", "50", "--messages", "1000"]);
    assert_exactly_once(&r, 1000);
    assert_eq!(r["target"], "baseline");
}

#[test]
fn the_uws_baseline_runs_when_bun_is_installed() {
    let installed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../baseline-bun/node_modules/.bin/bun").exists();
    if !installed {
        assert!(
            std::env::var_os("WSPUSH_REQUIRE_NODE").is_none(),
            "WSPUSH_REQUIRE_NODE is set but benches/baseline-bun has no bun: run `npm ci` there"
        );
        eprintln!("skipped: benches/baseline-bun has no node_modules (npm ci)");
        return;
    }
    let r = result(&["unicast", "--target", "uws", "--connections", "50", "--messages", "1000"]);
    assert_exactly_once(&r, 1000);
    assert_eq!(r["target"], "uws");
    // The load generator pipelines its POSTs, which Bun.serve closes the connection on if a
    // response before them is still pending: the server must answer them at once.
    let r =
        result(&["unicast", "--target", "uws", "--via", "http", "--connections", "50", "--messages", "2000"]);
    assert_exactly_once(&r, 2000);
    let r = result(&[
        "broadcast",
        "--target",
        "uws",
        "--connections",
        "50",
        "--broadcasts",
        "10",
        "--via",
        "http",
    ]);
    assert_exactly_once(&r, 50 * 10);
    let output = bench(&["unicast", "--target", "uws", "--via", "inproc"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_arguments_exit_2_with_a_reason() {
    let output = bench(&["unicast", "--size", "3"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--size must be at least 33 bytes"));
    let output = bench(&["unicast", "--target", "baseline", "--via", "inproc"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the baseline cannot be reached --via inproc"));
    let output = bench(&["broadcast", "--via", "redis-compat"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("use --via redis-envelope"));
}

#[test]
fn a_fleet_is_held_through_a_round_of_pings_before_its_storms() {
    let r = result(&[
        "fleet",
        "--nodes",
        "2",
        "--connections",
        "200",
        "--broadcasts",
        "2",
        "--messages",
        "400",
        "--duration",
        "6",
    ]);
    assert_eq!(r["exact"], true, "{r}");
    assert_eq!(r["connected"], 200, "{r}");
    assert_eq!(r["closed_while_held"], 0, "{r}");
    assert_eq!(r["ping_rounds_expected"], 1, "{r}");
    assert!(r["pings_answered"].as_u64().unwrap() >= 200, "one ping per socket in 6 s: {r}");
    assert_eq!(r["faults"]["unanswered_pings"], 0, "{r}");
    assert_eq!(r["broadcast_deliveries"], 400, "{r}");
    assert_eq!(r["unicast_deliveries"], 400, "{r}");
}

#[test]
fn unicast_with_history_and_v1_clients_is_positioned_and_exact() {
    for client in ["mio", "tungstenite"] {
        let r = result(&[
            "unicast",
            "--via",
            "http",
            "--history-size",
            "100",
            "--v1",
            "--client",
            client,
            "--connections",
            "60",
            "--messages",
            "2000",
        ]);
        assert_exactly_once(&r, 2000);
        assert_eq!((&r["v1"], &r["history_size"]), (&Value::from(true), &Value::from(100)), "{r}");
        assert_eq!(r["pos_signals"], 60, "every socket had its !pos: {r}");
        assert_eq!(r["server_history_appended"], 2000, "{r}");
        for fault in ["position_gaps", "position_repeats", "epoch_changes", "lost_signals", "unpositioned"] {
            assert_eq!(r["faults"][fault], 0, "{fault}: {r}");
        }
    }
}

/// The resume storm, small: every client gets exactly what it missed, then the live ones.
fn assert_resumed(r: &Value, clients: u64, expected: u64) {
    assert_eq!(r["exact"], true, "{r}");
    assert_eq!(r["connected"], clients, "{r}");
    assert_eq!(r["reconnected"], clients, "{r}");
    assert_eq!(r["resumed_clients"], clients, "{r}");
    assert_eq!(r["replay_pending_clients"], 0, "{r}");
    assert_eq!(r["expected"], expected, "{r}");
    assert_eq!(r["deliveries"], expected, "{r}");
    assert_eq!(r["missing"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert!(r["replay_seconds"].as_f64().is_some(), "{r}");
    assert!(r["server_cpu_s"].as_f64().is_some() && r["server_rss_peak_mib"].as_f64().is_some(), "{r}");
    assert!(r["faults"].as_object().unwrap().values().all(|v| v == 0), "{r}");
}

#[test]
fn a_resume_storm_of_v1_clients_on_one_id_replays_exactly() {
    // The live ones paced over about 0.2 s, so they span the reconnects: some are replayed,
    // some arrive live after a socket's `!pos`, and the seam must show no gap or repeat.
    let r = result(&[
        "resume",
        "--connections",
        "200",
        "--ids",
        "1",
        "--messages",
        "150",
        "--live",
        "20",
        "--rate",
        "100",
    ]);
    // Every client: the 150 it missed, then the 20 live ones.
    assert_resumed(&r, 200, 200 * 170);
    assert_eq!(r["v1"], true, "{r}");
    assert_eq!(r["positioned"], 200, "{r}");
    assert_eq!(r["replayed_deliveries_expected"], 200 * 150, "{r}");
    assert_eq!(r["server_history_resumes"], 200, "{r}");
    assert_eq!(r["server_history_appended"], 170, "{r}");
    assert!(r["server_history_replayed"].as_u64().unwrap() >= 200 * 150, "{r}");
    assert_eq!(r["pos_signals"], 200, "one !pos after each replay: {r}");
}

#[test]
fn a_resume_storm_of_v1_clients_on_their_own_ids_replays_exactly() {
    let r = result(&["resume", "--connections", "150", "--messages", "450", "--live", "150"]);
    assert_resumed(&r, 150, 600);
    assert_eq!(r["ids"], 150, "{r}");
    assert_eq!(r["replayed_deliveries_expected"], 450, "{r}");
}

#[test]
fn plain_clients_resume_from_the_position_the_api_gave() {
    let r = result(&["resume", "--plain", "--connections", "100", "--ids", "10", "--messages", "200"]);
    // 10 clients per id; each id gets 20 missed and 10 of the 100 live messages.
    assert_resumed(&r, 100, 100 * 30);
    assert!(r.get("v1").is_none(), "{r}");
    assert_eq!(r["server_history_resumes"], 100, "{r}");
    let r = result(&[
        "resume",
        "--plain",
        "--no-since",
        "--connections",
        "100",
        "--ids",
        "10",
        "--messages",
        "200",
    ]);
    // Without since: only the live ones.
    assert_resumed(&r, 100, 100 * 10);
    assert_eq!(r["server_history_resumes"], 0, "{r}");
}

#[test]
fn history_options_are_checked() {
    let output = bench(&["unicast", "--via", "http", "--v1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--v1 needs history on"));
    let output = bench(&["unicast", "--target", "baseline", "--history-size", "10"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("the baselines have no history"));
    let output = bench(&["resume", "--target", "uws"]);
    assert_eq!(output.status.code(), Some(2));
    let output = bench(&["resume", "--client", "tungstenite"]);
    assert_eq!(output.status.code(), Some(2));
    let output = bench(&["resume", "--connections", "10", "--ids", "11"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn history_through_redis_is_positioned_and_resumes_exactly() {
    let r = result(&[
        "unicast",
        "--via",
        "http",
        "--with-redis",
        "--history-size",
        "100",
        "--v1",
        "--connections",
        "60",
        "--messages",
        "1500",
    ]);
    assert_exactly_once(&r, 1500);
    assert_eq!(r["pos_signals"], 60, "{r}");
    assert_eq!(r["server_history_appends"], 1500, "every POST appended in Redis: {r}");
    let r = result(&["resume", "--with-redis", "--connections", "200", "--ids", "1", "--messages", "100"]);
    assert_resumed(&r, 200, 200 * 200);
    assert_eq!(r["server_history_resumes"], 200, "{r}");
    assert_eq!(r["server_history_appends"], 200, "{r}");
    assert!(r["server_history_reads"].as_u64().unwrap() >= 1, "{r}");
}
