//! Publishing a plan of bench messages: which messages (unicasts to random ids, or
//! broadcasts), how many, how fast, and through what (the HTTP API, Redis in the original
//! JSON format or the wspush envelope, or an in-process engine). Every message carries the
//! time it was handed to the transport, so latency includes any batching done here.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use wspush::Message;

use crate::clock::now_ns;
use crate::payload::{self, Kind};

/// Messages handed to a sink before it is flushed (one pipeline / one round trip).
const BATCH: u64 = 256;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    pub count: u64,
    /// Sequence numbers run from here (plans split over several publishers do not overlap).
    pub first_seq: u64,
    /// Unicasts go to ids `first_id..first_id + ids`, chosen at random.
    pub first_id: u64,
    pub ids: u64,
    /// Ids `id % skip_every == 0` are never chosen (the slow clients); 0: none skipped.
    pub skip_every: u64,
    /// Messages per second; `None`: as fast as the transport takes them.
    pub rate: Option<f64>,
    pub size: usize,
    pub seed: u64,
    /// Unicast number `s` (counted from 0 over the whole run) goes to id
    /// `first_id + s % ids`, not to a random one: each id gets a known share (`resume`).
    pub round_robin: bool,
}

impl Plan {
    /// Part `index` of `parts`: its share of the messages, its own sequence numbers and ids
    /// drawn from its own seed. Broadcasts are not split (each part would repeat them).
    pub fn part(&self, index: u64, parts: u64) -> Plan {
        let count = self.count / parts + u64::from(index < self.count % parts);
        let first_seq = self.first_seq + index * (self.count / parts) + index.min(self.count % parts);
        let rate = self.rate.map(|r| r / parts as f64);
        Plan {
            count,
            first_seq,
            rate,
            seed: self.seed.wrapping_add(index.wrapping_mul(0x9e37_79b9)),
            ..self.clone()
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "kind": if self.kind == Kind::Unicast { "unicast" } else { "broadcast" },
            "count": self.count, "first_seq": self.first_seq, "first_id": self.first_id, "ids": self.ids,
            "skip_every": self.skip_every, "rate": self.rate, "size": self.size, "seed": self.seed,
            "round_robin": self.round_robin,
        })
    }

    pub fn from_json(value: &Value) -> Option<Plan> {
        Some(Plan {
            kind: if value["kind"] == "unicast" { Kind::Unicast } else { Kind::Broadcast },
            count: value["count"].as_u64()?,
            first_seq: value["first_seq"].as_u64()?,
            first_id: value["first_id"].as_u64()?,
            ids: value["ids"].as_u64()?,
            skip_every: value["skip_every"].as_u64()?,
            rate: value["rate"].as_f64(),
            size: value["size"].as_u64()? as usize,
            seed: value["seed"].as_u64()?,
            round_robin: value["round_robin"].as_bool().unwrap_or(false),
        })
    }
}

/// Where messages go.
pub trait Sink {
    /// Queues a message for `id` (`None`: everyone).
    fn push(&mut self, id: Option<u64>, text: &[u8]) -> io::Result<()>;
    /// Sends everything queued (a transport may keep some answers outstanding).
    fn flush(&mut self) -> io::Result<()>;
    /// Sends everything queued and waits until the transport accepted all of it.
    fn finish(&mut self) -> io::Result<()> {
        self.flush()
    }
    /// Messages the transport refused (an HTTP status other than 2xx, a Redis error reply,
    /// an engine error), so far.
    fn errors(&self) -> u64;
}

