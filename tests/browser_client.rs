//! The browser client (`clients/js/wspush.js`, served at `GET /client.js`) in headless
//! Chromium: a page imports it from the real server binary, and reports everything it sees to
//! a listener of the test. Through a TCP proxy that the test cuts while it pushes, with enough
//! history the page gets every message exactly once, in order, and never the `lost` event;
//! with too little, `lost` exactly once and delivery goes on. With its server killed (SIGKILL)
//! and restarted in cluster mode, the page reconnects with a fresh token for every attempt,
//! gets what was pushed meanwhile through another node exactly once, and `stop()` ends it.
//! Against a server without history it connects all the same; and the demo page (`GET /`,
//! used through `tests/browser/demo.js`) receives a push through the client. Over `wss://`
//! (a certificate from the test's CA, which Chromium is told to accept by its key's hash)
//! with `--compression`, the page's socket negotiates permessage-deflate, gets every push
//! byte-exact once and in order, the server deflates exactly those at or over the threshold,
//! and what crosses the wire both ways (counted by a proxy) is a fraction of the messages'
//! length: Chromium compresses what the page sends too.
//!
//! Needs `/usr/bin/chromium` (Debian's `chromium`, or `WSPUSH_CHROMIUM`), Node.js,
//! `tests/browser/node_modules` (`npm ci` there) and `redis-server`; `scripts/ensure-tools.sh`
//! installs them. Without the browser tools the tests skip with a message, unless
//! `WSPUSH_REQUIRE_CHROMIUM=1` (set by `scripts/test.sh`), which makes that a failure.

#[path = "support.rs"]
mod support;
#[path = "tls_support.rs"]
mod tls_support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};

use support::*;

/// How long a wait on the page goes on while the page reports nothing new: generous, a
/// loaded 2-core machine runs Chromium (a page that keeps reporting may take longer, up to
/// [`PAGE_LIMIT`]).
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most any one wait on the page takes, progress or not.
const PAGE_LIMIT: Duration = Duration::from_secs(120);

/// One browser at a time: the machines are small.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------
// What the page reports.

/// One entry of the page's report, in the order the page saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// From the client's events: `text`, `binary` (a `message`), `lost` (its position),
    /// `state` (`connecting`, `open`, `closed CODE`, `stopped`); `token` (the page's token
    /// callback was called); from the page's instrumented `WebSocket`: `connect` (its URL),
    /// `open` (the selected protocol), `extensions` (the negotiated ones, as the server
    /// answered), `control` (a `!pos`/`!lost` text), `close` (the code); `error`.
    kind: String,
    value: String,
}

/// The page's report so far, with a condition variable for waiting on it.
#[derive(Default)]
struct Report {
    entries: Mutex<Vec<Entry>>,
    changed: Condvar,
}

impl Report {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn append(&self, batch: Vec<Entry>) {
        self.lock().extend(batch);
        self.changed.notify_all();
    }

    /// Waits until `done` holds for the report; panics with `what` and the report when the
    /// page reports nothing new for [`PAGE_TIMEOUT`], or after [`PAGE_LIMIT`] in all.
    fn wait(&self, what: &str, mut done: impl FnMut(&[Entry]) -> bool) {
        let limit = Instant::now() + PAGE_LIMIT;
        let mut entries = self.lock();
        loop {
            if done(&entries) {
                return;
            }
            let seen = entries.len();
            let left = limit.saturating_duration_since(Instant::now()).min(PAGE_TIMEOUT);
            let (next, _) = self
                .changed
                .wait_timeout_while(entries, left, |entries| entries.len() == seen)
                .unwrap_or_else(|e| e.into_inner());
            entries = next;
            if entries.len() == seen {
                panic!(
                    "the page did not report {what} (nothing new for {left:?}, or {PAGE_LIMIT:?} in all); \
                     its report: {}",
                    summary(&entries)
                );
            }
        }
    }

    /// Waits until the page received the message `word` (its first word).
    fn wait_message(&self, word: &str) {
        self.wait(&format!("the message {word:?}"), |entries| {
            entries.iter().any(|e| is_message(e) && short(&e.value) == word)
        });
    }

    fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }
}

fn is_message(entry: &Entry) -> bool {
    entry.kind == "text" || entry.kind == "binary"
}

/// The report, each run of messages as `first..=last` (by their first word).
fn summary(entries: &[Entry]) -> String {
    let mut out = Vec::new();
    let mut run: Option<(String, String)> = None;
    for entry in entries {
        if is_message(entry) {
            let number = short(&entry.value).to_owned();
            run = Some(match run {
                Some((first, _)) => (first, number),
                None => (number.clone(), number),
            });
            continue;
        }
        if let Some((first, last)) = run.take() {
            out.push(format!("messages {first}..={last}"));
        }
        out.push(format!("{} {}", entry.kind, entry.value));
    }
    if let Some((first, last)) = run {
        out.push(format!("messages {first}..={last}"));
    }
    format!("{} entries: {}", entries.len(), out.join(", "))
}

// ---------------------------------------------------------------------------------------
// The test's web server: the page, and where the page posts its report.

