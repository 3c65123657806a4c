//! The history's Lua scripts (`lua/append.lua`, `lua/read.lua`): their text and SHA-1, the
//! `EVALSHA` commands that run them, and their replies parsed. Pure: no I/O.
//!
//! The scripts run with `EVALSHA` and are loaded with `SCRIPT LOAD` on every new
//! connection (a restarted Redis has an empty script cache). Not `FUNCTION LOAD`: a fleet in
//! a rolling upgrade runs two builds at once, and a per-build SHA keeps each build on its
//! own script without versioning a shared library.

use std::sync::LazyLock;

use bytes::Bytes;
use redis::Value;
use sha1::{Digest, Sha1};

use crate::history::{Entry, Epoch, Page, Position, MAX_OFFSET};

/// A Lua script and its SHA-1, the name `EVALSHA` runs it by.
pub(super) struct Script {
    /// The script's text, as `SCRIPT LOAD` sends it.
    pub source: &'static str,
    /// Lowercase hex SHA-1 of `source`, as Redis names it.
    pub sha: String,
}

impl Script {
    fn new(source: &'static str) -> Self {
        let digest = Sha1::digest(source.as_bytes());
        let sha = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self { source, sha }
    }

    /// `SCRIPT LOAD` of this script; Redis answers with [`Script::sha`].
    pub fn load(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.source);
        cmd
    }
}

/// Appends a message to an id's history and publishes it (design §2.1).
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/append.lua")));

/// Reads a page of an id's history (design §2.4).
pub(super) static READ: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/read.lua")));

/// Most entries one read returns (a page).
pub(crate) const MAX_PAGE: usize = 256;

/// Most appends in one script call: enough to amortise the call (a call of 32 costs Redis
/// about half as much per message as 32 calls: `benches/results/history-append-cost.txt`),
/// small enough that one call does not hold Redis for long.
pub(super) const MAX_APPENDS_PER_CALL: usize = 64;

/// One message of an append call: where it goes, and how it is retried.
pub(super) struct AppendItem<'a> {
    /// The id's stream (`{prefix}h:{id}`).
    pub stream: &'a str,
    /// The id's meta hash (`{prefix}m:{id}`).
    pub meta: &'a str,
    /// The id's channel (`{prefix}u:{id}`).
    pub channel: &'a str,
    /// The envelope's head ([`super::envelope::encode_head`]).
    pub head: &'a [u8],
    /// A binary message (else text).
    pub binary: bool,
    /// The message.
    pub body: &'a [u8],
    /// The epoch to start if the id's history was lost.
    pub fresh_epoch: Epoch,
    /// This append's seq: retried with the same seq, it is applied once.
    pub seq: u64,
}

/// What every append of a call shares.
pub(super) struct AppendShared<'a> {
    /// `history_size`: each stream is trimmed to about this many entries.
    pub size: usize,
    /// `history_ttl` in milliseconds.
    pub ttl_ms: u64,
    /// `p:<incarnation>`: the meta field of this publisher's last applied seq.
    pub seq_field: &'a str,
    /// `PUBLISH`, or `SPUBLISH` on a Redis Cluster.
    pub publish: &'static str,
}

/// `EVALSHA <append> 2N <stream> <meta> ... <size> <ttl ms> <p:incarnation> <publish>` then, per
/// message, `<channel> <head> <t|b> <body> <epoch> <seq>`: at most
/// [`MAX_APPENDS_PER_CALL`] messages, in order.
pub(super) fn append_command(shared: &AppendShared<'_>, items: &[AppendItem<'_>]) -> redis::Cmd {
    debug_assert!((1..=MAX_APPENDS_PER_CALL).contains(&items.len()));
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&APPEND.sha).arg(2 * items.len());
    for item in items {
        cmd.arg(item.stream).arg(item.meta);
    }
    cmd.arg(shared.size).arg(shared.ttl_ms).arg(shared.seq_field).arg(shared.publish);
    for item in items {
        cmd.arg(item.channel).arg(item.head).arg(if item.binary { "b" } else { "t" }).arg(item.body);
        cmd.arg(item.fresh_epoch.as_str()).arg(item.seq);
    }
    cmd
}

