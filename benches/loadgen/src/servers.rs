//! The processes a run measures: Redis, wspush nodes (the release `wspush` binary), the
//! Node.js baseline, its Bun (uWebSockets) twin, or an in-process engine host (`wspush-bench host`). Each is killed when
//! dropped, so a failed run leaves nothing behind.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::procstat;

/// A child process, killed on drop.
pub struct Process {
    child: Child,
    pub name: String,
}

impl Process {
    fn spawn(name: &str, command: &mut Command) -> io::Result<Process> {
        let child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name} ({command:?}): {e}")))?;
        Ok(Process { child, name: name.into() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cpu_seconds(&self) -> f64 {
        procstat::cpu_seconds(self.pid())
    }

    pub fn rss_bytes(&self) -> u64 {
        procstat::rss_bytes(self.pid())
    }

    fn check_running(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!("{} exited early ({status})", self.name))),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_for_port(process: &mut Process, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        process.check_running()?;
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not listen on {addr} within {timeout:?}", process.name),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` of our own, nothing persisted.
pub struct Redis {
    pub process: Option<Process>,
    pub addr: SocketAddr,
}

impl Redis {
    pub fn start() -> io::Result<Redis> {
        let port = free_port()?;
        let mut process = Process::spawn(
            "redis-server",
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_for_port(&mut process, addr, Duration::from_secs(10))?;
        Ok(Redis { process: Some(process), addr })
    }

    /// A Redis someone else runs.
    pub fn existing(addr: SocketAddr) -> Redis {
        Redis { process: None, addr }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.process.as_ref().map_or(0.0, Process::cpu_seconds)
    }

    /// Calls per command since start (`INFO commandstats`), e.g. `("publish", 1200)`.
    pub fn command_calls(&self) -> io::Result<Vec<(String, u64)>> {
        let mut stream = TcpStream::connect(self.addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n")?;
        let mut reader = BufReader::new(stream);
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let length: usize = header.trim().trim_start_matches('$').parse().map_err(io::Error::other)?;
        let mut body = vec![0; length + 2];
        reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body);
        Ok(body
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
                Some((name.to_owned(), calls))
            })
            .collect())
    }

    /// Calls of `command` since start.
    pub fn calls_of(&self, command: &str) -> u64 {
        self.command_calls()
            .ok()
            .and_then(|all| all.into_iter().find(|(n, _)| n == command))
            .map_or(0, |(_, c)| c)
    }
}

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The `wspush` release binary (or, with `--via inproc`, the engine in a host process).
    Wspush,
    /// benches/baseline: Node.js ws + ioredis, the original design.
    Baseline,
    /// benches/baseline-bun: the same design on Bun.serve (uWebSockets topics) and Bun's Redis client.
    Uws,
}

impl Target {
    /// The original design (Node.js or Bun): one compat channel, no envelope, no in-process sends.
    pub fn is_baseline(self) -> bool {
        matches!(self, Target::Baseline | Target::Uws)
    }
}

/// How a wspush node is configured beyond its ports.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub redis_url: Option<String>,
    pub compat_channel: Option<String>,
    pub node_id: Option<String>,
    pub workers: usize,
    pub extra: Vec<String>,
    pub binary: Option<PathBuf>,
}

/// One server under test.
pub struct Node {
    /// `None` for a server someone else runs (`--server-ws`): no CPU or memory figures.
    pub process: Option<Process>,
    pub ws: SocketAddr,
    /// Where the HTTP API (`/socket/{id}`, `/stats`) answers; the baseline serves both on one port.
    pub api: SocketAddr,
    host: Option<Mutex<(ChildStdin, BufReader<ChildStdout>)>>,
}

fn sibling_binary(name: &str) -> io::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} not found: build it with `cargo build --release -p wspush`", path.display()),
        ))
    }
}

/// benches/baseline, with its dependencies installed.
pub fn baseline_dir() -> io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../baseline");
    if !dir.join("node_modules/ws").exists() || !dir.join("node_modules/ioredis").exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("the baseline's dependencies are missing: run `npm ci` in {}", dir.display()),
        ));
    }
    Ok(dir)
}

/// benches/baseline-bun, with bun installed (by `npm ci` there): the directory and the binary.
pub fn baseline_bun() -> io::Result<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../baseline-bun");
    let bun = dir.join("node_modules/.bin/bun");
    if !bun.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("bun is missing: run `npm ci` in {}", dir.display()),
        ));
    }
    Ok((dir, bun))
}