/// A small xorshift generator: the same ids for the same seed, in every process.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Publishes `plan` into `sink`; returns the time the first message was stamped.
pub fn run(plan: &Plan, sink: &mut dyn Sink, progress: &mut dyn FnMut(u64)) -> io::Result<u64> {
    let mut rng = Rng(plan.seed | 1);
    let mut text = Vec::with_capacity(plan.size);
    let started = now_ns();
    let mut sent = 0u64;
    while sent < plan.count {
        let due = match plan.rate {
            None => plan.count,
            Some(rate) => {
                let elapsed = (now_ns() - started) as f64 / 1e9;
                ((elapsed * rate) as u64 + 1).min(plan.count)
            }
        };
        if due <= sent {
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let batch_end = due.min(sent + BATCH);
        for seq in sent..batch_end {
            let id = match plan.kind {
                Kind::Broadcast => None,
                Kind::Unicast if plan.round_robin => Some(plan.first_id + (plan.first_seq + seq) % plan.ids),
                Kind::Unicast => Some(loop {
                    let id = plan.first_id + rng.next() % plan.ids;
                    if plan.skip_every == 0 || id % plan.skip_every != 0 {
                        break id;
                    }
                }),
            };
            // Ids are below 2^32 - 1 (main checks --connections): the target fits, and never
            // reads as EVERYONE.
            let target = id.map_or(payload::EVERYONE, |id| id as u32);
            payload::write(&mut text, plan.kind, (plan.first_seq + seq) as u32, now_ns(), target, plan.size);
            sink.push(id, &text)?;
        }
        sink.flush()?;
        sent = batch_end;
        progress(sent);
    }
    sink.finish()?;
    Ok(started)
}

/// How a Redis sink formats messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFormat {
    /// `{"KEY": id, "VALUE": text}` on one channel; a broadcast is KEY `*` (the baseline's).
    Compat,
    /// The wspush envelope on `{prefix}u:{id}` or `{prefix}all`.
    Envelope,
}

/// PUBLISH commands over one connection, RESP written by hand, pipelined without waiting:
/// a reader thread counts the replies, and at most `MAX_UNANSWERED` may be outstanding, so
/// the publisher runs as fast as Redis answers rather than a round trip per batch.
pub struct RedisSink {
    writer: TcpStream,
    out: Vec<u8>,
    written: u64,
    answered: Arc<(Mutex<Answered>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
    format: RedisFormat,
    channel: String,
    prefix: String,
}

const MAX_UNANSWERED: u64 = 32 * 1024;

#[derive(Default)]
struct Answered {
    replies: u64,
    /// Subscribers that received each PUBLISH, summed (Redis's reply).
    receivers: u64,
    /// PUBLISHes Redis answered with an error reply.
    refused: u64,
    /// Why the connection ended, if it did.
    error: Option<String>,
}

impl RedisSink {
    pub fn connect(addr: SocketAddr, format: RedisFormat, channel: &str, prefix: &str) -> io::Result<Self> {
        let writer = TcpStream::connect(addr)?;
        writer.set_nodelay(true)?;
        let mut reader = BufReader::with_capacity(64 * 1024, writer.try_clone()?);
        let answered = Arc::new((Mutex::new(Answered::default()), Condvar::new()));
        let shared = answered.clone();
        let reader = std::thread::spawn(move || {
            let mut line = Vec::new();
            loop {
                line.clear();
                let outcome = match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => Err("the connection to Redis closed".to_owned()),
                    Ok(_) if line.first() == Some(&b':') => {
                        Ok(std::str::from_utf8(&line[1..]).ok().and_then(|s| s.trim().parse::<u64>().ok()))
                    }
                    // An error reply (one line): counted, and the run goes on.
                    Ok(_) if line.first() == Some(&b'-') => Ok(None),
                    Ok(_) => {
                        Err(format!("Redis answered PUBLISH with {}", String::from_utf8_lossy(&line).trim()))
                    }
                };
                let (state, changed) = &*shared;
                let mut state = state.lock().expect("not poisoned");
                match outcome {
                    Ok(receivers) => {
                        state.replies += 1;
                        match receivers {
                            Some(n) => state.receivers += n,
                            None => {
                                if state.refused == 0 {
                                    eprintln!(
                                        "wspush-bench: Redis refused a PUBLISH: {}",
                                        String::from_utf8_lossy(&line).trim()
                                    );
                                }
                                state.refused += 1;
                            }
                        }
                    }
                    Err(e) => {
                        state.error.get_or_insert(e);
                        changed.notify_all();
                        return;
                    }
                }
                changed.notify_all();
            }
        });
        Ok(RedisSink {
            writer,
            out: Vec::with_capacity(64 * 1024),
            written: 0,
            answered,
            reader: Some(reader),
            format,
            channel: channel.into(),
            prefix: prefix.into(),
        })
    }

