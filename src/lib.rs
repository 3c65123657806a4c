//! Shared helpers for the integration tests in `tests/`: building and starting the real
//! `wspush` binary on free ports, speaking raw HTTP/1.1 and raw WebSocket frames over a
//! plain `TcpStream` (to send exactly the bytes a test needs, malformed ones included),
//! waiting with bounded timeouts, reading a process's memory use.
//!
//! This library uses only `std`: a package's library cannot see its own dev-dependencies.
//! The helpers built on tokio-tungstenite, serde_json and the engine itself live in
//! `tests/support.rs`, which every test file includes (and which re-exports this crate).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The bound on every wait in the tests: generous, because the machines are small and
/// shared, and a passing test never waits this long.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The sample key of RFC 6455 section 1.3 ...
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// ... and the `Sec-WebSocket-Accept` value a server must answer it with.
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The workspace root (this package is the root package).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target directory: `CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The path of the `wspush` server binary, built once per test process with
/// `cargo build -p wspush --bin wspush` (the profile of the tests: `--release` when the
/// tests are built without debug assertions). `WSPUSH_BIN` overrides it with a prebuilt one.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_server_binary)
}

fn build_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WSPUSH_BIN") {
        return PathBuf::from(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root()).args([
        "build",
        "-p",
        "wspush",
        "--bin",
        "wspush",
        "--message-format=json-render-diagnostics",
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command.output().expect("cannot run cargo to build the wspush binary");
    assert!(
        output.status.success(),
        "`cargo build -p wspush --bin wspush` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The artifact message names the executable wherever the target dir is configured.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let from_json = stdout
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(|line| json_string_field(line, "executable"))
        .find(|path| Path::new(path).file_stem().is_some_and(|stem| stem == "wspush"));
    let path = match from_json {
        Some(path) => PathBuf::from(path),
        None => target_dir().join(if cfg!(debug_assertions) { "debug" } else { "release" }).join("wspush"),
    };
    assert!(path.is_file(), "the wspush binary is not at {}", path.display());
    path
}

/// The value of a string field in one line of JSON (enough for cargo's messages, whose
/// paths carry no quotes).
fn json_string_field(line: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":\"");
    let start = line.find(&key)? + key.len();
    let end = line[start..].find('"')?;
    Some(line[start..start + end].replace("\\\\", "\\"))
}

/// Polls `condition` every 10 ms until it holds; panics naming `what` after `timeout`.
/// For state that has no event to await (a counter in another process, say).
pub fn eventually(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `value` every 10 ms until it equals `expected`; panics naming `what` and the last
/// value seen after `timeout`.
pub fn eventually_eq<T: PartialEq + fmt::Debug>(
    timeout: Duration,
    what: &str,
    expected: T,
    mut value: impl FnMut() -> T,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = value();
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} to be {expected:?}; it is {got:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit, at most `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("cannot wait for a child process") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}

/// `SIGTERM` on Linux.
pub const SIGTERM: i32 = 15;

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A field of `/proc/<pid>/status` given in kB (`VmRSS`, `VmHWM`), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad {field} line `{line}`: {e}"));
    kib * 1024
}

/// What a process printed, collected by reader threads.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<String>>);

impl Transcript {
    fn push(&self, stream: &str, line: &str) {
        let mut text = self.0.lock().unwrap_or_else(|e| e.into_inner());
        text.push_str(stream);
        text.push_str(line);
        text.push('\n');
    }

    /// Everything so far, each line marked `out| ` or `err| `.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Copies each line `reader` gives into `transcript`, marked with `prefix`, on a thread of
/// its own (until the end of the stream).
pub fn collect_lines(reader: impl Read + Send + 'static, transcript: Transcript, prefix: &'static str) {
    collect_lines_to(reader, transcript, prefix, None);
}

fn collect_lines_to(
    reader: impl Read + Send + 'static,
    transcript: Transcript,
    prefix: &'static str,
    lines: Option<mpsc::Sender<String>>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\r', '\n']);
                    transcript.push(prefix, text);
                    if let Some(lines) = &lines {
                        let _ = lines.send(text.to_owned());
                    }
                }
            }
        }
    });
}

/// A command running the server binary, without any `WSPUSH_*` variable of the test's
/// own environment (the server reads its settings from them).
fn server_command() -> Command {
    let mut command = Command::new(server_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WSPUSH_") {
            command.env_remove(name);
        }
    }
    command
}

/// A running `wspush` server process on free ports. Dropping it sends `SIGTERM`, waits
/// (bounded), then kills it; if the test is panicking its output is printed.
pub struct Server {
    child: Child,
    exited: Option<ExitStatus>,
    /// Where the WebSocket listener is bound.
    pub ws_addr: SocketAddr,
    /// Where the HTTP API is bound.
    pub api_addr: SocketAddr,
    /// The path prefix from the startup line (`/websocket/` by default).
    pub ws_prefix: String,
    /// `ws` or `wss` (`--tls-cert`), from the startup line.
    pub ws_scheme: &'static str,
    transcript: Transcript,
}

/// The startup line announcing the WebSocket listener.
pub const WS_LINE: &str = "wspush: websocket listening on ws://";
/// The startup line announcing the WebSocket listener with TLS.
pub const WSS_LINE: &str = "wspush: websocket listening on wss://";
/// The startup line announcing the HTTP API.
pub const API_LINE: &str = "wspush: http api listening on http://";
/// The startup line announcing the HTTP API with TLS (`--api-tls-cert`).
pub const API_TLS_LINE: &str = "wspush: http api listening on https://";