/// The test page: the client imported from the server's `GET /client.js`, connecting to
/// `__WS__` (`ws://HOST:PORT` or `wss://HOST:PORT`) with the options `__OPTIONS__` (a
/// JavaScript object). Everything it sees is posted to `/report` in order (one request at a
/// time); it takes commands from `GET /command`: `stop`, and `send TEXT` (TEXT sent on the
/// client's latest socket).
const PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>wspush client under test</title>
<script>
(() => {
  const pending = [];
  let posting = false;
  function flush() {
    if (posting || pending.length === 0) return;
    posting = true;
    fetch("/report", { method: "POST", body: JSON.stringify(pending.splice(0)) })
      .then((response) => { if (!response.ok) throw new Error("status " + response.status); })
      .catch((error) => console.error("cannot post the report: " + error))
      .finally(() => { posting = false; flush(); });
  }
  window.record = (kind, value) => { pending.push({ kind, value: value === undefined ? "" : String(value) }); flush(); };
  window.addEventListener("error", (e) => record("error", e.message));
  // The client's sockets, observed (its own handlers run after these).
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      window.socket = this;
      record("connect", url);
      this.addEventListener("open", () => {
        record("open", this.protocol);
        record("extensions", this.extensions);
      });
      this.addEventListener("message", ({ data }) => {
        if (typeof data === "string" && data[0] === "!") record("control", data);
      });
      this.addEventListener("close", (e) => record("close", e.code));
    }
  };
})();
</script>
<script type="module">
import { WsPushClient } from "http://__API__/client.js";
const client = new WsPushClient("__WS__", "__ID__", __OPTIONS__);
client.addEventListener("message", ({ data }) =>
  typeof data === "string" ? record("text", data) : record("binary", new TextDecoder().decode(data)));
client.addEventListener("lost", ({ position }) => record("lost", position));
client.addEventListener("state", ({ state, code }) => record("state", state === "closed" ? `closed ${code}` : state));
(async () => {
  for (;;) {
    const response = await fetch("/command");
    if (response.status !== 200) continue;
    const command = await response.text();
    if (command === "stop") client.stop();
    else if (command.startsWith("send ")) window.socket.send(command.slice("send ".length));
  }
})();
</script>
"#;

/// The page's token callback: counts itself in the report and fetches a fresh token from the
/// test.
const TOKEN_OPTION: &str = r#"async () => { record("token"); return (await fetch("/token")).text(); }"#;

/// What the test's web server serves, and the test's side of the page's requests.
struct Site {
    page: String,
    report: Arc<Report>,
    /// Commands for the page, taken one per `GET /command`.
    commands: Mutex<VecDeque<String>>,
    command_ready: Condvar,
    /// `GET /token` mints a token for this id with this secret (HS256, valid 5 minutes).
    token: Option<(String, String)>,
}

impl Site {
    /// Has the page run `command`.
    fn command(&self, command: &str) {
        self.commands.lock().unwrap_or_else(|e| e.into_inner()).push_back(command.to_owned());
        self.command_ready.notify_all();
    }

    /// The next command, or `None` after a while without one (the page asks again).
    fn next_command(&self) -> Option<String> {
        let commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        let (mut commands, _) = self
            .command_ready
            .wait_timeout_while(commands, Duration::from_secs(20), |commands| commands.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        commands.pop_front()
    }

    fn mint_token(&self) -> Option<String> {
        let (secret, id) = self.token.as_ref()?;
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 300;
        let claims = serde_json::json!({ "sub": id, "exp": exp });
        Some(
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
                .unwrap(),
        )
    }
}

/// Serves the site's page at `/`, takes the page's reports at `POST /report`, hands out
/// commands at `GET /command` and tokens at `GET /token`, on a loopback port (Chromium lets
/// a loopback page reach loopback addresses). Its threads end with the test process.
fn serve_site(site: Arc<Site>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("the page server cannot bind");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let site = site.clone();
            thread::spawn(move || serve_connection(stream, &site));
        }
    });
    addr
}

/// Answers requests on one keep-alive connection until it ends.
fn serve_connection(stream: TcpStream, site: &Site) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut words = request_line.split(' ');
        let (status, content_type, answer) = match (words.next(), words.next()) {
            (Some("GET"), Some("/")) => ("200 OK", "text/html; charset=utf-8", site.page.clone()),
            (Some("POST"), Some("/report")) => match parse_report(&body) {
                Ok(batch) => {
                    site.report.append(batch);
                    ("200 OK", "text/plain", String::new())
                }
                Err(e) => ("400 Bad Request", "text/plain", e),
            },
            (Some("GET"), Some("/command")) => match site.next_command() {
                Some(command) => ("200 OK", "text/plain", command),
                None => ("204 No Content", "text/plain", String::new()),
            },
            (Some("GET"), Some("/token")) => match site.mint_token() {
                Some(token) => ("200 OK", "text/plain", token),
                None => ("404 Not Found", "text/plain", String::new()),
            },
            _ => ("404 Not Found", "text/plain", String::new()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(answer.as_bytes())).is_err() {
            return;
        }
    }
}

