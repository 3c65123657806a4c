//! The checks and the accounting every client kind shares (`client.rs`'s mio client and
//! `tungstenite_client.rs`'s tokio-tungstenite one): what a bench message read on the socket of
//! an id counts as (delivered, duplicate, misrouted, unexpected), its latency, closes, and the
//! `report` line a client process prints at the end of a phase. A client kind only reads
//! frames and hands each message's payload here, so both count by the same rules.
//!
//! Each check is a comparison and a bit or counter in a table sized before the phase: no
//! allocation per message.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::histogram::Histogram;
use crate::payload::{self, Kind};

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
        }
    }

    /// One bench message (or another text) read on the socket of `id`.
    pub fn message(&mut self, data: &[u8], id: u32, now: u64, broadcasts_seen: &mut Vec<u64>) {
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
                let (word, bit) = (stamp.seq as usize / 64, 1u64 << (stamp.seq % 64));
                if broadcasts_seen.len() <= word {
                    broadcasts_seen.resize(word + 1, 0);
                }
                if broadcasts_seen[word] & bit != 0 {
                    self.broadcast_dups += 1;
                } else {
                    self.good += 1;
                }
                broadcasts_seen[word] |= bit;
            }
        }
    }

    pub fn closed(&mut self, why: impl Into<String>) {
        *self.closes.entry(why.into()).or_insert(0) += 1;
    }
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

/// The `report` line of a phase: the tally, and each socket's broadcasts (`sockets`: its bitmap
/// of broadcast numbers seen, which is emptied for the next phase, and whether it is a slow
/// client, which stopped reading and so is not expected to have them).
pub fn report<'a>(
    sockets: impl Iterator<Item = (&'a mut Vec<u64>, bool)>,
    tally: &Tally,
    broadcasts: u32,
    connected: usize,
) -> Value {
    let (mut broadcast_missing, mut broadcast_unexpected) = (0u64, 0u64);
    let (mut healthy, mut slow) = (0u64, 0u64);
    for (broadcasts_seen, is_slow) in sockets {
        let (seen, beyond) = split_broadcasts(broadcasts_seen, broadcasts);
        broadcast_unexpected += u64::from(beyond);
        if is_slow {
            slow += 1;
        } else {
            healthy += 1;
            broadcast_missing += u64::from(broadcasts.saturating_sub(seen));
        }
        *broadcasts_seen = Vec::new();
    }
    let unicast_distinct = tally.unicast_seen.iter().filter(|&&seen| seen > 0).count();
    json!({
        "type": "report",
        "connected": connected,
        "healthy": healthy,
        "slow": slow,
        "deliveries": tally.deliveries,
        "unicast_distinct": unicast_distinct,
        "unicast_duplicates": tally.unicast_dups,
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
    })
}