impl Server {
    /// Starts `wspush --ws-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 ARGS...` and waits
    /// (at most [`TIMEOUT`] x 3) for both startup lines. Panics if it exits first. `ARGS`
    /// may name either address instead (a node restarted on its former port).
    pub fn start(args: &[&str]) -> Server {
        let mut command = server_command();
        for flag in ["--ws-listen", "--api-listen"] {
            if !args.contains(&flag) {
                command.args([flag, "127.0.0.1:0"]);
            }
        }
        command
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("cannot start the wspush binary");
        let transcript = Transcript::default();
        let (lines_tx, lines) = mpsc::channel();
        collect_lines_to(child.stdout.take().unwrap(), transcript.clone(), "out| ", Some(lines_tx));
        collect_lines(child.stderr.take().unwrap(), transcript.clone(), "err| ");

        let deadline = Instant::now() + TIMEOUT * 3;
        let (mut ws, mut api) = (None, None);
        let mut ws_scheme = "ws";
        while ws.is_none() || api.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    let ws_rest = match (line.strip_prefix(WS_LINE), line.strip_prefix(WSS_LINE)) {
                        (Some(rest), _) => Some(rest),
                        (None, Some(rest)) => {
                            ws_scheme = "wss";
                            Some(rest)
                        }
                        (None, None) => None,
                    };
                    if let Some(rest) = ws_rest {
                        let (addr, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                        ws = Some((addr.parse::<SocketAddr>().expect(&line), prefix.to_owned()));
                    } else if let Some(rest) =
                        line.strip_prefix(API_LINE).or_else(|| line.strip_prefix(API_TLS_LINE))
                    {
                        api = Some(rest.trim_end_matches('/').parse::<SocketAddr>().expect(&line));
                    }
                }
                Err(_) => {
                    if let Some(status) = child.try_wait().unwrap() {
                        thread::sleep(Duration::from_millis(100)); // let the readers finish
                        panic!(
                            "wspush {args:?} exited ({status}) before announcing its addresses:\n{}",
                            transcript.text()
                        );
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "wspush {args:?} did not print both startup lines in {:?}:\n{}",
                            TIMEOUT * 3,
                            transcript.text()
                        );
                    }
                }
            }
        }
        let (ws_addr, ws_prefix) = ws.unwrap();
        Server { child, exited: None, ws_addr, api_addr: api.unwrap(), ws_prefix, ws_scheme, transcript }
    }

    /// `ws://ADDR/websocket/{id}` on this server (`wss://` with TLS).
    pub fn ws_url(&self, id: &str) -> String {
        format!("{}://{}{}{}", self.ws_scheme, self.ws_addr, self.ws_prefix, id)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        self.transcript.text()
    }

    /// Current resident memory of the process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmRSS")
    }

    /// Peak resident memory of the process so far, in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmHWM")
    }

    /// Sends `SIGTERM` and waits at most `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited {
            return Some(status);
        }
        if self.child.try_wait().unwrap().is_none() {
            send_signal(self.pid(), SIGTERM).expect("cannot signal the server");
        }
        self.exited = wait_timeout(&mut self.child, timeout);
        self.exited
    }

    /// Kills the process with SIGKILL (no close frames, no goodbye: a crash) and reaps it.
    pub fn kill9(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Waits at most `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_timeout(&mut self.child, timeout);
        }
        self.exited
    }

    /// One HTTP request to the API on a fresh connection.
    pub fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        http_request(self.api_addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}\nserver output:\n{}", self.output()))
    }

    /// `GET path` on the API.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.http("GET", path, &[], b"")
    }

    /// `POST path` on the API with a text body.
    pub fn post(&self, path: &str, body: &str) -> HttpResponse {
        self.http("POST", path, &[], body.as_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = send_signal(self.pid(), SIGTERM);
            if wait_timeout(&mut self.child, Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if thread::panicking() {
            eprintln!("---- wspush server output ----\n{}", self.transcript.text());
        }
    }
}

/// The result of running a process to completion.
#[derive(Debug)]
pub struct RunOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl RunOutput {
    /// Standard output and standard error together.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs the `wspush` binary with exactly `args` (no listen flags added) and waits at most
/// [`TIMEOUT`] for it to exit; panics (after killing it) if it does not.
pub fn run_server_binary(args: &[&str]) -> RunOutput {
    let mut child = server_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the wspush binary");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let Some(status) = wait_timeout(&mut child, TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("wspush {args:?} did not exit within {TIMEOUT:?}");
    };
    RunOutput {
        status,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 over a plain TcpStream.

/// An HTTP response head (and, for [`HttpResponse`], its body).
#[derive(Debug, Clone, Default)]
pub struct HttpHead {
    /// The status code.
    pub status: u16,
    /// The status line as received.
    pub status_line: String,
    /// The header fields, in order, names as received.
    pub headers: Vec<(String, String)>,
}

impl HttpHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A complete HTTP response.
#[derive(Clone, Default)]
pub struct HttpResponse {
    /// Status line and headers.
    pub head: HttpHead,
    /// The body (chunked encoding already removed).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {:?}", self.head.status_line, self.head.headers, self.text())
    }
}

/// Reads an HTTP response head (through the blank line) and nothing after it.
pub fn read_http_head(reader: &mut impl BufRead) -> io::Result<HttpHead> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response"));
    }
    let status_line = status_line.trim_end().to_owned();
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("bad status line {status_line:?}"))
    })?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside the head"));
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("bad header {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    Ok(HttpHead { status, status_line, headers })
}

fn read_http_body(reader: &mut impl BufRead, head: &HttpHead, until_eof: bool) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if head.status / 100 == 1 || head.status == 204 || head.status == 304 {
        return Ok(body);
    }
    if head.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16).map_err(
                |_| io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk {size_line:?}")),
            )?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = head.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad length {length:?}")))?;
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    } else if until_eof {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

fn write_http_request(
    stream: &mut TcpStream,
    host: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" || !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str(if keep_alive { "Connection: keep-alive\r\n\r\n" } else { "Connection: close\r\n\r\n" });
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes)
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), with [`TIMEOUT`] on
/// every read and write.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let mut stream = connect(addr)?;
    write_http_request(&mut stream, addr, method, path, headers, body, false)?;
    let mut reader = BufReader::new(stream);
    let head = read_http_head(&mut reader)?;
    let body = read_http_body(&mut reader, &head, true)?;
    Ok(HttpResponse { head, body })
}

/// A keep-alive HTTP/1.1 connection, for many requests without a connection each.
pub struct HttpConnection {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl HttpConnection {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<HttpConnection> {
        Ok(HttpConnection { addr, reader: BufReader::new(connect(addr)?) })
    }

    /// One request; the response must carry a length (or be chunked).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        write_http_request(self.reader.get_mut(), self.addr, method, path, headers, body, true)?;
        let head = read_http_head(&mut self.reader)?;
        let body = read_http_body(&mut self.reader, &head, false)?;
        Ok(HttpResponse { head, body })
    }

    /// Waits (at most [`TIMEOUT`]) for the server to close the connection; what it sent
    /// before closing (see [`read_to_close`]).
    pub fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        read_to_close(&mut self.reader)
    }
}

/// Reads until the peer closes the connection (end of stream, or a reset: a server that
/// closes with unread input resets), and returns what arrived before. Times out with the
/// stream's read timeout ([`TIMEOUT`] for the streams made here).
pub fn read_to_close(reader: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut received = Vec::new();
    match reader.read_to_end(&mut received) {
        Ok(_) => Ok(received),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(received),
        Err(e) => Err(e),
    }
}

/// A TCP connection to `addr` with [`TIMEOUT`] on every read and write.
pub fn connect_raw(addr: SocketAddr) -> io::Result<TcpStream> {
    connect(addr)
}

// ---------------------------------------------------------------------------------------
// Raw WebSocket over a plain TcpStream.

/// A WebSocket upgrade request for `path` with the RFC's sample key and `extra` header
/// lines (each ending in `\r\n`).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connects to `addr`, writes `request` as is and reads the response head.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> io::Result<HttpHead> {
    let mut stream = connect(addr)?;
    stream.write_all(request)?;
    read_http_head(&mut BufReader::new(stream))
}

/// WebSocket opcodes.
pub mod opcode {
    /// Continuation frame.
    pub const CONTINUATION: u8 = 0x0;
    /// Text frame.
    pub const TEXT: u8 = 0x1;
    /// Binary frame.
    pub const BINARY: u8 = 0x2;
    /// Close frame.
    pub const CLOSE: u8 = 0x8;
    /// Ping frame.
    pub const PING: u8 = 0x9;
    /// Pong frame.
    pub const PONG: u8 = 0xA;
}

/// One WebSocket frame as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: u8,
    /// Whether the server masked it (a server must not).
    pub masked: bool,
    /// The (unmasked) payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// For a close frame with a code, the code.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == opcode::CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Encodes one frame; `mask` masks it as a client must.
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Frame> {
    match read_frame_with_rsv1(reader)? {
        (false, frame) => Ok(frame),
        (true, _) => Err(io::Error::new(io::ErrorKind::InvalidData, "RSV1 set")),
    }
}

/// Reads one frame that may have RSV1 set (permessage-deflate's compressed message): whether
/// it has, and the frame.
pub fn read_frame_with_rsv1(reader: &mut impl Read) -> io::Result<(bool, Frame)> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head)?;
    let fin = head[0] & 0x80 != 0;
    let rsv1 = head[0] & 0x40 != 0;
    if head[0] & 0x30 != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("RSV bits set: {:#04x}", head[0])));
    }
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            reader.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            reader.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > 256 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("absurd frame length {len}")));
    }
    let mut key = [0u8; 4];
    if masked {
        reader.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok((rsv1, Frame { fin, opcode, masked, payload }))
}

/// How a raw connection ended, as seen by [`RawWs::read_until_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A close frame arrived, with this code (`None`: no code in it).
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Eof,
    /// The connection was reset.
    Reset,
}