/// `EVALSHA <read> 2 <stream> <meta> <from> <count> <epoch> <ttl ms>`: entries from
/// offset `from` (0: the position only), at most `count` ([`MAX_PAGE`] at most).
pub(super) fn read_command(stream: &str, meta: &str, from: u64, count: usize, ttl_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(&READ.sha).arg(2).arg(stream).arg(meta);
    cmd.arg(from).arg(count.clamp(1, MAX_PAGE)).arg(Epoch::random().as_str()).arg(ttl_ms);
    cmd
}

/// What the append script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Appended {
    /// Applied now at `position`, published to `receivers` subscribers.
    Applied { receivers: usize, position: Position },
    /// Applied before (a retry of an append whose reply was lost); nothing done now.
    Duplicate,
}

/// A reply that is not what the script returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply from a history script: {0}")]
pub(super) struct BadReply(pub &'static str);

/// Parses the append script's reply to a call of `count` messages: per message,
/// `{receivers, offset, epoch}`.
pub(super) fn parse_appends(reply: &Value, count: usize) -> Result<Vec<Appended>, BadReply> {
    let Value::Array(items) = reply else { return Err(BadReply("append: not an array")) };
    if items.len() != count {
        return Err(BadReply("append: not one reply per message"));
    }
    items.iter().map(parse_append).collect()
}

/// Parses one message's `{receivers, offset, epoch}`.
fn parse_append(reply: &Value) -> Result<Appended, BadReply> {
    let Value::Array(items) = reply else { return Err(BadReply("append: not an array")) };
    let [receivers, offset, epoch] = items.as_slice() else { return Err(BadReply("append: not 3 items")) };
    let Value::Int(receivers) = *receivers else { return Err(BadReply("append: receivers")) };
    if receivers == -2 {
        // The script caught an error on this message's keys (e.g. a key of another type).
        return Err(BadReply("append: Redis refused this message"));
    }
    if receivers < 0 {
        return Ok(Appended::Duplicate);
    }
    let offset = offset_of(offset).ok_or(BadReply("append: offset"))?;
    let epoch = epoch_of(epoch).ok_or(BadReply("append: epoch"))?;
    Ok(Appended::Applied { receivers: receivers as usize, position: Position::new(epoch, offset) })
}

/// Parses the read script's `{epoch, top, {{"OFFSET-0", {"t"|"b", body}}, ...}}`.
pub(super) fn parse_read(reply: Value) -> Result<Page, BadReply> {
    let Value::Array(items) = reply else { return Err(BadReply("read: not an array")) };
    let [epoch, top, entries] = <[Value; 3]>::try_from(items).map_err(|_| BadReply("read: not 3 items"))?;
    let epoch = epoch_of(&epoch).ok_or(BadReply("read: epoch"))?;
    let top = offset_of(&top).ok_or(BadReply("read: top"))?;
    let Value::Array(raw) = entries else { return Err(BadReply("read: entries")) };
    let mut entries = Vec::with_capacity(raw.len());
    for entry in raw {
        let entry = parse_entry(entry).ok_or(BadReply("read: an entry"))?;
        // Offsets only grow, one by one: anything else is not this script's stream.
        let expected = entries.last().map(|e: &Entry| e.offset + 1);
        if expected.is_some_and(|o| o != entry.offset) || entry.offset > top {
            return Err(BadReply("read: entries not contiguous"));
        }
        entries.push(entry);
    }
    Ok(Page { epoch, top, entries })
}

/// The `MOVED` or `ASK` of an error reply: the slot, where it is served now, and whether it
/// is only being migrated there (`ASK`).
pub(super) fn redirect_of(reply: &Value) -> Option<(u16, super::slots::Node, bool)> {
    match reply {
        Value::ServerError(e) if matches!(e.code(), "MOVED" | "ASK") => {
            super::slots::redirect(&format!("{} {}", e.code(), e.details().unwrap_or("")))
        }
        _ => None,
    }
}

/// Whether a reply is Redis's `NOSCRIPT` (the script cache was emptied under us: the
/// connection is treated as failed, and the next one loads the scripts again).
pub(super) fn is_noscript(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// Whether `reply` is an error by which Redis says it did not run the script at all and
/// may run it later: the script is not loaded (`NOSCRIPT`), Redis is busy with another
/// script, still loading its data, a replica, without its master, or out of memory; or, in
/// a Redis Cluster, the keys' slot is elsewhere (`MOVED`, `ASK`), being migrated
/// (`TRYAGAIN`) or unserved (`CLUSTERDOWN`).
pub(super) fn is_not_run(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e)
        if matches!(e.code(), "NOSCRIPT" | "BUSY" | "LOADING" | "READONLY" | "MASTERDOWN" | "OOM"
            | "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN"))
}