fn parse_report(body: &[u8]) -> Result<Vec<Entry>, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let items = value.as_array().ok_or("not an array")?;
    items
        .iter()
        .map(|item| match (item["kind"].as_str(), item["value"].as_str()) {
            (Some(kind), Some(value)) => Ok(Entry { kind: kind.to_owned(), value: value.to_owned() }),
            _ => Err(format!("bad entry {item}")),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Chromium, through tests/browser/drive.js.

/// Whether the browser tests can run (else they skip, saying why, or fail when required).
fn browser_present() -> bool {
    tool_present_or_skip("the browser test", chromium_missing(), "WSPUSH_REQUIRE_CHROMIUM")
}

/// A page open in headless Chromium; closing it (drop) closes the browser.
struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
}

impl Browser {
    /// Opens `url` in a Chromium started with `flags` added; returns once the page has
    /// loaded.
    fn open(url: &str, flags: &[String]) -> Browser {
        let mut child = Command::new("node")
            .arg(workspace_root().join("tests/browser/drive.js"))
            .arg(url)
            .args(flags)
            .env("WSPUSH_CHROMIUM", chromium_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start node");
        let output = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready) = mpsc::channel();
        for (stream, prefix, tx) in [
            (Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, "out| ", Some(ready_tx)),
            (Box::new(child.stderr.take().unwrap()), "err| ", None),
        ] {
            let output = output.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line == "ready" {
                        if let Some(tx) = &tx {
                            let _ = tx.send(());
                        }
                    }
                    let mut output = output.lock().unwrap_or_else(|e| e.into_inner());
                    output.push_str(prefix);
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let stdin = child.stdin.take();
        let browser = Browser { child, stdin, output };
        if ready.recv_timeout(Duration::from_secs(90)).is_err() {
            panic!("Chromium did not load {url} within 90 s:\n{}", browser.output());
        }
        browser
    }

    fn output(&self) -> String {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        drop(self.stdin.take()); // drive.js closes the browser and exits
        if wait_timeout(&mut self.child, TIMEOUT).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("drive.js and the page said:\n{}", self.output());
        }
    }
}

/// A page open in headless Chromium running the client, and the site that serves it.
struct OpenPage {
    // Dropped first (fields drop in order): the browser closes before the site's state goes.
    _browser: Browser,
    site: Arc<Site>,
}

/// Opens the test page: the client from `api`'s `GET /client.js`, connecting to `ws`
/// (`ws://HOST:PORT` or `wss://HOST:PORT`) as `id` with `options` (a JavaScript object);
/// `token`: `GET /token` mints tokens for the id with this secret. `flags` go to Chromium.
fn open_page(
    api: SocketAddr,
    ws: &str,
    id: &str,
    options: &str,
    token: Option<&str>,
    flags: &[String],
) -> OpenPage {
    let page = PAGE
        .replace("__API__", &api.to_string())
        .replace("__WS__", ws)
        .replace("__ID__", id)
        .replace("__OPTIONS__", options);
    let site = Arc::new(Site {
        page,
        report: Arc::default(),
        commands: Mutex::default(),
        command_ready: Condvar::new(),
        token: token.map(|secret| (secret.to_owned(), id.to_owned())),
    });
    let page_addr = serve_site(site.clone());
    let browser = Browser::open(&format!("http://{page_addr}/"), flags);
    OpenPage { _browser: browser, site }
}

/// Everything a proxy test needs: the server, the proxy in front of its WebSocket listener,
/// the page's report, and the page open in Chromium, connected through the proxy as `id`.
struct Setup {
    // Dropped first (fields drop in order): the browser closes before the proxy and the server.
    _page: OpenPage,
    report: Arc<Report>,
    proxy: CutProxy,
    server: Server,
}

fn setup(history_size: &str, id: &str) -> Option<Setup> {
    if !browser_present() {
        return None;
    }
    let server = Server::start(&["--history-size", history_size]);
    let proxy = CutProxy::start(server.ws_addr);
    let page = open_page(server.api_addr, &format!("ws://{}", proxy.addr), id, "{}", None, &[]);
    let report = page.site.report.clone();
    Some(Setup { _page: page, report, proxy, server })
}

impl Report {
    /// Waits for the page's first `!pos`: its socket is live. Returns its epoch.
    fn wait_live(&self) -> String {
        self.wait("the first !pos", |entries| entries.iter().any(|e| e.kind == "control"));
        let entries = self.entries();
        let first = entries.iter().find(|e| e.kind == "control").unwrap();
        let position = first.value.strip_prefix("!pos ").unwrap_or_else(|| panic!("not a !pos: {first:?}"));
        let (epoch, offset) = position.split_once(':').unwrap();
        assert_eq!(offset, "0", "a fresh id starts at 0: {}", summary(&entries));
        assert!(entries.iter().any(|e| e.kind == "open" && e.value == "wspush.v1"), "{}", summary(&entries));
        epoch.to_owned()
    }

    /// Waits until the page's socket is live for the `n`th time (its `n`th `!pos`: a
    /// resumed socket gets it after its replay).
    fn wait_live_again(&self, n: usize) {
        self.wait(&format!("!pos number {n}"), |entries| {
            entries.iter().filter(|e| e.kind == "control" && e.value.starts_with("!pos ")).count() >= n
        });
    }
}

impl Setup {
    /// Cuts the page's connection; it must have had one.
    fn cut(&self) {
        let cut = self.proxy.cut();
        assert_eq!(
            cut,
            1,
            "the page had {cut} connections through the proxy ({} accepted): {}",
            self.proxy.accepted(),
            summary(&self.report.entries())
        );
    }
}

/// A keep-alive connection to the API, for one batch of pushes (the API closes connections
/// idle for a minute, and a loaded machine can make a wait that long).
fn connect_api(server: &Server) -> HttpConnection {
    HttpConnection::connect(server.api_addr).expect("cannot connect to the API")
}

/// Pushes `body` (binary or text); checks that it got `offset`.
fn push(api: &mut HttpConnection, id: &str, body: &str, binary: bool, offset: u64) {
    let headers: &[(&str, &str)] = if binary { &[("Content-Type", "application/octet-stream")] } else { &[] };
    let response =
        api.request("POST", &format!("/socket/{id}"), headers, body.as_bytes()).expect("POST /socket");
    assert_eq!(response.status(), 200, "{response:?}");
    let answer = json(&response);
    assert_eq!(answer["offset"], offset, "{answer}");
}

/// Message `n` of the numbered run: binary for every 7th, text otherwise; its body is the
/// number, and for 401..=700 (what the page replays after the second cut) the number and
/// 8 KB more, so that the replay (2.4 MB, more than half of `--max-buffered-bytes`) is paced
/// by the server and still in flight when the third cut comes.
fn numbered(n: u64) -> (bool, String) {
    let body = if (401..=700).contains(&n) { format!("{n} {}", "x".repeat(8000)) } else { n.to_string() };
    (n.is_multiple_of(7), body)
}

/// Pushes the numbered messages `numbers` (message `n` gets offset `n`).
fn push_numbered(api: &mut HttpConnection, id: &str, numbers: std::ops::RangeInclusive<u64>) {
    for n in numbers {
        let (binary, body) = numbered(n);
        push(api, id, &body, binary, n);
    }
}

/// Pushes `numbers` from another thread, on a connection of its own.
fn push_numbered_in_background(
    server: &Server,
    id: &str,
    numbers: std::ops::RangeInclusive<u64>,
) -> thread::JoinHandle<()> {
    let mut api = connect_api(server);
    let id = id.to_owned();
    thread::spawn(move || push_numbered(&mut api, &id, numbers))
}

/// A message's number (its first word).
fn short(value: &str) -> &str {
    value.split(' ').next().unwrap_or(value)
}

fn messages(entries: &[Entry]) -> Vec<(String, String)> {
    entries.iter().filter(|e| is_message(e)).map(|e| (e.kind.clone(), e.value.clone())).collect()
}

fn count(entries: &[Entry], kind: &str) -> usize {
    entries.iter().filter(|e| e.kind == kind).count()
}

#[test]
fn a_page_cut_off_three_times_receives_every_message_exactly_once_in_order() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let id = "browser-1";
    let Some(setup) = setup("2000", id) else { return };
    let report = &setup.report;
    let epoch = setup.report.wait_live();

    // 1. Mid-stream: the proxy cuts the connection after 3,000 bytes from the server (about
    // 160 of the messages, most likely inside a frame) while the rest are being pushed; the
    // pushing goes on while the page reconnects (after its jittered wait).
    setup.proxy.cut_after(3000);
    let pusher = push_numbered_in_background(&setup.server, id, 1..=400);
    report.wait("the first close", |entries| count(entries, "close") == 1);
    pusher.join().expect("pushing 1..=400 failed");
    setup.report.wait_live_again(2);
    report.wait_message("400");

    // 2. At a quiet point: everything after it is pushed while the page is away (its
    // reconnection held by the proxy), so it all comes from history.
    setup.proxy.hold();
    setup.cut();
    push_numbered(&mut connect_api(&setup.server), id, 401..=700);
    setup.proxy.wait_held(1, PAGE_TIMEOUT);

    // 3. In the middle of the replay (2.4 MB; cut after 1 MB), while live messages are
    // pushed too: the page resumes from the middle of its replay.
    setup.proxy.cut_after(1_000_000);
    let pusher = push_numbered_in_background(&setup.server, id, 701..=1000);
    setup.proxy.release();
    report.wait("the third close", |entries| count(entries, "close") == 3);
    pusher.join().expect("pushing 701..=1000 failed");
    push(&mut connect_api(&setup.server), id, "end", false, 1001);
    report.wait_message("end");

    let entries = report.entries();
    let expected: Vec<(String, String)> = (1..=1000u64)
        .map(|n| match numbered(n) {
            (true, body) => ("binary".to_owned(), body),
            (false, body) => ("text".to_owned(), body),
        })
        .chain([("text".to_owned(), "end".to_owned())])
        .collect();
    let got = messages(&entries);
    if got != expected {
        let at = got.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()));
        let word = |m: Option<&(String, String)>| m.map(|(kind, value)| format!("{kind} {}", short(value)));
        panic!(
            "the page did not get 1..=1000 once each in order: {} messages, the first difference at index {at} \
             (got {:?}, expected {:?}); {}",
            got.len(),
            word(got.get(at)),
            word(expected.get(at)),
            summary(&entries)
        );
    }
    assert_eq!(count(&entries, "lost"), 0, "the lost event came: {}", summary(&entries));
    assert_eq!(count(&entries, "error"), 0, "{}", summary(&entries));
    // One connection, then one resume per cut, each from where the page was.
    let connects: Vec<&Entry> = entries.iter().filter(|e| e.kind == "connect").collect();
    assert_eq!(connects.len(), 4, "{}", summary(&entries));
    assert!(!connects[0].value.contains("since"), "{}", summary(&entries));
    let since: Vec<u64> = connects[1..]
        .iter()
        .map(|connect| {
            let (_, since) = connect
                .value
                .split_once(&format!("?since={epoch}:"))
                .unwrap_or_else(|| panic!("{}", summary(&entries)));
            since.parse().unwrap()
        })
        .collect();
    // From inside the first stream, from the quiet point, from inside the replay.
    assert!(since[0] > 0 && since[0] < 400, "{since:?}: {}", summary(&entries));
    assert_eq!(since[1], 400, "{}", summary(&entries));
    assert!(since[2] > 400 && since[2] < 700, "{since:?}: {}", summary(&entries));
    assert_eq!(count(&entries, "close"), 3, "{}", summary(&entries));
    let controls = entries.iter().filter(|e| e.kind == "control");
    assert!(controls.clone().all(|e| e.value.starts_with("!pos ")), "{}", summary(&entries));
    assert_eq!(server_counter(&setup.server, "history_resumes"), 3);
    assert_eq!(server_counter(&setup.server, "history_lost_signals"), 0);
    eprintln!(
        "browser resume: 1,000 messages through 3 cuts in {:?}: {}",
        started.elapsed(),
        summary(&entries)
    );
}