/// A WebSocket client over a plain blocking `TcpStream`, writing exactly the frames a test
/// gives it (masked or not, fragmented, invalid) and reading frames one by one.
/// Every read and write is bounded by [`TIMEOUT`].
pub struct RawWs {
    reader: BufReader<TcpStream>,
    /// The server's answer to the upgrade.
    pub response: HttpHead,
}

impl RawWs {
    /// Upgrades at `path` on `addr`; panics unless the answer is 101.
    pub fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let ws = RawWs::try_connect(addr, path).unwrap_or_else(|e| panic!("upgrade at {path} failed: {e}"));
        assert_eq!(ws.response.status, 101, "upgrade at {path} refused: {:?}", ws.response);
        ws
    }

    /// Sends an upgrade request for `path` and reads the answer, whatever it is.
    pub fn try_connect(addr: SocketAddr, path: &str) -> io::Result<RawWs> {
        let stream = connect(addr)?;
        RawWs::handshake(stream, path)
    }

    /// Sends an upgrade request for `path` on a connected stream and reads the answer.
    pub fn handshake(stream: TcpStream, path: &str) -> io::Result<RawWs> {
        RawWs::handshake_with(stream, path, "")
    }

    /// [`RawWs::handshake`] with `extra` header lines (each ending in `\r\n`) in the request.
    pub fn handshake_with(mut stream: TcpStream, path: &str, extra: &str) -> io::Result<RawWs> {
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.write_all(upgrade_request(path, extra).as_bytes())?;
        let mut reader = BufReader::new(stream);
        let response = read_http_head(&mut reader)?;
        Ok(RawWs { reader, response })
    }

    /// The underlying stream.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Reads one frame that may be compressed (RSV1): whether it is, and the frame.
    pub fn read_frame_with_rsv1(&mut self) -> io::Result<(bool, Frame)> {
        read_frame_with_rsv1(&mut self.reader)
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)
    }

    /// Writes one masked frame.
    pub fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.write_raw(&encode_frame(fin, opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d])))
    }

    /// Reads one frame.
    pub fn read_frame(&mut self) -> io::Result<Frame> {
        read_frame(&mut self.reader)
    }

    /// Reads one complete data message (reassembling fragments), answering nothing and
    /// failing on anything but data frames.
    pub fn read_message(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let first = self.read_frame()?;
        if first.opcode != opcode::TEXT && first.opcode != opcode::BINARY {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("expected data, got {first:?}")));
        }
        let (kind, mut payload, mut fin) = (first.opcode, first.payload, first.fin);
        while !fin {
            let next = self.read_frame()?;
            if next.opcode != opcode::CONTINUATION {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("expected more, got {next:?}"),
                ));
            }
            payload.extend_from_slice(&next.payload);
            fin = next.fin;
        }
        Ok((kind, payload))
    }

    /// Reads (and passes to `on_frame`) every frame until a close frame or the end of the
    /// connection, and says which came.
    pub fn read_until_close(&mut self, mut on_frame: impl FnMut(&Frame)) -> Ending {
        loop {
            match self.read_frame() {
                Ok(frame) if frame.opcode == opcode::CLOSE => return Ending::Close(frame.close_code()),
                Ok(frame) => on_frame(&frame),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ending::Eof,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ending::Reset,
                Err(e) => panic!("reading until close: {e}"),
            }
        }
    }

    /// After a close frame arrived: whether the server then ends the connection (EOF or
    /// reset) without sending anything else.
    pub fn read_eof(&mut self) -> io::Result<()> {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => Ok(()),
            Ok(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "data after the close frame")),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for len in [0, 5, 125, 126, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let bytes = encode_frame(true, opcode::BINARY, &payload, mask);
                let frame = read_frame(&mut &bytes[..]).unwrap();
                assert_eq!(
                    frame,
                    Frame { fin: true, opcode: 2, masked: mask.is_some(), payload: payload.clone() }
                );
            }
        }
    }

    #[test]
    fn the_rfc_example_frame_decodes() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let frame = read_frame(&mut &bytes[..]).unwrap();
        assert_eq!(frame.payload, b"Hello");
        assert_eq!(encode_frame(true, opcode::TEXT, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d])), bytes);
    }

    #[test]
    fn heads_and_chunked_bodies_parse() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut reader = &raw[..];
        let head = read_http_head(&mut reader).unwrap();
        assert_eq!((head.status, head.header("x-a")), (200, Some("b")));
        assert_eq!(read_http_body(&mut reader, &head, true).unwrap(), b"abcde");
    }

    #[test]
    fn cargo_artifact_lines_name_the_executable() {
        let line = r#"{"reason":"compiler-artifact","executable":"/t/debug/wspush","fresh":true}"#;
        assert_eq!(json_string_field(line, "executable").as_deref(), Some("/t/debug/wspush"));
        assert_eq!(json_string_field(r#"{"executable":null}"#, "executable"), None);
    }
}

// =======================================================================================
// Cluster mode (used by tests/cluster*.rs): Redis servers of the tests' own on free ports,
// a minimal RESP client to ask Redis what it saw, and the real `redis-cli` for what a user
// would type.

// =======================================================================================
// Tools outside Rust (Node.js, Chromium): a test that needs one skips loudly without it,
// unless the test command requires it.

/// Whether a test can run, given what it lacks (`missing`, e.g. "node (Debian package
/// nodejs)"; `None`: nothing). When something is missing and the variable `require_var` is
/// set (`scripts/test.sh` sets them all), that is a failure; otherwise the test is skipped
/// with a line on stderr that cannot be missed, and this returns false.
pub fn tool_present_or_skip(test: &str, missing: Option<String>, require_var: &str) -> bool {
    let Some(missing) = missing else { return true };
    assert!(
        std::env::var_os(require_var).is_none(),
        "{require_var} is set but {missing} is missing: run scripts/ensure-tools.sh"
    );
    // Straight to stderr, past the test harness's capture: a skip must show.
    let _ = writeln!(
        io::stderr(),
        "\n!!!!! SKIPPED: {test} needs {missing}; scripts/ensure-tools.sh installs it !!!!!\n"
    );
    false
}

/// What running the JavaScript tests under Node.js lacks, if anything: a `node` that has a
/// WebSocket (Node 22+, or 20-21 with `--experimental-websocket`, which [`node_command`]
/// adds there).
pub fn node_missing() -> Option<String> {
    let works = node_command().args(["-e", HAS_WEBSOCKET]).output().is_ok_and(|out| out.status.success());
    (!works).then(|| "node 20 or later (Debian package nodejs)".to_owned())
}

/// A Node.js program that fails unless the global WebSocket exists.
const HAS_WEBSOCKET: &str = "if (typeof WebSocket !== 'function') process.exit(1)";

/// `node`, with `--experimental-websocket` where its WebSocket needs it (Node 20 and 21; a
/// later Node may not know the flag).
pub fn node_command() -> Command {
    static NEEDS_FLAG: OnceLock<bool> = OnceLock::new();
    let needs_flag = *NEEDS_FLAG.get_or_init(|| {
        !Command::new("node").args(["-e", HAS_WEBSOCKET]).output().is_ok_and(|out| out.status.success())
    });
    let mut command = Command::new("node");
    if needs_flag {
        command.args(["--experimental-websocket", "--no-warnings"]);
    }
    command
}

/// The Chromium the browser tests drive: `WSPUSH_CHROMIUM`, or Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("WSPUSH_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What driving Chromium from `tests/browser/drive.js` lacks, if anything: the browser,
/// Node.js, or the driver's `node_modules`.
pub fn chromium_missing() -> Option<String> {
    let chromium = chromium_path();
    if !chromium.exists() {
        return Some(format!("{} (Debian package chromium)", chromium.display()));
    }
    if let Some(node) = node_missing() {
        return Some(node);
    }
    let modules = workspace_root().join("tests/browser/node_modules/playwright-core");
    (!modules.exists()).then(|| "tests/browser/node_modules (`npm ci` in tests/browser)".to_owned())
}

/// A free loopback TCP port (never Redis's default 6379). Another process may take it
/// before it is used; [`RedisServer::start`] retries on another port if so.
pub fn free_port() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
        let port = listener.local_addr().expect("a bound listener has an address").port();
        if port != 6379 {
            return port;
        }
    }
}

