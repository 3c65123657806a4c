//! A Redis Cluster's key space: which of the 16,384 hash slots a key or channel is in (CRC16
//! of the key, or of its `{hash tag}`), and which master serves each slot, as `CLUSTER SLOTS`
//! tells it. Pure: bytes and replies in, values out.
//!
//! wspush puts an id in braces in each of its names (`wspush:u:{456}`, `wspush:h:{456}`,
//! `wspush:m:{456}`), so an id's channel, history stream and meta hash share one slot: the
//! append script writes both keys and publishes on one shard, atomically. Every id is its own
//! tag, so ids spread over the slots as evenly as CRC16 spreads them.

use redis::Value;

/// The number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: usize = 16_384;

/// A master's address.
pub(crate) type Node = (String, u16);

/// The slot of `key`: CRC16 of the first `{...}` in it when that holds something, else of all
/// of it, modulo 16,384 (the cluster specification's `HASH_SLOT`).
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis Cluster hashes.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// Which master serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotMap {
    /// The masters, sorted and without repeats.
    masters: Vec<Node>,
    /// For each slot, its master's index in `masters`, or [`UNSERVED`].
    owners: Box<[u16]>,
}

const UNSERVED: u16 = u16::MAX;

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply; `asked` is the node that gave it (a master listed with
    /// an empty host is on that node's host).
    ///
    /// # Errors
    ///
    /// What in the reply is not a slot map.
    pub fn from_cluster_slots(reply: &Value, asked: &str) -> Result<SlotMap, String> {
        let Value::Array(ranges) = reply else { return Err("CLUSTER SLOTS did not answer an array".into()) };
        let mut owned: Vec<(u16, u16, Node)> = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(fields) = range else { return Err("a slot range that is not an array".into()) };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err("a slot range without its start, end and master".into());
            };
            let valid = |slot: i64| (0..SLOTS as i64).contains(&slot);
            if !valid(*start) || !valid(*end) || start > end {
                return Err(format!("the slot range {start}-{end} is outside 0-16383"));
            }
            let host = match master.first() {
                Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
                Some(Value::SimpleString(host)) => host.clone(),
                _ => return Err("a master without its host".into()),
            };
            let port = match master.get(1) {
                Some(Value::Int(port)) => u16::try_from(*port).ok().filter(|&port| port > 0),
                _ => None,
            };
            let Some(port) = port else { return Err(format!("the master {host} has no valid port")) };
            // "" and "?" stand for a host the node does not know it by: the one asked.
            let host = if host.is_empty() || host == "?" { asked.to_owned() } else { host };
            owned.push((*start as u16, *end as u16, (host, port)));
        }
        let mut masters: Vec<Node> = owned.iter().map(|(_, _, node)| node.clone()).collect();
        masters.sort();
        masters.dedup();
        let mut owners = vec![UNSERVED; SLOTS].into_boxed_slice();
        for (start, end, node) in &owned {
            let index = masters.binary_search(node).expect("listed above") as u16;
            owners[*start as usize..=*end as usize].fill(index);
        }
        Ok(SlotMap { masters, owners })
    }

    /// The master serving `slot`, if one does.
    pub fn owner(&self, slot: u16) -> Option<&Node> {
        self.owners.get(slot as usize).and_then(|&index| self.masters.get(index as usize))
    }

    /// The master serving `key`'s slot, if one does.
    pub fn owner_of(&self, key: &[u8]) -> Option<&Node> {
        self.owner(slot_of(key))
    }

    /// Every master, sorted.
    pub fn masters(&self) -> &[Node] {
        &self.masters
    }

    /// Whether every slot has a master (a cluster whose slots are not all served answers
    /// CLUSTERDOWN for the rest).
    pub fn is_complete(&self) -> bool {
        !self.owners.contains(&UNSERVED)
    }

    /// `slot` is now served by `node` (a `MOVED` reply said so, ahead of the next map).
    pub fn moved(&mut self, slot: u16, node: Node) {
        let index = match self.masters.binary_search(&node) {
            Ok(index) => index,
            Err(at) => {
                self.masters.insert(at, node);
                for owner in self.owners.iter_mut().filter(|owner| **owner != UNSERVED) {
                    if *owner as usize >= at {
                        *owner += 1;
                    }
                }
                at
            }
        };
        if let Some(owner) = self.owners.get_mut(slot as usize) {
            *owner = index as u16;
        }
    }
}