fn parse_entry(entry: Value) -> Option<Entry> {
    let Value::Array(parts) = entry else { return None };
    let [id, fields] = <[Value; 2]>::try_from(parts).ok()?;
    let Value::BulkString(id) = id else { return None };
    let offset = std::str::from_utf8(&id).ok()?.strip_suffix("-0")?;
    let offset = parse_offset(offset.as_bytes())?;
    let Value::Array(fields) = fields else { return None };
    let [field, body] = <[Value; 2]>::try_from(fields).ok()?;
    let binary = match field {
        Value::BulkString(field) if field == b"b" => true,
        Value::BulkString(field) if field == b"t" => false,
        _ => return None,
    };
    let Value::BulkString(body) = body else { return None };
    // A text entry must be text: it goes out as a text frame.
    if !binary && simdutf8::basic::from_utf8(&body).is_err() {
        return None;
    }
    Some(Entry { offset, binary, body: Bytes::from(body) })
}

fn offset_of(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok().filter(|&n| n <= MAX_OFFSET),
        Value::BulkString(text) => parse_offset(text),
        _ => None,
    }
}

fn parse_offset(text: &[u8]) -> Option<u64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok().filter(|&n| n <= MAX_OFFSET)
}

fn epoch_of(value: &Value) -> Option<Epoch> {
    let Value::BulkString(text) = value else { return None };
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &[u8]) -> Value {
        Value::BulkString(text.to_vec())
    }

    fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(bytes) => bytes.to_vec(),
                _ => panic!("only plain arguments"),
            })
            .collect()
    }

    #[test]
    fn shas_are_the_sha1_of_the_scripts() {
        // `echo -n … | sha1sum` of a known text, then the scripts' own form.
        assert_eq!(Script::new("return 1").sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        for script in [&*APPEND, &*READ] {
            assert_eq!(script.sha.len(), 40);
            assert!(script.sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        assert_ne!(APPEND.sha, READ.sha);
        assert_eq!(args(&APPEND.load())[..2], [b"SCRIPT".to_vec(), b"LOAD".to_vec()]);
    }

    #[test]
    fn the_append_command_carries_every_argument_in_order() {
        let epoch: Epoch = "fresh1".parse().unwrap();
        let item = |stream, meta, channel, binary, body, seq| AppendItem {
            stream,
            meta,
            channel,
            head: b"\x02\x01\x01n",
            binary,
            body,
            fresh_epoch: epoch,
            seq,
        };
        let items = [
            item("p:h:42", "p:m:42", "p:u:42", true, &b"\x00body"[..], 7),
            item("p:h:7", "p:m:7", "p:u:7", false, &b"hi"[..], 8),
        ];
        let cmd = append_command(
            &AppendShared { size: 100, ttl_ms: 600_000, seq_field: "p:abc", publish: "PUBLISH" },
            &items,
        );
        let expected: Vec<&[u8]> = vec![
            b"EVALSHA",
            APPEND.sha.as_bytes(),
            b"4",
            b"p:h:42",
            b"p:m:42",
            b"p:h:7",
            b"p:m:7",
            b"100",
            b"600000",
            b"p:abc",
            b"PUBLISH",
            b"p:u:42",
            b"\x02\x01\x01n",
            b"b",
            b"\x00body",
            b"fresh1",
            b"7",
            b"p:u:7",
            b"\x02\x01\x01n",
            b"t",
            b"hi",
            b"fresh1",
            b"8",
        ];
        assert_eq!(args(&cmd), expected);
        let read = read_command("p:h:1", "p:m:1", 5, 10_000, 1000);
        let read = args(&read);
        assert_eq!(read[..7], [&b"EVALSHA"[..], READ.sha.as_bytes(), b"2", b"p:h:1", b"p:m:1", b"5", b"256"]);
        assert!(std::str::from_utf8(&read[7]).unwrap().parse::<Epoch>().is_ok());
        assert_eq!(read[8], b"1000");
    }

    #[test]
    fn append_replies_parse_to_a_position_or_a_duplicate() {
        let reply = Value::Array(vec![Value::Int(3), Value::Int(42), bulk(b"k3j9a2x1")]);
        let position = "k3j9a2x1:42".parse().unwrap();
        assert_eq!(parse_append(&reply), Ok(Appended::Applied { receivers: 3, position }));
        let duplicate = Value::Array(vec![Value::Int(-1), Value::Int(42), bulk(b"k3j9a2x1")]);
        assert_eq!(parse_append(&duplicate), Ok(Appended::Duplicate));
        for bad in [
            Value::Int(1),
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
            Value::Array(vec![bulk(b"1"), Value::Int(2), bulk(b"e")]),
            Value::Array(vec![Value::Int(1), Value::Int(-2), bulk(b"e")]),
            Value::Array(vec![Value::Int(1), Value::Int(1 << 53), bulk(b"e")]),
            Value::Array(vec![Value::Int(1), Value::Int(2), bulk(b"e-x")]),
            Value::Array(vec![Value::Int(1), Value::Int(2), Value::Nil]),
        ] {
            assert!(parse_append(&bad).is_err(), "{bad:?}");
        }
        let two = Value::Array(vec![reply.clone(), duplicate.clone()]);
        assert_eq!(
            parse_appends(&two, 2),
            Ok(vec![Appended::Applied { receivers: 3, position }, Appended::Duplicate])
        );
        assert!(parse_appends(&two, 3).is_err(), "one reply per message");
        assert!(parse_appends(&reply, 1).is_err(), "a call's reply is an array of replies");
    }

    fn entry(offset: &[u8], field: &[u8], body: &[u8]) -> Value {
        Value::Array(vec![bulk(offset), Value::Array(vec![bulk(field), bulk(body)])])
    }

    #[test]
    fn read_replies_parse_to_pages() {
        let reply = Value::Array(vec![
            bulk(b"e1"),
            Value::Int(6),
            Value::Array(vec![entry(b"5-0", b"t", b"five"), entry(b"6-0", b"b", b"\xff")]),
        ]);
        let page = parse_read(reply).unwrap();
        assert_eq!(page.epoch.as_str(), "e1");
        assert_eq!(page.top, 6);
        assert_eq!(
            page.entries,
            [
                Entry { offset: 5, binary: false, body: Bytes::from_static(b"five") },
                Entry { offset: 6, binary: true, body: Bytes::from_static(b"\xff") },
            ]
        );
        let empty = Value::Array(vec![bulk(b"e2"), Value::Int(0), Value::Array(vec![])]);
        assert_eq!(
            parse_read(empty).unwrap(),
            Page { epoch: "e2".parse().unwrap(), top: 0, entries: vec![] }
        );
    }

    #[test]
    fn malformed_read_replies_are_refused() {
        let page =
            |entries: Vec<Value>| Value::Array(vec![bulk(b"e1"), Value::Int(9), Value::Array(entries)]);
        for bad in [
            Value::Nil,
            Value::Array(vec![bulk(b"e1"), Value::Int(1)]),
            Value::Array(vec![bulk(b""), Value::Int(1), Value::Array(vec![])]),
            page(vec![entry(b"5", b"t", b"x")]),
            page(vec![entry(b"5-1", b"t", b"x")]),
            page(vec![entry(b"x-0", b"t", b"x")]),
            page(vec![entry(b"5-0", b"q", b"x")]),
            page(vec![entry(b"5-0", b"t", b"\xff")]),
            page(vec![entry(b"5-0", b"t", b"x"), entry(b"7-0", b"t", b"x")]),
            page(vec![entry(b"10-0", b"t", b"above the top")]),
        ] {
            assert!(parse_read(bad.clone()).is_err(), "{bad:?}");
        }
    }

    /// The scripts against a real Redis (`redis-server` must be installed).
    mod against_redis {
        use super::*;
        use crate::cluster::test_redis::TestRedis;
        use redis::Commands;

        const TTL_MS: u64 = 100_000;

        struct Fixture {
            _redis: TestRedis,
            con: redis::Connection,
        }

        fn fixture() -> Fixture {
            let redis = TestRedis::start();
            let mut con = redis.connection();
            for script in [&*APPEND, &*READ] {
                let sha: String = script.load().query(&mut con).unwrap();
                assert_eq!(sha, script.sha, "Redis names the script by the SHA computed here");
            }
            Fixture { _redis: redis, con }
        }

        impl Fixture {
            fn append_as(
                &mut self,
                id: &str,
                incarnation: &str,
                seq: u64,
                body: &str,
                size: usize,
            ) -> Appended {
                let (stream, meta, channel) = (format!("t:h:{id}"), format!("t:m:{id}"), format!("t:u:{id}"));
                let item = AppendItem {
                    stream: &stream,
                    meta: &meta,
                    channel: &channel,
                    head: &crate::cluster::envelope::encode_head("n", true),
                    binary: false,
                    body: body.as_bytes(),
                    fresh_epoch: Epoch::random(),
                    seq,
                };
                let seq_field = format!("p:{incarnation}");
                let shared = AppendShared { size, ttl_ms: TTL_MS, seq_field: &seq_field, publish: "PUBLISH" };
                let cmd = append_command(&shared, &[item]);
                parse_appends(&cmd.query::<Value>(&mut self.con).unwrap(), 1).unwrap()[0]
            }

            /// One script call appending "m" to each of `ids`, with seqs from `first_seq`.
            fn append_call(&mut self, ids: &[&str], first_seq: u64) -> Value {
                let names: Vec<(String, String, String)> = ids
                    .iter()
                    .map(|id| (format!("t:h:{id}"), format!("t:m:{id}"), format!("t:u:{id}")))
                    .collect();
                let head = crate::cluster::envelope::encode_head("n", true);
                let items: Vec<AppendItem<'_>> = names
                    .iter()
                    .zip(first_seq..)
                    .map(|((stream, meta, channel), seq)| AppendItem {
                        stream,
                        meta,
                        channel,
                        head: &head,
                        binary: false,
                        body: b"m",
                        fresh_epoch: Epoch::random(),
                        seq,
                    })
                    .collect();
                let shared =
                    AppendShared { size: 1000, ttl_ms: TTL_MS, seq_field: "p:inc1", publish: "PUBLISH" };
                append_command(&shared, &items).query(&mut self.con).unwrap()
            }

            fn append(&mut self, id: &str, seq: u64, body: &str) -> Position {
                match self.append_as(id, "inc1", seq, body, 1000) {
                    Appended::Applied { position, .. } => position,
                    Appended::Duplicate => panic!("seq {seq} of {id} taken for a duplicate"),
                }
            }

            fn read(&mut self, id: &str, from: u64, count: usize) -> Page {
                let cmd = read_command(&format!("t:h:{id}"), &format!("t:m:{id}"), from, count, TTL_MS);
                parse_read(cmd.query::<Value>(&mut self.con).unwrap()).unwrap()
            }
        }

        #[test]
        fn offsets_are_contiguous_from_1_and_the_stream_holds_every_body() {
            let mut f = fixture();
            let positions: Vec<Position> =
                (1..=50).map(|seq| f.append("a", seq, &format!("m{seq}"))).collect();
            let epoch = positions[0].epoch;
            assert_eq!(positions, (1..=50).map(|o| Position::new(epoch, o)).collect::<Vec<_>>());
            let page = f.read("a", 1, 256);
            assert_eq!((page.epoch, page.top, page.entries.len()), (epoch, 50, 50));
            for (i, entry) in page.entries.iter().enumerate() {
                assert_eq!(
                    (entry.offset, &entry.body[..], entry.binary),
                    (i as u64 + 1, format!("m{}", i + 1).as_bytes(), false)
                );
            }
            let middle = f.read("a", 21, 5);
            assert_eq!(middle.entries.iter().map(|e| e.offset).collect::<Vec<_>>(), [21, 22, 23, 24, 25]);
            assert!(middle.reaches(Position::new(epoch, 20)));
            // Another id has a history of its own.
            assert_eq!(f.append("b", 51, "x").offset, 1);
        }

        #[test]
        fn a_retried_seq_is_not_applied_again() {
            let mut f = fixture();
            f.append("a", 5, "five");
            assert_eq!(f.append_as("a", "inc1", 5, "five", 1000), Appended::Duplicate);
            assert_eq!(f.append_as("a", "inc1", 3, "older", 1000), Appended::Duplicate);
            assert_eq!(f.read("a", 0, 1).top, 1);
            let len: usize = redis::cmd("XLEN").arg("t:h:a").query(&mut f.con).unwrap();
            assert_eq!(len, 1);
            // Another incarnation (another node, or this one restarted) counts its own seqs.
            assert!(matches!(f.append_as("a", "inc2", 1, "other", 1000), Appended::Applied { .. }));
            assert_eq!(f.append("a", 6, "six").offset, 3);
        }

        #[test]
        fn one_call_appends_to_many_ids_in_order_and_skips_a_retried_seq() {
            let mut f = fixture();
            f.append("a", 1, "a1");
            // seq 1 again (a retry of what was applied above), then 2..=5.
            let reply = f.append_call(&["a", "b", "a", "c", "b"], 1);
            let offsets: Vec<Option<u64>> = parse_appends(&reply, 5)
                .unwrap()
                .into_iter()
                .map(|appended| match appended {
                    Appended::Applied { position, .. } => Some(position.offset),
                    Appended::Duplicate => None,
                })
                .collect();
            assert_eq!(
                offsets,
                [None, Some(1), Some(2), Some(1), Some(2)],
                "a: 1 kept, then 2; b: 1, 2; c: 1"
            );

            // A key of another type fails its own message only.
            let _: () = f.con.set("t:m:bad", "a string").unwrap();
            let reply = f.append_call(&["d", "bad", "e"], 6);
            let Value::Array(replies) = &reply else { panic!("{reply:?}") };
            assert_eq!(replies.len(), 3);
            assert!(matches!(parse_append(&replies[0]), Ok(Appended::Applied { .. })));
            assert!(parse_append(&replies[1]).is_err(), "refused: {:?}", replies[1]);
            assert!(matches!(parse_append(&replies[2]), Ok(Appended::Applied { .. })));
        }

        #[test]
        fn a_lost_meta_hash_starts_a_new_epoch_and_drops_the_stream() {
            let mut f = fixture();
            let old = (1..=3).map(|seq| f.append("a", seq, "m")).last().unwrap();
            let _: () = f.con.del("t:m:a").unwrap();
            let new = f.append("a", 4, "after");
            assert_ne!(new.epoch, old.epoch);
            assert_eq!(new.offset, 1);
            let page = f.read("a", 1, 10);
            assert_eq!((page.epoch, page.top, page.entries.len()), (new.epoch, 1, 1));
            assert!(!page.reaches(old), "the old epoch cannot be resumed");
        }

        #[test]
        fn a_lost_stream_alone_starts_a_new_epoch() {
            let mut f = fixture();
            let old = (1..=3).map(|seq| f.append("a", seq, "m")).last().unwrap();
            let _: () = f.con.del("t:h:a").unwrap();
            let new = f.append("a", 4, "after");
            assert_ne!(new.epoch, old.epoch);
            assert_eq!(new.offset, 1);
            // The read script sees the same loss the same way.
            let _: () = f.con.del("t:h:a").unwrap();
            let page = f.read("a", 1, 10);
            assert_ne!(page.epoch, new.epoch);
            assert_eq!((page.top, page.entries.len()), (0, 0));
            assert_eq!(f.append("a", 5, "again").epoch, page.epoch, "appends continue the read's epoch");
        }

        #[test]
        fn a_trimmed_history_fails_the_reach_test_for_an_old_position() {
            let mut f = fixture();
            let mut last = None;
            for seq in 1..=500 {
                last = Some(match f.append_as("a", "inc1", seq, "m", 10) {
                    Appended::Applied { position, .. } => position,
                    Appended::Duplicate => unreachable!(),
                });
            }
            let top = last.unwrap();
            let len: usize = redis::cmd("XLEN").arg("t:h:a").query(&mut f.con).unwrap();
            assert!((10..=10 + 100).contains(&len), "MAXLEN ~ 10 kept {len}");
            let from_start = f.read("a", 2, 256);
            assert!(!from_start.reaches(Position::new(top.epoch, 1)), "message 2 was trimmed");
            assert_eq!(from_start.entries.first().map(|e| e.offset), Some(500 - len as u64 + 1));
            let recent = f.read("a", 496, 256);
            assert!(recent.reaches(Position::new(top.epoch, 495)));
            assert_eq!(recent.entries.len(), 5);
        }

        #[test]
        fn every_append_sets_and_refreshes_the_ttl_of_both_keys() {
            let mut f = fixture();
            f.append("a", 1, "m");
            for key in ["t:h:a", "t:m:a"] {
                let ttl: i64 = f.con.pttl(key).unwrap();
                assert!(ttl > 0 && ttl <= TTL_MS as i64, "{key}: {ttl}");
                let _: () = f.con.pexpire(key, 1000).unwrap();
            }
            f.append("a", 2, "m");
            for key in ["t:h:a", "t:m:a"] {
                let ttl: i64 = f.con.pttl(key).unwrap();
                assert!(ttl > 1000, "{key} refreshed: {ttl}");
            }
        }

        #[test]
        fn reads_from_0_give_the_position_only_and_a_silent_id_gets_an_epoch() {
            let mut f = fixture();
            let silent = f.read("quiet", 0, 10);
            assert_eq!((silent.top, silent.entries.len()), (0, 0));
            let epoch: String = f.con.hget("t:m:quiet", "e").unwrap();
            assert_eq!(epoch, silent.epoch.as_str());
            let ttl: i64 = f.con.pttl("t:m:quiet").unwrap();
            assert!(ttl > 0, "a read-made epoch expires too: {ttl}");
            assert_eq!(f.read("quiet", 0, 10).epoch, silent.epoch, "the next read finds it");
            assert_eq!(
                f.append("quiet", 1, "first"),
                Position::new(silent.epoch, 1),
                "the first append continues it"
            );
            f.append("quiet", 2, "second");
            let position_only = f.read("quiet", 0, 10);
            assert_eq!(
                (position_only.epoch, position_only.top, position_only.entries.len()),
                (silent.epoch, 2, 0)
            );
            assert_eq!(f.read("quiet", 3, 10).entries.len(), 0, "from beyond the top: nothing");
        }

        #[test]
        fn offsets_beyond_2_pow_31_are_exact() {
            let mut f = fixture();
            let big: u64 = 100_000_000_000_000;
            let _: () = redis::cmd("HSET")
                .arg("t:m:a")
                .arg("e")
                .arg("big")
                .arg("s")
                .arg(big)
                .query(&mut f.con)
                .unwrap();
            let _: () = redis::cmd("XADD").arg("t:h:a").arg(big).arg("t").arg("x").query(&mut f.con).unwrap();
            assert_eq!(f.append("a", 1, "next"), Position::new("big".parse().unwrap(), big + 1));
            let page = f.read("a", big + 1, 10);
            assert_eq!((page.top, page.entries[0].offset), (big + 1, big + 1));
        }

        #[test]
        fn seq_fields_of_other_incarnations_are_bounded() {
            let mut f = fixture();
            for incarnation in 0..70 {
                f.append_as("a", &format!("old{incarnation}"), 1, "m", 1000);
            }
            let fields: usize = f.con.hlen("t:m:a").unwrap();
            assert!(fields <= 2 + 65, "{fields} fields");
            assert_eq!(
                f.append_as("a", "old69", 1, "m", 1000),
                Appended::Duplicate,
                "the newest kept its own"
            );
        }
    }
}