/// A RESP (Redis protocol) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$n` bulk string; `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n` array; `None` for the null array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The value as text (simple or bulk string), lossily decoded.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The value as an integer.
    pub fn int(&self) -> Option<i64> {
        match self {
            Resp::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The items of an array.
    pub fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

/// Reads one RESP value.
pub fn read_resp(reader: &mut impl BufRead) -> io::Result<Resp> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection"));
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let line = line.strip_suffix(b"\r\n").ok_or_else(|| bad("a RESP line without CRLF"))?;
    let (&kind, rest) = line.split_first().ok_or_else(|| bad("an empty RESP line"))?;
    let rest = String::from_utf8_lossy(rest).into_owned();
    let number = || rest.parse::<i64>().map_err(|_| bad(&format!("bad RESP number {rest:?}")));
    Ok(match kind {
        b'+' => Resp::Simple(rest),
        b'-' => Resp::Error(rest),
        b':' => Resp::Int(number()?),
        b'$' => match number()? {
            n if n < 0 => Resp::Bulk(None),
            n => {
                let mut data = vec![0; n as usize + 2];
                reader.read_exact(&mut data)?;
                data.truncate(n as usize);
                Resp::Bulk(Some(data))
            }
        },
        b'*' => match number()? {
            n if n < 0 => Resp::Array(None),
            n => Resp::Array(Some((0..n).map(|_| read_resp(reader)).collect::<io::Result<_>>()?)),
        },
        other => return Err(bad(&format!("unknown RESP type {:?}", other as char))),
    })
}

/// A plain connection to a Redis server, one command at a time (no pipelining, no pub/sub),
/// every read and write bounded by [`TIMEOUT`].
pub struct RespConnection {
    reader: BufReader<TcpStream>,
}

impl RespConnection {
    /// Connects to Redis on loopback `port`.
    pub fn connect(port: u16) -> io::Result<RespConnection> {
        let stream = connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
        Ok(RespConnection { reader: BufReader::new(stream) })
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> io::Result<Resp> {
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg);
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request)?;
        read_resp(&mut self.reader)
    }
}

