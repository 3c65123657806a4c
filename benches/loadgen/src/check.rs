//! The checks and the accounting every client kind shares (`client.rs`'s mio client and
//! `tungstenite_client.rs`'s tokio-tungstenite one): what a bench message read on the socket of
//! an id counts as (delivered, duplicate, misrouted, unexpected), its latency, closes, and the
//! `report` line a client process prints at the end of a phase. A client kind only reads
//! frames and hands each message's payload here, so both count by the same rules.
//!
//! With `--v1` (the `wspush.v1` subprotocol, history on) every data frame is `HEAD "\n" BODY`
//! and `!pos E:O` / `!lost E:O` are control texts: [`Tally::frame`] takes the head off, checks
//! that each socket's offsets run on by one within an epoch (a gap, a repeat, an epoch that
//! changes without `!lost`, a unicast without a position are faults), then checks the body as
//! a plain frame.
//!
//! Each check is a comparison and a bit or counter in a table sized before the phase: no
//! allocation per message.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::histogram::Histogram;
use crate::payload::{self, Kind};

/// The longest epoch `wspush.v1` sends (letters and digits).
const MAX_EPOCH_LEN: usize = 16;

/// A position `EPOCH:OFFSET` in an id's history, without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    epoch: [u8; MAX_EPOCH_LEN],
    epoch_len: u8,
    pub offset: u64,
}

impl Position {
    /// Parses `EPOCH:OFFSET` (1 to 16 letters and digits, a decimal offset).
    pub fn parse(text: &[u8]) -> Option<Position> {
        let colon = text.iter().position(|&b| b == b':')?;
        let (epoch, digits) = (&text[..colon], &text[colon + 1..]);
        if epoch.is_empty() || epoch.len() > MAX_EPOCH_LEN || !epoch.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let offset = digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        let mut bytes = [0; MAX_EPOCH_LEN];
        bytes[..epoch.len()].copy_from_slice(epoch);
        Some(Position { epoch: bytes, epoch_len: epoch.len() as u8, offset })
    }

    fn epoch(&self) -> &[u8] {
        &self.epoch[..usize::from(self.epoch_len)]
    }

    fn same_epoch(&self, other: &Position) -> bool {
        self.epoch() == other.epoch()
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", String::from_utf8_lossy(self.epoch()), self.offset)
    }
}

/// One socket's share of the accounting, kept across its reconnects.
#[derive(Debug, Default)]
pub struct Socket {
    /// A bitmap: broadcast numbers seen this phase (publishers may run in parallel, so
    /// broadcasts can arrive in any order), or, with per-socket unicasts (`resume`), the
    /// unicasts of this socket's id seen, bit `seq / ids`.
    pub seen: Vec<u64>,
    /// Stops reading after its upgrade.
    pub slow: bool,
    /// The last position a `wspush.v1` frame told it (`None`: none yet).
    pub position: Option<Position>,
    /// `!pos` or `!lost` seen since the socket last (re)connected: it is live.
    pub live: bool,
    /// Resuming: the missed unicasts it still has to get before its `!pos`.
    pub missed: u64,
    /// It connected with `?since`, and has not had its `!pos` yet.
    pub resuming: bool,
    /// It reconnected and has not had every missed unicast yet.
    pub replaying: bool,
}

impl Socket {
    /// A socket that (re)connects: not live until its `!pos`; `missed` unicasts to come.
    pub fn reconnecting(&mut self, missed: u64, resuming: bool) {
        self.live = false;
        self.missed = missed;
        self.resuming = resuming;
        self.replaying = true;
    }
}

/// How many of the sequence numbers `lo..hi` go to id `id` when unicast `s` goes to id
/// `s % ids` (round robin), as local indices `s / ids`: `j_lo..j_hi`.
pub fn id_range(id: u64, ids: u64, lo: u64, hi: u64) -> (u64, u64) {
    let first = |bound: u64| if bound > id { (bound - id).div_ceil(ids) } else { 0 };
    (first(lo), first(hi).max(first(lo)))
}