#[test]
fn a_page_that_missed_more_than_the_history_gets_the_lost_event_once() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let id = "browser-2";
    let Some(setup) = setup("10", id) else { return };
    let report = &setup.report;
    let epoch = setup.report.wait_live();

    let mut api = connect_api(&setup.server);
    for (i, body) in ["a1", "a2", "a3"].into_iter().enumerate() {
        push(&mut api, id, body, false, i as u64 + 1);
    }
    report.wait_message("a3");
    // Away while 50 messages are pushed: history keeps only the last 10.
    setup.proxy.hold();
    setup.cut();
    let mut api = connect_api(&setup.server);
    for n in 4..=53 {
        push(&mut api, id, &format!("x{n}"), false, n);
    }
    setup.proxy.wait_held(1, PAGE_TIMEOUT);
    setup.proxy.release();
    report.wait("the lost event", |entries| entries.iter().any(|e| e.kind == "lost"));
    let mut api = connect_api(&setup.server);
    for (i, body) in ["b1", "b2", "b3", "end"].into_iter().enumerate() {
        push(&mut api, id, body, false, i as u64 + 54);
    }
    report.wait_message("end");

    let entries = report.entries();
    let texts = |values: &[&str]| -> Vec<(String, String)> {
        values.iter().map(|v| ("text".to_owned(), (*v).to_owned())).collect()
    };
    assert_eq!(
        messages(&entries),
        texts(&["a1", "a2", "a3", "b1", "b2", "b3", "end"]),
        "{}",
        summary(&entries)
    );
    assert_eq!(count(&entries, "lost"), 1, "{}", summary(&entries));
    let lost_event = entries.iter().position(|e| e.kind == "lost").unwrap();
    assert_eq!(entries[lost_event].value, format!("{epoch}:53"), "delivery goes on from there");
    let lost = entries.iter().position(|e| e.kind == "control" && e.value == format!("!lost {epoch}:53"));
    assert_eq!(
        lost,
        Some(lost_event - 1),
        "the !lost position comes right before the lost event: {}",
        summary(&entries)
    );
    assert!(entries[lost_event..].iter().any(|e| e.value == "b1"), "{}", summary(&entries));
    assert_eq!(count(&entries, "connect"), 2, "{}", summary(&entries));
    assert_eq!(count(&entries, "error"), 0, "{}", summary(&entries));
    assert_eq!(server_counter(&setup.server, "history_lost_signals"), 1);
}