    fn command(&mut self, channel: &[u8], message: &[u8]) {
        let out = &mut self.out;
        out.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$");
        out.extend_from_slice(channel.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(channel);
        out.extend_from_slice(b"\r\n$");
        out.extend_from_slice(message.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        out.extend_from_slice(b"\r\n");
        self.written += 1;
    }

    /// Waits until at most `outstanding` PUBLISHes are unanswered.
    fn wait_answers(&self, outstanding: u64) -> io::Result<u64> {
        let (state, changed) = &*self.answered;
        let mut state = state.lock().expect("not poisoned");
        loop {
            if let Some(e) = &state.error {
                if state.replies < self.written {
                    return Err(io::Error::other(e.clone()));
                }
            }
            if self.written - state.replies <= outstanding {
                return Ok(state.receivers);
            }
            let (next, timeout) = changed.wait_timeout(state, Duration::from_secs(10)).expect("not poisoned");
            if timeout.timed_out() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "Redis stopped answering"));
            }
            state = next;
        }
    }
}

impl Sink for RedisSink {
    fn push(&mut self, id: Option<u64>, text: &[u8]) -> io::Result<()> {
        let text_str = std::str::from_utf8(text).map_err(io::Error::other)?;
        match self.format {
            RedisFormat::Compat => {
                let mut body = Vec::with_capacity(text.len() + 32);
                match id {
                    Some(id) => write!(body, "{{\"KEY\":{id},\"VALUE\":")?,
                    None => body.extend_from_slice(b"{\"KEY\":\"*\",\"VALUE\":"),
                }
                serde_json::to_writer(&mut body, text_str)?;
                body.push(b'}');
                let channel = std::mem::take(&mut self.channel);
                self.command(channel.as_bytes(), &body);
                self.channel = channel;
            }
            RedisFormat::Envelope => {
                let channel = match id {
                    Some(id) => format!("{}u:{id}", self.prefix),
                    None => format!("{}all", self.prefix),
                };
                let body = wspush::cluster::envelope::encode("wspush-bench", Message::Text(text_str));
                self.command(channel.as_bytes(), &body);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.write_all(&self.out)?;
        self.out.clear();
        self.wait_answers(MAX_UNANSWERED).map(drop)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.flush()?;
        self.wait_answers(0).map(drop)
    }

    fn errors(&self) -> u64 {
        self.answered.0.lock().expect("not poisoned").refused
    }
}

impl Drop for RedisSink {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// `POST /socket/{id}` and `POST /broadcast` over keep-alive connections, pipelined, spread
/// round-robin over the connections (and so over the nodes they go to).
pub struct HttpSink {
    conns: Vec<HttpConn>,
    next: usize,
    /// Responses that were not 2xx.
    errors: u64,
}

struct HttpConn {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
    pending: usize,
    host: String,
}

impl HttpSink {
    /// `per_node` connections to each of `nodes`.
    pub fn connect(nodes: &[SocketAddr], per_node: usize) -> io::Result<Self> {
        let mut conns = Vec::new();
        for _ in 0..per_node {
            for &node in nodes {
                let stream = TcpStream::connect(node)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(Duration::from_secs(15)))?;
                conns.push(HttpConn {
                    stream: BufReader::with_capacity(64 * 1024, stream),
                    out: Vec::new(),
                    pending: 0,
                    host: node.to_string(),
                });
            }
        }
        Ok(HttpSink { conns, next: 0, errors: 0 })
    }
}

impl Sink for HttpSink {
    fn push(&mut self, id: Option<u64>, text: &[u8]) -> io::Result<()> {
        let index = self.next;
        self.next = (index + 1) % self.conns.len();
        let conn = &mut self.conns[index];
        let path = id.map_or_else(|| "/broadcast".to_owned(), |id| format!("/socket/{id}"));
        write!(
            conn.out,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            conn.host,
            text.len()
        )?;
        conn.out.extend_from_slice(text);
        conn.pending += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        for conn in &mut self.conns {
            conn.stream.get_mut().write_all(&conn.out)?;
            conn.out.clear();
        }
        let mut line = String::new();
        for conn in &mut self.conns {
            while conn.pending > 0 {
                line.clear();
                if conn.stream.read_line(&mut line)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "the server closed an HTTP connection with {} requests unanswered",
                            conn.pending
                        ),
                    ));
                }
                let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                let body = read_http_body(&mut conn.stream)?;
                if !(200..300).contains(&status) {
                    if self.errors == 0 {
                        eprintln!(
                            "wspush-bench: the server answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                    self.errors += 1;
                }
                conn.pending -= 1;
            }
        }
        Ok(())
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

/// Reads a response's headers and body (`Content-Length` or chunked), after its status line.
pub fn read_http_body(stream: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let (mut length, mut chunked, mut line) = (None, false, String::new());
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line)?;
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size {line:?}"))
                })?;
            let start = body.len();
            body.resize(start + size + 2, 0);
            stream.read_exact(&mut body[start..])?;
            body.truncate(start + size);
            if size == 0 {
                return Ok(body);
            }
        }
    }
    let Some(length) = length else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a response with neither Content-Length nor chunks",
        ));
    };
    body.resize(length, 0);
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// Sends through an engine in this process, as an application embedding wspush would.
pub struct EngineSink<'a> {
    pub engine: &'a wspush::Engine,
    /// Sends retried because the id's worker queue was full (backpressure).
    pub retries: u64,
    /// Sends and broadcasts the engine refused (counted, not retried).
    pub errors: u64,
}