impl Node {
    pub fn start_wspush(options: &NodeOptions) -> io::Result<Node> {
        let (ws, api) = (local(free_port()?), local(free_port()?));
        let binary = match &options.binary {
            Some(path) => path.clone(),
            None => sibling_binary("wspush")?,
        };
        let mut command = Command::new(binary);
        command
            .args(["--ws-listen", &ws.to_string(), "--api-listen", &api.to_string()])
            .args(["--log", "warn"])
            .args(&options.extra)
            .stdout(Stdio::null());
        if options.workers > 0 {
            command.args(["--workers", &options.workers.to_string()]);
        }
        if let Some(url) = &options.redis_url {
            command.args(["--redis", url]);
        }
        if let Some(channel) = &options.compat_channel {
            command.args(["--compat-channel", channel]);
        }
        if let Some(node_id) = &options.node_id {
            command.args(["--node-id", node_id]);
        }
        let mut process = Process::spawn("wspush", &mut command)?;
        wait_for_port(&mut process, ws, Duration::from_secs(10))?;
        wait_for_port(&mut process, api, Duration::from_secs(10))?;
        Ok(Node { process: Some(process), ws, api, host: None })
    }

    pub fn start_baseline(redis_url: &str, channel: &str) -> io::Result<Node> {
        let dir = baseline_dir()?;
        Self::start_script(
            "node baseline",
            Command::new("node").arg(dir.join("server.js")),
            redis_url,
            channel,
        )
    }

    /// benches/baseline-bun/server.js under the bun that `npm ci` installed there.
    pub fn start_uws(redis_url: &str, channel: &str) -> io::Result<Node> {
        let (dir, bun) = baseline_bun()?;
        Self::start_script("bun baseline", Command::new(bun).arg(dir.join("server.js")), redis_url, channel)
    }

    /// A baseline server script: `--port`, `--redis`, `--channel`, one port for both.
    fn start_script(name: &str, command: &mut Command, redis_url: &str, channel: &str) -> io::Result<Node> {
        let port = free_port()?;
        let mut process = Process::spawn(
            name,
            command
                .args(["--port", &port.to_string(), "--redis", redis_url, "--channel", channel])
                .stdout(Stdio::null()),
        )?;
        let addr = local(port);
        wait_for_port(&mut process, addr, Duration::from_secs(10))?;
        // The Node.js baseline listens before its subscription is made; /stats answers either
        // way, so give the SUBSCRIBE its round trip.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Node { process: Some(process), ws: addr, api: addr, host: None })
    }

    /// `wspush-bench host`: an engine in a process of its own that sends what it is told to,
    /// in-process (in cluster mode with `redis`: URL and node id). `api` is meaningless for it.
    pub fn start_host(workers: usize, extra: &[String], redis: Option<(String, String)>) -> io::Result<Node> {
        let ws = local(free_port()?);
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(["host", "--ws-listen", &ws.to_string(), "--workers", &workers.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some((url, node_id)) = redis {
            command.args(["--redis", &url, "--node-id", &node_id]);
        }
        let mut process = Process::spawn("wspush-bench host", &mut command)?;
        let stdin = process.child.stdin.take().expect("piped");
        let stdout = BufReader::new(process.child.stdout.take().expect("piped"));
        wait_for_port(&mut process, ws, Duration::from_secs(10))?;
        Ok(Node { process: Some(process), ws, api: ws, host: Some(Mutex::new((stdin, stdout))) })
    }

    /// A server someone else runs, its WebSocket and HTTP API addresses.
    pub fn external(ws: SocketAddr, api: SocketAddr) -> Node {
        Node { process: None, ws, api, host: None }
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.process.as_ref().map_or(0.0, Process::cpu_seconds)
    }

    pub fn rss_bytes(&self) -> u64 {
        self.process.as_ref().map_or(0, Process::rss_bytes)
    }

    /// Sends a line to the host (a plan, or `stats`).
    pub fn host_send(&self, line: &str) -> io::Result<()> {
        let host = self.host.as_ref().ok_or_else(|| io::Error::other("not a host node"))?;
        let mut host = host.lock().expect("not poisoned");
        writeln!(host.0, "{line}")?;
        host.0.flush()
    }

    /// The host's next answer.
    pub fn host_answer(&self) -> io::Result<Value> {
        let host = self.host.as_ref().ok_or_else(|| io::Error::other("not a host node"))?;
        let mut host = host.lock().expect("not poisoned");
        let mut line = String::new();
        if host.1.read_line(&mut line)? == 0 {
            return Err(io::Error::other("the host exited"));
        }
        serde_json::from_str(&line).map_err(io::Error::other)
    }

    /// `GET /stats` (wspush and the baseline both answer it; a host answers in that shape).
    pub fn stats(&self) -> io::Result<Value> {
        if self.host.is_some() {
            self.host_send("stats")?;
            return self.host_answer();
        }
        http_get_json(self.api, "/stats")
    }
}

fn local(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// A GET, its body parsed as JSON.
pub fn http_get_json(addr: SocketAddr, path: &str) -> io::Result<Value> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    let body = crate::publish::read_http_body(&mut reader)?;
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(io::Error::other(format!("GET {path} on {addr}: {}", status.trim())));
    }
    serde_json::from_slice(&body).map_err(|e| io::Error::other(format!("GET {path} on {addr}: {e}")))
}