/// A `redis-server` process of the test's own: loopback only, on a free port, no
/// persistence, not daemonized. Dropping it kills it.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    transcript: Transcript,
    /// With persistence: the directory of its append-only file (removed on drop).
    aof_dir: Option<PathBuf>,
    /// Further `redis-server` arguments (a replica's `--replicaof`, TLS).
    extra: Vec<String>,
    /// The port it also takes TLS connections on, if any.
    tls_port: Option<u16>,
}

impl RedisServer {
    fn unstarted(port: u16, aof_dir: Option<PathBuf>, extra: Vec<String>) -> RedisServer {
        RedisServer { child: None, port, transcript: Transcript::default(), aof_dir, extra, tls_port: None }
    }

    /// Starts a Redis that also takes TLS connections (on [`RedisServer::tls_port`]) with the
    /// certificate chain `cert` and key `key`; clients need no certificate of their own.
    pub fn start_tls(cert: &Path, key: &Path) -> RedisServer {
        let tls_port = free_port();
        let extra = [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from)
        .to_vec();
        let mut redis = RedisServer::unstarted(free_port(), None, extra);
        redis.tls_port = Some(tls_port);
        redis.spawn().unwrap_or_else(|e| panic!("cannot start a TLS redis-server: {e}"));
        redis
    }