/// The secret of the cluster test's nodes (HS256 needs at least 32 bytes).
const SECRET: &str = "the browser test's secret, 32 bytes or more";

/// A node of the cluster test: history in the Redis at `redis`, tokens required; on
/// `ws_listen` when given (the restarted node takes its former port).
fn start_node(redis: &RedisServer, ws_listen: Option<&str>) -> Server {
    let url = redis.url();
    let mut args = vec!["--redis", &url, "--history-size", "1000", "--auth-jwt-secret", SECRET];
    if let Some(addr) = ws_listen {
        args.extend(["--ws-listen", addr]);
    }
    Server::start(&args)
}

/// The page's states, `connecting` / `closed CODE` runs folded: what a user watching the
/// state events sees.
fn states(entries: &[Entry]) -> Vec<String> {
    entries.iter().filter(|e| e.kind == "state").map(|e| e.value.clone()).collect()
}

#[test]
fn a_page_whose_server_is_killed_and_restarted_gets_what_was_pushed_meanwhile_exactly_once() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    if !browser_present() {
        return;
    }
    let id = "browser-3";
    let redis = RedisServer::start();
    let ws_listen = format!("127.0.0.1:{}", free_port());
    let mut node = start_node(&redis, Some(&ws_listen));
    let other = start_node(&redis, None);
    // Short waits (a cap of 2 s), so that the page is back soon after the node.
    let options = format!("{{ token: {TOKEN_OPTION}, initialDelay: 250, maxDelay: 2000 }}");
    let page = open_page(node.api_addr, &format!("ws://{}", node.ws_addr), id, &options, Some(SECRET), &[]);
    let report = &page.site.report;
    let epoch = report.wait_live();

    // 1. Live, from the node the page is on.
    let mut api = connect_api(&node);
    for n in 1..=50 {
        push(&mut api, id, &n.to_string(), false, n);
    }
    report.wait_message("50");

    // 2. The node crashes (no close frame). The page's attempts fail while it is down, and
    // everything pushed meanwhile through the other node is kept in Redis.
    node.kill9();
    report.wait("a failed reconnect", |entries| {
        entries.iter().filter(|e| e.kind == "state" && e.value.starts_with("closed")).count() >= 2
    });
    let mut api = connect_api(&other);
    for n in 51..=100 {
        push(&mut api, id, &n.to_string(), false, n);
    }

    // 3. The node is back on its port: the page resumes from 50, gets 51..=100 from the
    // history, then live ones.
    let node = start_node(&redis, Some(&ws_listen));
    report.wait_live_again(2);
    let mut api = connect_api(&node);
    for n in 101..=150 {
        push(&mut api, id, &n.to_string(), false, n);
    }
    report.wait_message("150");

    let entries = report.entries();
    let expected: Vec<(String, String)> = (1..=150).map(|n| ("text".to_owned(), n.to_string())).collect();
    assert_eq!(messages(&entries), expected, "every message once, in order: {}", summary(&entries));
    assert_eq!(count(&entries, "lost"), 0, "{}", summary(&entries));
    assert_eq!(count(&entries, "error"), 0, "{}", summary(&entries));
    // Every attempt after the first resumes from 50, and each had a fresh token first.
    let connects: Vec<&Entry> = entries.iter().filter(|e| e.kind == "connect").collect();
    assert!(connects.len() >= 3, "a first connection, a failed attempt, a resume: {}", summary(&entries));
    assert!(!connects[0].value.contains("since"), "{}", summary(&entries));
    for connect in &connects[1..] {
        assert!(connect.value.ends_with(&format!("?since={epoch}:50")), "{}", summary(&entries));
    }
    let asks: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == "token" || e.kind == "connect")
        .map(|e| e.kind.as_str())
        .collect();
    let expected_asks: Vec<&str> = connects.iter().flat_map(|_| ["token", "connect"]).collect();
    assert_eq!(asks, expected_asks, "a token before every attempt: {}", summary(&entries));
    // What the state events said: connected, the crash (1006: no close frame), failed
    // attempts while the node was down, connected again.
    let seen = states(&entries);
    let attempts = connects.len();
    let mut expected_states = vec!["connecting".to_owned(), "open".to_owned()];
    for _ in 1..attempts {
        expected_states.extend(["closed 1006".to_owned(), "connecting".to_owned()]);
    }
    expected_states.push("open".to_owned());
    assert_eq!(seen, expected_states, "{}", summary(&entries));

    // 4. stop(): the page closes its socket (1000) and never connects again.
    page.site.command("stop");
    report.wait("the stopped state", |entries| states(entries).last().is_some_and(|s| s == "stopped"));
    report.wait("the close of the stopped socket", |entries| {
        entries.iter().rev().find(|e| e.kind == "close").is_some_and(|e| e.value == "1000")
    });
    eventually_eq(TIMEOUT, "the node's connections after stop()", 0, || server_counter(&node, "connections"));
    // Nothing to await for an absence: watch for longer than the longest wait the page could
    // have scheduled (the 2 s cap), then check that no token was asked and no socket made.
    thread::sleep(Duration::from_secs(3));
    let after = report.entries();
    assert_eq!(count(&after, "connect"), attempts, "no reconnect after stop(): {}", summary(&after));
    assert_eq!(count(&after, "token"), attempts, "no token asked after stop(): {}", summary(&after));
    assert_eq!(server_counter(&node, "connections"), 0);
    assert_eq!(states(&after).last().map(String::as_str), Some("stopped"));
    eprintln!("browser kill and restart: {}", summary(&after));
}

