//! Running the C programs of `bindings/c/` and checking what a user would: the example's
//! session with a real client, exactly its output. Shared by `tests/ffi_c.rs` (built from
//! the source tree) and `tests/dist.rs` (built from the distribution through pkg-config).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// Bound on every wait here: valgrind makes the C programs many times slower.
pub const SLOW_TIMEOUT: Duration = Duration::from_secs(90);

/// A C program running, its stdout read line by line, its stdin a pipe for commands.
pub struct Program {
    child: std::process::Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: thread::JoinHandle<String>,
}

impl Program {
    pub fn start(binary: &Path, wrapper: Option<&[String]>) -> Program {
        Program::start_with_args(binary, wrapper, &[])
    }

    pub fn start_with_args(binary: &Path, wrapper: Option<&[String]>, args: &[&str]) -> Program {
        let mut command = match wrapper {
            Some(wrapper) => {
                let mut command = Command::new(&wrapper[0]);
                command.args(&wrapper[1..]).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        // A program finds libwspush through its own link (static, or an rpath), never through
        // the LD_LIBRARY_PATH cargo sets for tests, which points into target/ and could hide
        // the library under test.
        let mut child = command
            .env_remove("LD_LIBRARY_PATH")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        Program { child, stdin, lines, stdout: Vec::new(), stderr }
    }

    /// Reads lines until one starts with `prefix`; returns the rest of that line.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + SLOW_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(_) => {
                    panic!("no line starting with {prefix:?}; output so far:\n{}", self.stdout.join("\n"))
                }
            }
        }
    }

    /// Writes `line` and a newline to the program's stdin (for programs that read commands).
    // tests/dist.rs, which shares this module, runs no such program.
    #[allow(dead_code)]
    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open until finish");
        stdin.write_all(format!("{line}\n").as_bytes()).expect("cannot write to the program's stdin");
        stdin.flush().expect("cannot write to the program's stdin");
    }

    /// Closes stdin (the end of the program's commands), waits for the exit; returns the
    /// status, all of stdout and stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        drop(self.stdin.take());
        let status = wait_timeout(&mut self.child, SLOW_TIMEOUT);
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                self.stdout.push(line);
            }
            panic!("the program did not exit in {SLOW_TIMEOUT:?}; output:\n{}", self.stdout.join("\n"))
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        let stderr = self.stderr.join().unwrap_or_default();
        (status, self.stdout.join("\n") + "\n", stderr)
    }
}

/// The client side of the example's session, as a user would check it: exactly these
/// messages, in order, then close 1001 when the program stops its engine.
async fn example_client(port: u16) {
    // The program accepts the TCP connection itself; the engine answers the upgrade.
    let mut ws = connect(&format!("ws://127.0.0.1:{port}/any/path")).await;
    assert_eq!(recv_text(&mut ws, SLOW_TIMEOUT).await, "order 456 shipped");
    assert_eq!(recv_binary(&mut ws, SLOW_TIMEOUT).await, [0x00, 0x01, 0xfe, 0xff]);
    send_text(&mut ws, "hello from the client").await;
    assert_eq!(recv_text(&mut ws, SLOW_TIMEOUT).await, "echo: hello from the client");
    send_text(&mut ws, "thanks").await;
    let deadline = Instant::now() + SLOW_TIMEOUT;
    let code = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_item(&mut ws, left).await {
            tokio_tungstenite::tungstenite::Message::Close(Some(frame)) => {
                let _ = futures_util::SinkExt::flush(&mut ws).await;
                break u16::from(frame.code);
            }
            tokio_tungstenite::tungstenite::Message::Ping(_)
            | tokio_tungstenite::tungstenite::Message::Pong(_) => {}
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1001);
}

fn expected_example_output(port: u16) -> String {
    let version = wspush::VERSION;
    format!(
        "wspush {version} (header {version})
start with a bad setting: WSPUSH_STATUS_INVALID_CONFIG (invalid setting `workers`: expected a non-negative integer, got \"two\")
listening on 127.0.0.1:{port}
register as \"a/b\": WSPUSH_STATUS_INVALID_ID (invalid id: the id contains `/`)
open: id=456
sending: text and binary to 456
message: id=456 text \"hello from the client\"
reply: WSPUSH_STATUS_OK
message: id=456 text \"thanks\"
stats: connections=1 ids=1 messages_in=2 bytes_in=27 messages_out=3
close: id=456 code=1001
stopped
send after stop: WSPUSH_STATUS_SHUT_DOWN (the engine is shut down)
userdata freed
freed
"
    )
}

/// Runs the C example (`bindings/c/example.c`, built as `binary`) against a real client and
/// checks its whole output; returns its stderr (valgrind's report, under valgrind).
pub fn run_example_program(binary: &Path, wrapper: Option<&[String]>) -> String {
    let mut program = Program::start(binary, wrapper);
    let port: u16 = program.wait_line("listening on 127.0.0.1:").parse().expect("a port number");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(example_client(port));
    let (status, stdout, stderr) = program.finish();
    assert!(status.success(), "the example failed ({status}):\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(stdout, expected_example_output(port), "stderr:\n{stderr}");
    stderr
}