impl Sink for EngineSink<'_> {
    fn push(&mut self, id: Option<u64>, text: &[u8]) -> io::Result<()> {
        let text = std::str::from_utf8(text).map_err(io::Error::other)?;
        let Some(id) = id else {
            // Not retried: a broadcast refused by one full worker was still queued on the
            // others, and a retry would deliver it twice there. Counted: the run is inexact.
            if let Err(e) = self.engine.broadcast(Message::Text(text)) {
                self.refused(&e);
            }
            return Ok(());
        };
        let mut digits = [0u8; 20];
        let id = decimal(id, &mut digits);
        loop {
            match self.engine.send(id, Message::Text(text)) {
                Ok(()) => return Ok(()),
                Err(wspush::Error::QueueFull) => {
                    self.retries += 1;
                    std::thread::yield_now();
                }
                Err(e) => {
                    self.refused(&e);
                    return Ok(());
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}

impl EngineSink<'_> {
    fn refused(&mut self, error: &wspush::Error) {
        if self.errors == 0 {
            eprintln!("wspush-bench host: the engine refused a message: {error}");
        }
        self.errors += 1;
    }
}

/// `n` in decimal, without allocating.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[start..]).expect("ASCII digits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits() {
        let mut digits = [0u8; 20];
        assert_eq!(decimal(0, &mut digits), "0");
        assert_eq!(decimal(456, &mut digits), "456");
        assert_eq!(decimal(u64::MAX, &mut digits), u64::MAX.to_string());
    }

    #[test]
    fn plans_round_trip_through_json() {
        let plan = Plan {
            kind: Kind::Unicast,
            count: 9,
            first_seq: 4,
            first_id: 3,
            ids: 7,
            skip_every: 100,
            rate: Some(1000.0),
            size: 64,
            seed: 5,
            round_robin: true,
        };
        let back = Plan::from_json(&plan.to_json()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{plan:?}"));
    }
}