/// A server without history selects no `wspush.v1`; the client still connects (it offers
/// `wspush.bearer` too, which such a server selects: Chromium fails a handshake that selects
/// none of the offered protocols) and gets plain messages.
#[test]
fn a_page_connects_to_a_server_without_history_and_gets_plain_messages() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    if !browser_present() {
        return;
    }
    let id = "browser-4";
    let server = Server::start(&[]);
    let page = open_page(server.api_addr, &format!("ws://{}", server.ws_addr), id, "{}", None, &[]);
    let report = &page.site.report;
    report.wait("the open state", |entries| states(entries).iter().any(|s| s == "open"));
    eventually_eq(TIMEOUT, "the page's socket on the server", 1, || server_counter(&server, "connections"));
    let response = server.post(&format!("/socket/{id}"), "plain hello");
    assert_eq!(json(&response)["sockets"], 1, "{response:?}");
    report.wait_message("plain");

    let entries = report.entries();
    assert_eq!(messages(&entries), [("text".to_owned(), "plain hello".to_owned())], "{}", summary(&entries));
    let opened: Vec<&str> = entries.iter().filter(|e| e.kind == "open").map(|e| e.value.as_str()).collect();
    assert_eq!(opened, ["wspush.bearer"], "{}", summary(&entries));
    assert_eq!(states(&entries), ["connecting", "open"], "{}", summary(&entries));
    assert_eq!(count(&entries, "control") + count(&entries, "error"), 0, "{}", summary(&entries));
}