/// The `wspush.v1` checks that failed, counted where they are seen (a client process's
/// [`Tally`]), added up over the processes (`swarm::Merged`) and over the phases of a run
/// (`scenarios::Faults`); any of them non-zero, and the run is not exact.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PositionFaults {
    /// An offset that skipped ahead within an epoch (messages never seen).
    pub position_gaps: u64,
    /// An offset not above the last one within an epoch (repeated or out of order), or a
    /// `!pos` behind what the socket had.
    pub position_repeats: u64,
    /// A new epoch without `!lost` (history lost silently).
    pub epoch_changes: u64,
    /// `!lost` received (history could not reach back): nothing here should be lost.
    pub lost_signals: u64,
    /// A unicast with the `-` head (no position), data before the `!pos`, or (in a report)
    /// an open socket that never had its `!pos`.
    pub unpositioned: u64,
    /// Resuming: `!pos` before every missed message was replayed.
    pub replay_incomplete: u64,
}

impl PositionFaults {
    /// Each count by the name it has in the JSON and in the rows, in their order.
    fn fields_mut(&mut self) -> [(&'static str, &mut u64); 6] {
        [
            ("position_gaps", &mut self.position_gaps),
            ("position_repeats", &mut self.position_repeats),
            ("epoch_changes", &mut self.epoch_changes),
            ("lost_signals", &mut self.lost_signals),
            ("unpositioned", &mut self.unpositioned),
            ("replay_incomplete", &mut self.replay_incomplete),
        ]
    }

    /// Each count by its name, in the order the JSON and the rows show them.
    pub fn fields(&self) -> [(&'static str, u64); 6] {
        let mut copy = *self;
        copy.fields_mut().map(|(name, n)| (name, *n))
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &PositionFaults) {
        for ((_, n), (_, more)) in self.fields_mut().into_iter().zip(other.fields()) {
            *n += more;
        }
    }

    /// The counts of a `report` line (see [`report`]); a count it lacks is 0.
    pub fn from_report(line: &Value) -> PositionFaults {
        let mut faults = PositionFaults::default();
        for (name, n) in faults.fields_mut() {
            *n = line[name].as_u64().unwrap_or(0);
        }
        faults
    }
}

/// What this process saw in the current phase.
pub struct Tally {
    /// Bench messages read, whatever they were.
    pub deliveries: u64,
    /// First deliveries to the right socket: what the parent waits for.
    pub good: u64,
    pub unicast_seen: Vec<u8>,
    pub unicast_dups: u64,
    /// Unicasts that named another id than their socket's.
    pub misrouted: u64,
    /// Sequence numbers that were never sent (unicasts beyond the plan).
    pub unexpected: u64,
    pub broadcast_dups: u64,
    pub latency: Histogram,
    pub first_ns: u64,
    pub last_ns: u64,
    pub other_messages: u64,
    pub pings: u64,
    pub bad_frames: u64,
    pub closes: BTreeMap<String, u64>,
    /// Unicasts are counted per socket (`Socket::seen`, bit `seq / ids`) rather than per
    /// process: several sockets share an id (`resume`). 0: per process.
    pub per_socket_ids: u64,
    /// Resuming: unicasts below this sequence number are the ones the socket missed.
    pub missed_below: u64,
    /// The `wspush.v1` checks that failed.
    pub positions: PositionFaults,
    /// `!pos` received.
    pub pos_signals: u64,
    /// Sockets whose missed messages all arrived, and when the last of them did.
    pub replays_done: u64,
    pub replay_done_ns: u64,
}

impl Tally {
    pub fn new(unicast_space: usize) -> Self {
        Tally {
            deliveries: 0,
            good: 0,
            unicast_seen: vec![0; unicast_space],
            unicast_dups: 0,
            misrouted: 0,
            unexpected: 0,
            broadcast_dups: 0,
            latency: Histogram::default(),
            first_ns: 0,
            last_ns: 0,
            other_messages: 0,
            pings: 0,
            bad_frames: 0,
            closes: BTreeMap::new(),
            per_socket_ids: 0,
            missed_below: 0,
            positions: PositionFaults::default(),
            pos_signals: 0,
            replays_done: 0,
            replay_done_ns: 0,
        }
    }

    /// A fresh tally for the next phase, in the same mode.
    pub fn next_phase(&self) -> Self {
        Tally {
            per_socket_ids: self.per_socket_ids,
            missed_below: self.missed_below,
            ..Tally::new(self.unicast_seen.len())
        }
    }

    /// A text or binary frame's payload read on the socket of `id`: with `v1`, a
    /// `wspush.v1` frame (head, then the body as a plain one).
    pub fn frame(&mut self, data: &[u8], id: u32, now: u64, socket: &mut Socket, v1: bool) {
        if !v1 {
            return self.message(data, id, now, socket);
        }
        if let Some(control) = data.strip_prefix(b"!") {
            return self.control(control, socket);
        }
        let Some(newline) = data.iter().position(|&b| b == b'\n') else {
            self.bad_frames += 1;
            return;
        };
        let (head, body) = (&data[..newline], &data[newline + 1..]);
        if head == b"-" {
            // Live-only: a broadcast. A unicast to an id with history has a position.
            if payload::parse(body).is_some_and(|stamp| stamp.kind == Kind::Unicast) {
                self.positions.unpositioned += 1;
            }
            return self.message(body, id, now, socket);
        }
        let Some(position) = Position::parse(head) else {
            self.bad_frames += 1;
            return;
        };
        if !socket.live && !socket.resuming {
            // Data before the `!pos` that starts every v1 socket (a resuming one is replayed
            // to first).
            self.positions.unpositioned += 1;
        }
        self.advance(socket, position, false);
        self.message(body, id, now, socket);
    }

    /// Checks that `next` follows the socket's last position (`exact`: `!pos`, which must
    /// equal it) and moves the socket there.
    fn advance(&mut self, socket: &mut Socket, next: Position, exact: bool) {
        if let Some(last) = socket.position {
            if !last.same_epoch(&next) {
                self.positions.epoch_changes += 1;
            } else {
                let expected = if exact { last.offset } else { last.offset + 1 };
                match next.offset.cmp(&expected) {
                    std::cmp::Ordering::Greater => self.positions.position_gaps += 1,
                    std::cmp::Ordering::Less => self.positions.position_repeats += 1,
                    std::cmp::Ordering::Equal => {}
                }
            }
        }
        socket.position = Some(next);
    }

    /// `!pos E:O` or `!lost E:O` (after the `!`).
    fn control(&mut self, text: &[u8], socket: &mut Socket) {
        let (lost, rest) = if let Some(rest) = text.strip_prefix(b"pos ") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix(b"lost ") {
            (true, rest)
        } else {
            self.bad_frames += 1;
            return;
        };
        let Some(position) = Position::parse(rest) else {
            self.bad_frames += 1;
            return;
        };
        if lost {
            // Delivery goes on after `position`: no gap or epoch change to count beyond it.
            self.positions.lost_signals += 1;
            socket.position = Some(position);
        } else {
            self.pos_signals += 1;
            self.advance(socket, position, true);
            if socket.resuming && socket.missed > 0 {
                self.positions.replay_incomplete += 1;
            }
        }
        socket.live = true;
        socket.resuming = false;
    }

    /// Counts the socket's replay as done (once), if it has had every missed unicast.
    fn replay_done(&mut self, socket: &mut Socket, now: u64) {
        if socket.replaying && socket.missed == 0 {
            socket.replaying = false;
            self.replays_done += 1;
            self.replay_done_ns = self.replay_done_ns.max(now);
        }
    }

    /// A socket that just reconnected: done at once if it has nothing to replay (or had it
    /// all in the read that brought its 101).
    pub fn upgraded(&mut self, socket: &mut Socket, now: u64) {
        self.replay_done(socket, now);
    }

    /// One bench message (or another text) read on the socket of `id`.
    pub fn message(&mut self, data: &[u8], id: u32, now: u64, socket: &mut Socket) {
        let Some(stamp) = payload::parse(data) else {
            self.other_messages += 1;
            return;
        };
        self.deliveries += 1;
        self.latency.record(now.saturating_sub(stamp.sent_ns));
        if self.first_ns == 0 {
            self.first_ns = now;
        }
        self.last_ns = now;
        match stamp.kind {
            // Delivered to another id: not a delivery of this message, whoever else got it.
            Kind::Unicast if stamp.target != id => self.misrouted += 1,
            Kind::Unicast if self.per_socket_ids > 0 => {
                let index = u64::from(stamp.seq) / self.per_socket_ids;
                if u64::from(stamp.seq) % self.per_socket_ids != u64::from(id) {
                    // Names this id but could not have been sent to it (round robin).
                    self.unexpected += 1;
                } else if set_bit(&mut socket.seen, index as usize) {
                    self.unicast_dups += 1;
                } else {
                    self.good += 1;
                    if u64::from(stamp.seq) < self.missed_below && socket.missed > 0 {
                        socket.missed -= 1;
                        self.replay_done(socket, now);
                    }
                }
            }
            Kind::Unicast => match self.unicast_seen.get_mut(stamp.seq as usize) {
                None => self.unexpected += 1,
                Some(seen) => {
                    if *seen > 0 {
                        self.unicast_dups += 1;
                    } else {
                        self.good += 1;
                    }
                    *seen = seen.saturating_add(1);
                }
            },
            Kind::Broadcast => {
                if set_bit(&mut socket.seen, stamp.seq as usize) {
                    self.broadcast_dups += 1;
                } else {
                    self.good += 1;
                }
            }
        }
    }

    pub fn closed(&mut self, why: impl Into<String>) {
        *self.closes.entry(why.into()).or_insert(0) += 1;
    }
}

/// Sets bit `index` of `bits`; whether it was set already.
fn set_bit(bits: &mut Vec<u64>, index: usize) -> bool {
    let (word, bit) = (index / 64, 1u64 << (index % 64));
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    let was = bits[word] & bit != 0;
    bits[word] |= bit;
    was
}

/// Of the bits set in `seen`, how many are in `lo..hi` and how many are not.
pub fn split_range(seen: &[u64], lo: u64, hi: u64) -> (u64, u64) {
    let (mut inside, mut outside) = (0, 0);
    for (word, &bits) in seen.iter().enumerate() {
        if bits == 0 {
            continue;
        }
        let base = word as u64 * 64;
        let mask = (0..64u64).filter(|b| (lo..hi).contains(&(base + b))).fold(0u64, |m, b| m | 1 << b);
        inside += u64::from((bits & mask).count_ones());
        outside += u64::from((bits & !mask).count_ones());
    }
    (inside, outside)
}

/// Of the broadcast numbers set in `seen`, how many are below `sent` and how many are not
/// (numbers that were never sent).
pub fn split_broadcasts(seen: &[u64], sent: u32) -> (u32, u32) {
    let (whole, rest) = (sent as usize / 64, sent % 64);
    let (mut below, mut beyond) = (0, 0);
    for (word, bits) in seen.iter().enumerate() {
        let mask = match word.cmp(&whole) {
            std::cmp::Ordering::Less => u64::MAX,
            std::cmp::Ordering::Equal => (1u64 << rest) - 1,
            std::cmp::Ordering::Greater => 0,
        };
        below += (bits & mask).count_ones();
        beyond += (bits & !mask).count_ones();
    }
    (below, beyond)
}

/// What a phase expected of each socket.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Every healthy socket: broadcasts `0..K` (unicasts are counted per process).
    Broadcasts(u32),
    /// Per-socket unicasts (`resume`): each socket the unicasts `lo..hi` of its id.
    Unicasts { lo: u64, hi: u64 },
}

impl Expect {
    /// `report K` (broadcasts) or `report-range LO HI` (per-socket unicasts).
    pub fn from_command(command: &str) -> Option<Expect> {
        let mut words = command.split_whitespace();
        let number = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok()).unwrap_or(0);
        match words.next()? {
            "report" => Some(Expect::Broadcasts(number(words.next()) as u32)),
            "report-range" => Some(Expect::Unicasts { lo: number(words.next()), hi: number(words.next()) }),
            _ => None,
        }
    }
}