/// The slot and the node of a `MOVED SLOT HOST:PORT` or `ASK SLOT HOST:PORT` error, and
/// whether it was `ASK` (a slot being migrated: this one command goes there, after `ASKING`).
pub(crate) fn redirect(error: &str) -> Option<(u16, Node, bool)> {
    let mut words = error.split_ascii_whitespace();
    let ask = match words.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let slot: u16 = words.next()?.parse().ok().filter(|&slot| (slot as usize) < SLOTS)?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    Some((slot, (host.trim_start_matches('[').trim_end_matches(']').to_owned(), port.parse().ok()?), ask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_the_cluster_specifications() {
        // The specification's own check value, and slots `redis-cli CLUSTER KEYSLOT` printed.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"123456789"), 12739);
        assert_eq!(slot_of(b"w:u:{456}"), 13712);
        assert_eq!(slot_of(b"w:u:{456}"), slot_of(b"456"));
        assert_eq!(slot_of(b"wspush:h:{456}"), slot_of(b"wspush:m:{456}"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(slot_of(b"a{}b"), crc16(b"a{}b") % 16384);
        assert_eq!(slot_of(b"p:{a}b}"), slot_of(b"a"));
        assert_eq!(slot_of(b"x{y"), crc16(b"x{y") % 16384);
    }

    #[test]
    fn ids_spread_evenly_over_three_masters() {
        let mut per_third = [0usize; 3];
        for id in 0..30_000 {
            let slot = slot_of(format!("wspush:u:{{{id}}}").as_bytes()) as usize;
            per_third[slot * 3 / SLOTS] += 1;
        }
        for count in per_third {
            assert!((9_500..=10_500).contains(&count), "{per_third:?}");
        }
    }

    fn range(start: i64, end: i64, host: &str, port: i64) -> Value {
        let node = Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ]);
        Value::Array(vec![Value::Int(start), Value::Int(end), node])
    }

    #[test]
    fn a_cluster_slots_reply_becomes_the_map() {
        let reply = Value::Array(vec![
            range(0, 5460, "10.0.0.1", 7000),
            range(10923, 16383, "", 7002),
            range(5461, 10922, "10.0.0.2", 7001),
        ]);
        let map = SlotMap::from_cluster_slots(&reply, "10.0.0.9").unwrap();
        assert!(map.is_complete());
        assert_eq!(map.owner(0), Some(&("10.0.0.1".to_owned(), 7000)));
        assert_eq!(map.owner(5461), Some(&("10.0.0.2".to_owned(), 7001)));
        assert_eq!(map.owner(16383), Some(&("10.0.0.9".to_owned(), 7002)), "an empty host is the one asked");
        assert_eq!(map.masters().len(), 3);

        let partial = SlotMap::from_cluster_slots(&Value::Array(vec![range(0, 100, "h", 1)]), "x").unwrap();
        assert!(!partial.is_complete());
        assert_eq!(partial.owner(101), None);
        assert!(SlotMap::from_cluster_slots(&Value::Array(vec![range(0, 16384, "h", 1)]), "x").is_err());
        assert!(SlotMap::from_cluster_slots(&Value::Array(vec![range(0, 1, "h", 0)]), "x").is_err());
        assert!(SlotMap::from_cluster_slots(&Value::Nil, "x").is_err());
    }

    #[test]
    fn a_redirect_moves_one_slot_ahead_of_the_next_map() {
        let reply = Value::Array(vec![range(0, 16383, "a", 1)]);
        let mut map = SlotMap::from_cluster_slots(&reply, "x").unwrap();
        let (slot, node, ask) = redirect("MOVED 3999 127.0.0.1:6381").unwrap();
        assert_eq!((slot, node.clone(), ask), (3999, ("127.0.0.1".into(), 6381), false));
        map.moved(slot, node.clone());
        assert_eq!(map.owner(3999), Some(&node));
        assert_eq!(map.owner(4000), Some(&("a".into(), 1)), "the other slots stay");
        assert_eq!(redirect("ASK 1 [::1]:7000"), Some((1, ("::1".into(), 7000), true)));
        assert_eq!(redirect("MOVED 16384 h:1"), None);
        assert_eq!(redirect("ERR x"), None);
    }
}
