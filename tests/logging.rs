//! What clients control cannot forge log lines: an id is percent-decoded from the upgrade
//! path, so it may hold CR, LF or escape sequences, and every line that names it must show
//! them escaped. Checked on the server binary's own log at debug level.

#[path = "support.rs"]
mod support;

use support::*;

/// The percent-encoded id of a client that tries to start a log line of its own.
const FORGING_ID: &str = "a%0d%0aFAKE%20line%1b%5b31m";

/// Whether a line of the server's log (as `Server::output` marks it) starts with the text
/// the forging id puts after its CR LF.
fn forged(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|line| line.trim_start_matches("err| ").trim_start_matches("out| ").starts_with("FAKE"))
        .collect()
}

#[test]
fn an_id_with_cr_lf_does_not_forge_a_log_line() {
    let server = Server::start(&["--log", "debug", "--max-inbound-messages-per-second", "2"]);
    let path = format!("{}{FORGING_ID}", server.ws_prefix);

    // A protocol error (an unmasked frame) logs the id of the socket.
    let mut ws = RawWs::connect(server.ws_addr, &path);
    ws.write_raw(&encode_frame(true, opcode::TEXT, b"not masked", None)).unwrap();
    assert_eq!(ws.read_until_close(|_| {}), Ending::Close(Some(1002)));
    eventually(TIMEOUT, "the protocol error in the log", || server.output().contains("protocol error"));

    // So does going over the inbound rate.
    let mut ws = RawWs::connect(server.ws_addr, &path);
    for _ in 0..4 {
        ws.send(true, opcode::PING, b"").unwrap();
    }
    assert_eq!(ws.read_until_close(|_| {}), Ending::Close(Some(1008)));
    eventually(TIMEOUT, "the rate limit in the log", || {
        server.output().contains("inbound rate limit exceeded")
    });

    let output = server.output();
    assert_eq!(forged(&output), Vec::<&str>::new(), "forged log lines in:\n{output}");
    assert!(!output.contains('\u{1b}'), "a raw escape sequence in the log:\n{output}");
    // Escaped, the id is still there for whoever reads the log.
    assert!(output.contains(r"a\r\nFAKE line\u{1b}[31m"), "the escaped id is not in the log:\n{output}");
}