    /// Starts a Redis on a free port and waits (at most [`TIMEOUT`]) until it answers PING.
    pub fn start() -> RedisServer {
        let mut last_error = String::new();
        for _ in 0..5 {
            match RedisServer::start_on(free_port()) {
                Ok(redis) => return redis,
                // Most likely the port was taken in between: try another.
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start redis-server: {last_error}");
    }

    /// Starts a Redis on `port` (e.g. one a node was told to use before Redis existed) and
    /// waits until it answers PING.
    ///
    /// # Errors
    ///
    /// What went wrong, with Redis's output.
    pub fn start_on(port: u16) -> Result<RedisServer, String> {
        let mut redis = RedisServer::unstarted(port, None, Vec::new());
        redis.spawn()?;
        Ok(redis)
    }

    /// Starts a replica of the Redis on `master_port` (on a free port) and waits until it
    /// answers PING and has finished its first sync with the master.
    pub fn start_replica_of(master_port: u16) -> RedisServer {
        let port = free_port();
        let extra = vec!["--replicaof".into(), "127.0.0.1".into(), master_port.to_string()];
        let mut redis = RedisServer::unstarted(port, None, extra);
        redis.spawn().unwrap_or_else(|e| panic!("cannot start a replica: {e}"));
        eventually(TIMEOUT, "the replica's first sync with its master", || {
            redis
                .command(&["INFO", "replication"])
                .text()
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        redis
    }

    /// Starts a Redis on a free port that persists every write before answering it
    /// (`appendonly yes`, `appendfsync always`, in a directory of its own), so a
    /// [`RedisServer::kill9`] and [`RedisServer::restart`] lose nothing it acknowledged.
    pub fn start_persistent() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("wspush-redis-aof-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cannot create the AOF directory");
        let mut redis = RedisServer::unstarted(port, Some(dir), Vec::new());
        redis.spawn().unwrap_or_else(|e| panic!("cannot start a persistent redis-server: {e}"));
        redis
    }

    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "redis-server is already running on port {}", self.port);
        let port = self.port.to_string();
        let persistence: Vec<String> = match &self.aof_dir {
            Some(dir) => ["--appendonly", "yes", "--appendfsync", "always", "--dir"]
                .into_iter()
                .map(String::from)
                .chain([dir.display().to_string()])
                .collect(),
            // A replica writes the RDB of its sync to disk: into a directory of the test's
            // own, not the working directory.
            None => {
                let dir =
                    std::env::temp_dir().join(format!("wspush-redis-{}-{}", std::process::id(), self.port));
                let _ = std::fs::create_dir_all(&dir);
                vec!["--appendonly".into(), "no".into(), "--dir".into(), dir.display().to_string()]
            }
        };
        let mut child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(&persistence)
            .args(["--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run redis-server (is it installed?): {e}"))?;
        collect_lines(child.stdout.take().unwrap(), self.transcript.clone(), "out| ");
        collect_lines(child.stderr.take().unwrap(), self.transcript.clone(), "err| ");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let pong = RespConnection::connect(self.port).and_then(|mut c| c.command(&[b"PING"]));
            if matches!(pong, Ok(Resp::Simple(ref s)) if s == "PONG") {
                self.child = Some(child);
                return Ok(());
            }
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                thread::sleep(Duration::from_millis(50)); // let the readers finish
                return Err(format!(
                    "redis-server on port {port} exited ({status}):\n{}",
                    self.transcript.text()
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {port} did not answer PING in {TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it takes TLS connections on ([`RedisServer::start_tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("this redis-server takes no TLS connections")
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process with SIGKILL (no goodbye to its clients) and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, after [`RedisServer::kill9`].
    pub fn restart(&mut self) {
        self.spawn().unwrap_or_else(|e| panic!("cannot restart redis-server: {e}"));
    }

    /// One command on a fresh connection; panics on I/O errors (not on Redis errors).
    pub fn command(&self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        RespConnection::connect(self.port)
            .and_then(|mut c| c.command(&args))
            .unwrap_or_else(|e| panic!("Redis command {args:?} on port {} failed: {e}", self.port))
    }

    /// `PUBSUB NUMSUB channel`: the connections subscribed to `channel`.
    pub fn numsub(&self, channel: &str) -> i64 {
        let reply = self.command(&["PUBSUB", "NUMSUB", channel]);
        reply.items().get(1).and_then(Resp::int).unwrap_or_else(|| panic!("bad NUMSUB reply {reply:?}"))
    }

    /// `PUBSUB CHANNELS pattern`: the active channels matching `pattern`.
    pub fn channels(&self, pattern: &str) -> Vec<String> {
        self.command(&["PUBSUB", "CHANNELS", pattern]).items().iter().filter_map(Resp::text).collect()
    }

    /// `calls=` of `cmdstat_{command}` in `INFO commandstats` (0 if never called).
    pub fn command_calls(&self, command: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]).text().expect("INFO answers a bulk string");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|rest| rest.split(',').next().unwrap_or("").parse().expect("calls= is a number"))
            .unwrap_or(0)
    }

    /// What the process printed so far.
    pub fn output(&self) -> String {
        self.transcript.text()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        if let Some(dir) = &self.aof_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!(
            "wspush-redis-{}-{}",
            std::process::id(),
            self.port
        )));
        if thread::panicking() {
            eprintln!("---- redis-server (port {}) output ----\n{}", self.port, self.transcript.text());
        }
    }
}

/// A Redis Sentinel of the test's own (`redis-server CONFIG --sentinel`, loopback, a free
/// port) watching the master named [`SENTINEL_MASTER`] at `127.0.0.1:master_port`, quick to
/// act: the master is down after 2 s without an answer, and two Sentinels agreeing suffice.
/// Dropping it kills it and removes its config file.
pub struct SentinelServer {
    child: Option<Child>,
    port: u16,
    transcript: Transcript,
    config: PathBuf,
}

/// The master name the test Sentinels watch.
pub const SENTINEL_MASTER: &str = "mymaster";

impl SentinelServer {
    /// Starts a Sentinel for the master at `master_port` and waits until it answers with
    /// that master's address.
    pub fn start(master_port: u16) -> SentinelServer {
        SentinelServer::start_on(free_port(), master_port)
    }

    /// As [`SentinelServer::start`], on `port` (one a node was told to use before it existed).
    pub fn start_on(port: u16, master_port: u16) -> SentinelServer {
        let config = std::env::temp_dir().join(format!("wspush-sentinel-{}-{port}.conf", std::process::id()));
        let text = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\nloglevel warning\n\
             sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 2000\n\
             sentinel failover-timeout {SENTINEL_MASTER} 6000\n\
             sentinel parallel-syncs {SENTINEL_MASTER} 1\n"
        );
        std::fs::write(&config, text).expect("cannot write the Sentinel's config file");
        let mut child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server --sentinel (is it installed?): {e}"));
        let transcript = Transcript::default();
        collect_lines(child.stdout.take().unwrap(), transcript.clone(), "out| ");
        collect_lines(child.stderr.take().unwrap(), transcript.clone(), "err| ");
        let sentinel = SentinelServer { child: Some(child), port, transcript, config };
        eventually(TIMEOUT, "the Sentinel to name its master", || {
            RespConnection::connect(port)
                .and_then(|mut c| {
                    c.command(&[b"SENTINEL", b"get-master-addr-by-name", SENTINEL_MASTER.as_bytes()])
                })
                .is_ok_and(|reply| reply.items().len() == 2)
        });
        sentinel
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The master's port as this Sentinel names it now.
    pub fn master_port(&self) -> Option<u16> {
        let reply = RespConnection::connect(self.port)
            .and_then(|mut c| {
                c.command(&[b"SENTINEL", b"get-master-addr-by-name", SENTINEL_MASTER.as_bytes()])
            })
            .ok()?;
        reply.items().get(1).and_then(Resp::text).and_then(|port| port.parse().ok())
    }

    /// One command; panics on I/O errors (not on Redis errors).
    pub fn command(&self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        RespConnection::connect(self.port)
            .and_then(|mut c| c.command(&args))
            .unwrap_or_else(|e| panic!("Sentinel command {args:?} on port {} failed: {e}", self.port))
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.config);
        if thread::panicking() {
            eprintln!("---- Sentinel (port {}) output ----\n{}", self.port, self.transcript.text());
        }
    }
}

/// How long a Redis Cluster node may go unanswered before the others fail it over.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 2000;

/// A Redis Cluster of the test's own: `masters` masters with `replicas` replicas each, on
/// loopback ports whose bus ports (port + 10,000) are free too, created with the real
/// `redis-cli --cluster create` and waited for until every node says `cluster_state:ok`.
/// Nodes fail over after [`CLUSTER_NODE_TIMEOUT_MS`]. Dropping it kills every node.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts and creates the cluster.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let count = masters * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        while nodes.len() < count {
            let port = cluster_port();
            let extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT_MS.to_string(),
                // A replica may take over however long ago it last heard its master (a
                // cluster created a moment ago has replicas that never synced yet).
                "--cluster-replica-validity-factor",
                "0",
            ]
            .map(String::from)
            .to_vec();
            let mut node = RedisServer::unstarted(port, None, extra);
            if node.spawn().is_ok() {
                nodes.push(node);
            }
        }
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(addresses.iter().map(String::as_str));
        let replicas = replicas.to_string();
        args.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        redis_cli(nodes[0].port(), &args);
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(masters);
        cluster
    }

    /// Waits until every running node says `cluster_state:ok` and names the same `masters`
    /// masters for all 16,384 slots.
    pub fn wait_ok(&self, masters: usize) {
        eventually(
            Duration::from_secs(60),
            &format!("the Redis Cluster is ok with {masters} masters"),
            || {
                let mut maps = self.nodes.iter().filter(|n| n.is_running()).map(|n| {
                    let info = n.command(&["CLUSTER", "INFO"]).text().unwrap_or_default();
                    let ok =
                        info.contains("cluster_state:ok") && info.contains("cluster_slots_assigned:16384");
                    (ok, slot_owners(n))
                });
                let Some((ok, first)) = maps.next() else { return false };
                let masters_seen: std::collections::BTreeSet<u16> =
                    first.iter().map(|(_, _, p)| *p).collect();
                let replicas_synced = self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                    let info = n.command(&["INFO", "replication"]).text().unwrap_or_default();
                    info.contains("role:master") || info.contains("master_link_status:up")
                });
                ok && masters_seen.len() == masters
                    && replicas_synced
                    && maps.all(|(ok, map)| ok && map == first)
            },
        );
    }

    /// `redis+cluster://` naming every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes.iter().find(|n| n.port() == port).unwrap_or_else(|| panic!("no cluster node on {port}"))
    }

    /// The ports of the masters, as a running node tells.
    pub fn masters(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = slot_owners(self.any_running()).iter().map(|(_, _, p)| *p).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let slot = self.any_running().command(&["CLUSTER", "KEYSLOT", key]).int();
        slot.and_then(|s| u16::try_from(s).ok()).unwrap_or_else(|| panic!("no slot for {key}"))
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        slot_owners(self.any_running())
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("slot {slot} has no master"))
    }

    /// Kills the node on `port` with SIGKILL.
    pub fn kill9(&mut self, port: u16) {
        self.nodes.iter_mut().find(|n| n.port() == port).expect("a node of the cluster").kill9();
    }

    /// Moves `slot` to the master on `to`, keys and all, as `redis-cli --cluster reshard`
    /// does: IMPORTING on the target, MIGRATING on the source, the keys MIGRATEd in batches,
    /// then NODE on both.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let from = slot_owners(self.any_running())
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
            .expect("the slot has a master");
        if from == to {
            return;
        }
        let (source, target) = (self.node(from), self.node(to));
        let id = |n: &RedisServer| n.command(&["CLUSTER", "MYID"]).text().expect("CLUSTER MYID");
        let (source_id, target_id) = (id(source), id(target));
        let slot_text = slot.to_string();
        let ok = |reply: Resp, what: &str| assert_eq!(reply, Resp::Simple("OK".into()), "{what}");
        ok(target.command(&["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id]), "IMPORTING");
        ok(source.command(&["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id]), "MIGRATING");
        loop {
            let keys = source.command(&["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"]);
            let keys: Vec<String> = keys.items().iter().filter_map(Resp::text).collect();
            if keys.is_empty() {
                break;
            }
            let to_port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            let reply = source.command(&args);
            assert!(matches!(reply, Resp::Simple(ref s) if s == "OK" || s == "NOKEY"), "MIGRATE: {reply:?}");
        }
        ok(target.command(&["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id]), "NODE on the target");
        // A source left with no slot may have turned itself into a replica already (Redis's
        // replica migration), having learned the move from the target.
        let reply = source.command(&["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id]);
        assert!(
            reply == Resp::Simple("OK".into())
                || matches!(&reply, Resp::Error(e) if e.contains("only with masters")),
            "NODE on the source: {reply:?}"
        );
        for node in self.nodes.iter().filter(|n| n.is_running() && n.port() != from && n.port() != to) {
            let _ = node.command(&["CLUSTER", "SETSLOT", &slot_text, "NODE", &target_id]);
        }
    }

    /// Starts a node and adds it to the cluster as a master serving no slot yet (`redis-cli
    /// --cluster add-node`); returns its port once every node knows it.
    pub fn add_master(&mut self) -> u16 {
        let extra = self.nodes[0].extra.clone();
        let node = loop {
            let mut node = RedisServer::unstarted(cluster_port(), None, extra.clone());
            if node.spawn().is_ok() {
                break node;
            }
        };
        let (port, existing) = (node.port(), self.any_running().port());
        self.nodes.push(node);
        redis_cli(
            existing,
            &["--cluster", "add-node", &format!("127.0.0.1:{port}"), &format!("127.0.0.1:{existing}")],
        );
        let count = self.nodes.iter().filter(|n| n.is_running()).count();
        eventually(Duration::from_secs(60), "every node knows the new master, and it the slot map", || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let known = n.command(&["CLUSTER", "NODES"]).text().unwrap_or_default();
                let state = n.command(&["CLUSTER", "INFO"]).text().unwrap_or_default();
                known.lines().filter(|line| !line.contains("fail")).count() == count
                    && state.contains("cluster_state:ok")
            })
        });
        port
    }

    /// Removes the master on `port`, which must serve no slot any more (`redis-cli --cluster
    /// del-node`, which also shuts it down).
    pub fn remove_master(&mut self, port: u16) {
        let id = self.node(port).command(&["CLUSTER", "MYID"]).text().expect("CLUSTER MYID");
        let other =
            self.nodes.iter().find(|n| n.is_running() && n.port() != port).expect("another node").port();
        redis_cli(other, &["--cluster", "del-node", &format!("127.0.0.1:{other}"), &id]);
        let index = self.nodes.iter().position(|n| n.port() == port).expect("a node of the cluster");
        let mut removed = self.nodes.remove(index);
        removed.kill9();
    }

    fn any_running(&self) -> &RedisServer {
        self.nodes.iter().find(|n| n.is_running()).expect("a running cluster node")
    }
}

/// `CLUSTER SLOTS` of `node` as (start, end, master port) ranges, sorted.
fn slot_owners(node: &RedisServer) -> Vec<(u16, u16, u16)> {
    let mut ranges: Vec<(u16, u16, u16)> = node
        .command(&["CLUSTER", "SLOTS"])
        .items()
        .iter()
        .filter_map(|range| {
            let items = range.items();
            let number = |r: &Resp| r.int().and_then(|n| u16::try_from(n).ok());
            let port = items.get(2).and_then(|master| master.items().get(1).and_then(number))?;
            Some((number(items.first()?)?, number(items.get(1)?)?, port))
        })
        .collect();
    ranges.sort_unstable();
    ranges
}

/// A free loopback port whose cluster bus port (port + 10,000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Runs the real `redis-cli -p PORT ARGS...` (at most [`TIMEOUT`]) and returns its
/// standard output; panics if it fails.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run redis-cli (is it installed?)");
    let Some(status) = wait_timeout(&mut child, TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-cli {args:?} did not exit within {TIMEOUT:?}");
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut stdout);
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(status.success(), "redis-cli {args:?} failed ({status}): {stdout}{stderr}");
    stdout
}

/// One pub/sub message as `redis-cli SUBSCRIBE` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    /// The channel.
    pub channel: String,
    /// The payload, as printed (raw bytes, one line).
    pub payload: Vec<u8>,
}

impl PubSubMessage {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// `redis-cli SUBSCRIBE channel...` in a child process, as a service listening on those
/// channels would run it. redis-cli prints each reply element on a line of its own, so
/// payloads must not contain newlines.
pub struct RedisCliSubscriber {
    child: Child,
    messages: mpsc::Receiver<PubSubMessage>,
}

impl RedisCliSubscriber {
    /// Starts the subscriber and waits (at most [`TIMEOUT`]) until Redis confirmed every
    /// channel.
    pub fn start(port: u16, channels: &[&str]) -> RedisCliSubscriber {
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "SUBSCRIBE"])
            .args(channels)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run redis-cli (is it installed?)");
        let stdout = child.stdout.take().unwrap();
        let (confirmations, confirmed) = mpsc::channel();
        let (messages_tx, messages) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut read_line = || {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => None,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        Some(line)
                    }
                }
            };
            loop {
                let (Some(kind), Some(channel), Some(last)) = (read_line(), read_line(), read_line()) else {
                    return;
                };
                let channel = String::from_utf8_lossy(&channel).into_owned();
                let sent = match &kind[..] {
                    b"subscribe" => confirmations.send(channel).is_ok(),
                    b"message" => messages_tx.send(PubSubMessage { channel, payload: last }).is_ok(),
                    _ => true,
                };
                if !sent {
                    return;
                }
            }
        });
        let mut subscriber = RedisCliSubscriber { child, messages };
        for _ in channels {
            if confirmed.recv_timeout(TIMEOUT).is_err() {
                let _ = subscriber.child.kill();
                panic!("redis-cli SUBSCRIBE {channels:?} was not confirmed within {TIMEOUT:?}");
            }
        }
        subscriber
    }

    /// The next message within `timeout`, if one arrives.
    pub fn next_message(&self, timeout: Duration) -> Option<PubSubMessage> {
        self.messages.recv_timeout(timeout).ok()
    }

    /// The next message within [`TIMEOUT`]; panics naming `what` if none arrives.
    pub fn expect_message(&self, what: &str) -> PubSubMessage {
        self.next_message(TIMEOUT)
            .unwrap_or_else(|| panic!("no message on the channel within {TIMEOUT:?}: {what}"))
    }
}

impl Drop for RedisCliSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