/// One socket as a report sees it: its id, its accounting, whether it is open (upgraded and
/// not closed).
pub type ReportSocket<'a> = (u32, &'a mut Socket, bool);

/// The `report` line of a phase: the tally, and each socket's share (its bitmap of what it
/// saw is emptied for the next phase; a slow client stopped reading and so is not expected
/// to have anything). `v1`: an open socket that never had its `!pos` is unpositioned.
pub fn report<'a>(
    sockets: impl Iterator<Item = ReportSocket<'a>>,
    tally: &Tally,
    expect: Expect,
    connected: usize,
    v1: bool,
) -> Value {
    let (mut broadcast_missing, mut broadcast_unexpected) = (0u64, 0u64);
    let (mut unicast_missing, mut unicast_expected, mut socket_distinct) = (0u64, 0u64, 0u64);
    let (mut healthy, mut slow, mut live, mut unpositioned, mut replay_pending) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for (id, socket, open) in sockets {
        if socket.slow {
            slow += 1;
        } else {
            healthy += 1;
        }
        live += u64::from(socket.live);
        unpositioned += u64::from(v1 && open && !socket.live && !socket.slow);
        replay_pending += u64::from(socket.replaying);
        match expect {
            Expect::Broadcasts(broadcasts) => {
                let (seen, beyond) = split_broadcasts(&socket.seen, broadcasts);
                broadcast_unexpected += u64::from(beyond);
                if !socket.slow {
                    broadcast_missing += u64::from(broadcasts.saturating_sub(seen));
                }
            }
            Expect::Unicasts { lo, hi } => {
                let ids = tally.per_socket_ids.max(1);
                let (j_lo, j_hi) = id_range(u64::from(id), ids, lo, hi);
                let (inside, outside) = split_range(&socket.seen, j_lo, j_hi);
                broadcast_unexpected += outside;
                socket_distinct += inside;
                if !socket.slow {
                    unicast_expected += j_hi - j_lo;
                    unicast_missing += (j_hi - j_lo).saturating_sub(inside);
                }
            }
        }
        socket.seen = Vec::new();
    }
    let unicast_distinct =
        tally.unicast_seen.iter().filter(|&&seen| seen > 0).count() as u64 + socket_distinct;
    let mut positions = tally.positions;
    positions.unpositioned += unpositioned;
    let mut line = json!({
        "type": "report",
        "connected": connected,
        "healthy": healthy,
        "slow": slow,
        "deliveries": tally.deliveries,
        "unicast_distinct": unicast_distinct,
        "unicast_duplicates": tally.unicast_dups,
        "unicast_expected": unicast_expected,
        "unicast_missing": unicast_missing,
        "misrouted": tally.misrouted,
        "unexpected": tally.unexpected + broadcast_unexpected,
        "broadcast_missing": broadcast_missing,
        "broadcast_duplicates": tally.broadcast_dups,
        "first_ns": tally.first_ns,
        "last_ns": tally.last_ns,
        "latency": tally.latency.to_json(),
        "other_messages": tally.other_messages,
        "pings": tally.pings,
        "bad_frames": tally.bad_frames,
        "closes": tally.closes,
    });
    let object = line.as_object_mut().expect("an object");
    object.extend(positions.fields().map(|(name, n)| (name.to_owned(), json!(n))));
    if let Value::Object(rest) = json!({
        "pos_signals": tally.pos_signals,
        "live": live,
        "replays_done": tally.replays_done,
        "replay_done_ns": tally.replay_done_ns,
        "replay_pending": replay_pending,
    }) {
        object.extend(rest);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload;

    fn unicast(seq: u32, target: u32) -> Vec<u8> {
        let mut text = Vec::new();
        payload::write(&mut text, Kind::Unicast, seq, 1, target, 40);
        text
    }

    fn v1(head: &str, body: &[u8]) -> Vec<u8> {
        [head.as_bytes(), b"\n", body].concat()
    }

    #[test]
    fn positions_parse_and_print() {
        let p = Position::parse(b"k3j9a2x1:42").unwrap();
        assert_eq!((p.offset, p.to_string()), (42, "k3j9a2x1:42".to_owned()));
        for bad in [&b"k3:"[..], b":4", b"k-3:4", b"k3:4x", b"k3", b"aaaaaaaaaaaaaaaaa:1"] {
            assert_eq!(Position::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn v1_offsets_must_run_on_by_one_within_an_epoch() {
        let mut tally = Tally::new(10);
        let mut socket = Socket::default();
        tally.frame(b"!pos e1:0", 3, 5, &mut socket, true);
        assert!(socket.live);
        tally.frame(&v1("e1:1", &unicast(0, 3)), 3, 5, &mut socket, true);
        tally.frame(&v1("e1:3", &unicast(1, 3)), 3, 5, &mut socket, true);
        assert_eq!(tally.positions.position_gaps, 1, "2 was skipped");
        tally.frame(&v1("e1:3", &unicast(2, 3)), 3, 5, &mut socket, true);
        assert_eq!(tally.positions.position_repeats, 1, "3 twice");
        tally.frame(&v1("e2:4", &unicast(3, 3)), 3, 5, &mut socket, true);
        assert_eq!(tally.positions.epoch_changes, 1, "a new epoch without !lost");
        tally.frame(b"!lost e3:9", 3, 5, &mut socket, true);
        tally.frame(&v1("e3:10", &unicast(4, 3)), 3, 5, &mut socket, true);
        assert_eq!(
            (tally.positions.lost_signals, tally.positions.position_gaps, tally.positions.epoch_changes),
            (1, 1, 1)
        );
        tally.frame(&v1("-", &unicast(5, 3)), 3, 5, &mut socket, true);
        assert_eq!(tally.positions.unpositioned, 1, "a unicast without its position");
        assert_eq!((tally.good, tally.unicast_dups, tally.bad_frames), (6, 0, 0), "bodies counted as plain");
        tally.frame(b"no newline", 3, 5, &mut socket, true);
        tally.frame(b"!pos nonsense", 3, 5, &mut socket, true);
        assert_eq!(tally.bad_frames, 2);
    }

    #[test]
    fn data_before_the_first_pos_is_unpositioned() {
        let mut tally = Tally::new(10);
        let mut socket = Socket::default();
        tally.frame(&v1("e1:1", &unicast(0, 3)), 3, 5, &mut socket, true);
        assert_eq!(tally.positions.unpositioned, 1);
        tally.frame(b"!pos e1:1", 3, 5, &mut socket, true);
        assert_eq!((tally.positions.position_gaps, tally.positions.position_repeats), (0, 0));
    }

    #[test]
    fn a_resume_replays_every_missed_unicast_before_its_pos() {
        // Two ids, round robin: id 1 gets the odd sequence numbers; 0..6 were missed.
        let mut tally = Tally { per_socket_ids: 2, missed_below: 6, ..Tally::new(0) };
        let mut socket = Socket { position: Position::parse(b"e:0"), ..Socket::default() };
        socket.reconnecting(3, true);
        for (offset, seq) in [(1, 1), (2, 3)] {
            tally.frame(&v1(&format!("e:{offset}"), &unicast(seq, 1)), 1, 7, &mut socket, true);
        }
        tally.frame(b"!pos e:2", 1, 8, &mut socket, true);
        assert_eq!(tally.positions.replay_incomplete, 1, "seq 5 had not come");
        tally.frame(&v1("e:3", &unicast(5, 1)), 1, 9, &mut socket, true);
        tally.frame(&v1("e:4", &unicast(7, 1)), 1, 10, &mut socket, true);
        tally.frame(&v1("e:5", &unicast(7, 1)), 1, 10, &mut socket, true);
        assert_eq!((tally.good, tally.unicast_dups, tally.replays_done, tally.replay_done_ns), (4, 1, 1, 9));
        tally.frame(&v1("e:6", &unicast(2, 1)), 1, 10, &mut socket, true);
        assert_eq!(tally.unexpected, 1, "an even number never goes to id 1");
        let r =
            report([(1, &mut socket, true)].into_iter(), &tally, Expect::Unicasts { lo: 0, hi: 10 }, 1, true);
        // Id 1 expects 1, 3, 5, 7, 9: 9 is missing.
        assert_eq!(
            (r["unicast_expected"].as_u64(), r["unicast_missing"].as_u64()),
            (Some(5), Some(1)),
            "{r}"
        );
        assert_eq!(r["unicast_distinct"], 4, "{r}");
    }

    #[test]
    fn position_faults_add_up_and_read_back_from_a_report() {
        let mut tally = Tally::new(0);
        let mut socket = Socket::default();
        tally.frame(&v1("e1:1", &unicast(0, 3)), 3, 5, &mut socket, true);
        tally.frame(&v1("e1:3", &unicast(1, 3)), 3, 5, &mut socket, true);
        let r = report([(3, &mut socket, true)].into_iter(), &tally, Expect::Broadcasts(0), 1, true);
        let read = PositionFaults::from_report(&r);
        // Both frames came before a `!pos`, and the socket, open, never had one.
        assert_eq!(
            read,
            PositionFaults { position_gaps: 1, unpositioned: 3, ..PositionFaults::default() },
            "{r}"
        );
        let mut sum = read;
        sum.add(&read);
        let names: Vec<_> = sum.fields().iter().map(|&(name, n)| format!("{name} {n}")).collect();
        assert_eq!(
            names.join(", "),
            "position_gaps 2, position_repeats 0, epoch_changes 0, lost_signals 0, unpositioned 6, \
             replay_incomplete 0"
        );
    }

    #[test]
    fn id_ranges_of_round_robin_unicasts() {
        assert_eq!(id_range(0, 1, 0, 500), (0, 500));
        assert_eq!(id_range(3, 10, 0, 25), (0, 3), "3, 13, 23");
        assert_eq!(id_range(3, 10, 4, 25), (1, 3), "13, 23");
        assert_eq!(id_range(7, 10, 0, 5), (0, 0));
        assert_eq!(split_range(&[0b1011], 1, 3), (1, 2));
    }
}