/// The demo page (`GET /`) uses the client: connected with history on, a push made with the
/// page's own button arrives with its offset, and Disconnect closes the socket for good.
#[test]
fn the_demo_page_connects_with_the_client_and_receives_a_push() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    if !browser_present() {
        return;
    }
    let server = Server::start(&["--history-size", "10"]);
    let output = Command::new("node")
        .arg(workspace_root().join("tests/browser/demo.js"))
        .arg(format!("http://{}/", server.api_addr))
        .env("WSPUSH_CHROMIUM", chromium_path())
        .output()
        .expect("cannot start node");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tests/browser/demo.js failed ({}):\n{stderr}", output.status);
    let lines: Vec<String> = serde_json::from_slice(&output.stdout).expect("demo.js prints the log as JSON");
    assert_eq!(
        lines,
        ["connected as 456 (history on: resumes without loss)", "#1 order 456 shipped", "disconnected"],
        "{stderr}"
    );
    eventually_eq(TIMEOUT, "the server's connections after Disconnect", 0, || {
        server_counter(&server, "connections")
    });
    assert_eq!(server_counter(&server, "connections_opened"), 1, "one connection, no reconnect");
}

// ---------------------------------------------------------------------------------------
// wss:// with permessage-deflate.

/// What the server answers Chromium's permessage-deflate offer, and so the page's
/// `WebSocket.extensions`.
const DEFLATE_ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The compression threshold of the `wss://` test: its short pushes stay under it, the
/// others are well over.
const THRESHOLD: usize = 64;

/// A presence feed of `users` entries as JSON (about 50 bytes each): the kind of message
/// that compresses.
fn presence_feed(users: usize) -> String {
    let entries: Vec<serde_json::Value> = (0..users)
        .map(|i| {
            let status = if i % 3 == 0 { "away" } else { "online" };
            serde_json::json!({ "user": format!("user{i}"), "status": status, "room": "lobby" })
        })
        .collect();
    serde_json::to_string(&entries).unwrap()
}

/// Pushes `body` to `id` without history (no offset to check); it must reach one socket.
fn push_to_one(api: &mut HttpConnection, id: &str, body: &str, binary: bool) {
    let headers: &[(&str, &str)] = if binary { &[("Content-Type", "application/octet-stream")] } else { &[] };
    let response =
        api.request("POST", &format!("/socket/{id}"), headers, body.as_bytes()).expect("POST /socket");
    assert_eq!(response.status(), 200, "{response:?}");
    assert_eq!(json(&response)["sockets"], 1, "{response:?}");
}

/// `got` equals `expected`, or a panic naming the first difference by index and length
/// (the messages are too long to print whole).
fn assert_same_messages(got: &[(String, String)], expected: &[(String, String)]) {
    let describe =
        |m: Option<&(String, String)>| m.map(|(kind, value)| format!("{kind}, {} bytes", value.len()));
    if let Some(at) = (0..got.len().max(expected.len())).find(|&i| got.get(i) != expected.get(i)) {
        panic!(
            "the page got {} messages, not the {} pushed once each in order: the first difference at index {at} \
             (got {:?}, expected {:?})",
            got.len(),
            expected.len(),
            describe(got.get(at)),
            describe(expected.get(at)),
        );
    }
}

/// Headless Chromium over `wss://` with permessage-deflate (issue 15): the real server with a
/// certificate for 127.0.0.1 from the test's CA, `--compression` and `--echo`, in front of it a
/// TCP proxy that counts the bytes of the TLS stream. Chromium is told to accept exactly that
/// certificate (its SPKI hash in `--ignore-certificate-errors-spki-list`: verification stays
/// on, for every other certificate too; installing the test CA in an NSS database would need
/// `certutil` and a profile, and Playwright's `ignoreHTTPSErrors` would accept any
/// certificate); without the flag, the same page is refused (the server counts the failed TLS
/// handshake, the socket closes with 1006 and never opens). The page, from a loopback `http://` origin (the server's Origin check allows
/// any by default; Chromium lets a loopback page reach loopback addresses), runs the client
/// against `wss://`. Every push, short and long, text and binary, ASCII or not, arrives once,
/// in order, byte-exact; the socket reports permessage-deflate as the server answered it; the
/// server deflated exactly the pushes at or over the threshold, and their bytes on the wire are
/// a fraction of theirs. A message the page sends is compressed by Chromium (its bytes on the
/// wire a fraction of its length), inflated by the server to its exact bytes (the echo comes
/// back whole, `bytes_in` counts its length) and its echo compressed.
#[test]
fn a_page_over_wss_negotiates_permessage_deflate_and_gets_every_push_byte_exact() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    if !browser_present() {
        return;
    }
    let started = Instant::now();
    let id = "browser-wss";
    let ca = tls_support::TestCa::new();
    let served = ca.server_cert("wspush browser test");
    let (cert, key) = served.write(&tls_support::scratch_dir("browser-wss"), "server");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let threshold = THRESHOLD.to_string();
    let server = Server::start(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--compression",
        "--compression-threshold",
        &threshold,
        "--echo",
    ]);
    assert_eq!(server.ws_scheme, "wss");
    let proxy = CutProxy::start(server.ws_addr);
    let wss = format!("wss://{}", proxy.addr);
    let first_state = |report: &Report| {
        report.wait("the open or closed state", |entries| {
            states(entries).iter().any(|s| s == "open" || s.starts_with("closed"))
        });
        report.entries()
    };

    // Chromium verifies the certificate: without being told, it refuses it (the server
    // counts the failed TLS handshake) and the socket never opens.
    {
        let page = open_page(server.api_addr, &wss, id, "{}", None, &[]);
        let entries = first_state(&page.site.report);
        assert_eq!(states(&entries)[..2], ["connecting", "closed 1006"], "{}", summary(&entries));
        eventually(TIMEOUT, "the refused certificate counted", || {
            server_counter(&server, "handshake_failures.tls") >= 1
        });
    }
    assert_eq!(server_counter(&server, "connections_opened"), 0);

    let accept_served = format!("--ignore-certificate-errors-spki-list={}", served.spki_sha256_base64());
    let page = open_page(server.api_addr, &wss, id, "{}", None, &[accept_served]);
    let report = &page.site.report;
    let entries = first_state(report);
    assert_eq!(states(&entries), ["connecting", "open"], "{}", summary(&entries));
    let extensions: Vec<&str> =
        entries.iter().filter(|e| e.kind == "extensions").map(|e| e.value.as_str()).collect();
    assert_eq!(extensions, [DEFLATE_ANSWER], "{}", summary(&entries));
    eventually_eq(TIMEOUT, "the page's socket on the server", 1, || server_counter(&server, "connections"));
    assert_eq!(server_counter(&server, "messages_deflated"), 0);

    // Under the threshold, over it; text (non-ASCII too) and binary; one longer than a TLS
    // record (16 KiB) and than the deflate window (32 KiB).
    let accents = "Grüße aus Zürich, 東京からこんにちは 🚀 ".repeat(8);
    let pushes: Vec<(bool, String)> = vec![
        (false, "hello".to_owned()),
        (false, presence_feed(100)),
        (false, accents),
        (false, "é🚀ü".to_owned()),
        (true, presence_feed(40)),
        (false, presence_feed(2500)),
        (false, "end".to_owned()),
    ];
    let over: Vec<usize> =
        pushes.iter().map(|(_, body)| body.len()).filter(|&len| len >= THRESHOLD).collect();
    assert_eq!(over.len(), 4, "{over:?}");
    let before = proxy.forwarded();
    let mut api = connect_api(&server);
    for (binary, body) in &pushes {
        push_to_one(&mut api, id, body, *binary);
    }
    report.wait_message("end");
    let pushed = proxy.forwarded().from_target - before.from_target;

    let expected: Vec<(String, String)> = pushes
        .iter()
        .map(|(binary, body)| ((if *binary { "binary" } else { "text" }).to_owned(), body.clone()))
        .collect();
    assert_same_messages(&messages(&report.entries()), &expected);
    assert_eq!(
        server_counter(&server, "messages_deflated"),
        over.len() as u64,
        "those at or over the threshold"
    );
    // Uncompressed, the pushes' payloads alone would be this many bytes on the wire.
    let payloads: usize = pushes.iter().map(|(_, body)| body.len()).sum();
    assert!(
        pushed * 4 < payloads as u64,
        "{pushed} bytes on the wire for {payloads} bytes of pushes: not compressed"
    );

    // From the page: Chromium compresses what it sends on a socket that negotiated it.
    let sent = presence_feed(700);
    let before = proxy.forwarded();
    page.site.command(&format!("send {sent}"));
    report.wait("the echo", |entries| messages(entries).len() == pushes.len() + 1);
    let after = proxy.forwarded();
    let (up, down) = (after.from_client - before.from_client, after.from_target - before.from_target);
    let mut expected = expected;
    expected.push(("text".to_owned(), sent.clone()));
    let entries = report.entries();
    assert_same_messages(&messages(&entries), &expected);
    assert!(
        up * 4 < sent.len() as u64,
        "{up} bytes on the wire for a {} byte message: not compressed",
        sent.len()
    );
    assert!(down * 4 < sent.len() as u64, "{down} bytes on the wire for its {} byte echo", sent.len());
    assert_eq!(server_counter(&server, "messages_in"), 1);
    assert_eq!(server_counter(&server, "bytes_in"), sent.len() as u64, "counted inflated");
    assert_eq!(server_counter(&server, "messages_deflated"), over.len() as u64 + 1, "the echo too");

    // One connection all along, nothing refused.
    assert_eq!(count(&entries, "connect"), 1, "{}", summary(&entries));
    assert_eq!(count(&entries, "close") + count(&entries, "error"), 0, "{}", summary(&entries));
    let opened: Vec<&str> = entries.iter().filter(|e| e.kind == "open").map(|e| e.value.as_str()).collect();
    assert_eq!(opened, ["wspush.bearer"], "{}", summary(&entries));
    assert_eq!(server_counter(&server, "connections_opened"), 1);
    eprintln!(
        "browser wss: {} pushes, {payloads} bytes, crossed as {pushed} bytes of TLS; a {} byte message from the \
         page as {up}, its echo as {down}; in {:?}",
        pushes.len(),
        sent.len(),
        started.elapsed()
    );
}
