//! Open connections per client address, for
//! [`Config::max_connections_per_ip`](crate::Config::max_connections_per_ip).
//!
//! The acceptor takes a slot when a connection is accepted (or registered), before its
//! handshake, and gives it back if the handshake fails; the worker gives it back when an
//! upgraded socket closes. The table is touched only then, under one mutex; a
//! socket remembers its entry as a 4-byte [`IpSlot`] rather than its address.
//!
//! IPv4-mapped IPv6 addresses count as their IPv4 address, and other IPv6 addresses by
//! their /64 network: one host usually holds a whole /64, and would otherwise have
//! 2^64 limits.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;

use slab::Slab;

/// A socket's entry in the table (its slab key plus one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpSlot(NonZeroU32);

impl IpSlot {
    /// The slot as stored in a connection: 0 for none.
    pub fn to_raw(slot: Option<IpSlot>) -> u32 {
        slot.map_or(0, |slot| slot.0.get())
    }

    /// The slot back from [`IpSlot::to_raw`].
    pub fn from_raw(raw: u32) -> Option<IpSlot> {
        NonZeroU32::new(raw).map(IpSlot)
    }
}

/// The table of open connections per address.
#[derive(Debug)]
pub(crate) struct IpLimit {
    max: u32,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    /// Address and its open connections; a slot is freed when its count reaches zero.
    slots: Slab<(IpAddr, u32)>,
    by_ip: HashMap<IpAddr, usize>,
}

impl IpLimit {
    /// A table allowing `max` open connections per address.
    pub fn new(max: usize) -> IpLimit {
        IpLimit { max: u32::try_from(max).unwrap_or(u32::MAX), table: Mutex::default() }
    }

    /// Counts one more connection from `ip`, unless it already has `max`.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        self.acquire_if(ip, |open| open < self.max)
    }

    /// Counts one more connection from `ip` whatever the limit (a socket the host upgraded
    /// itself: it is open already, and must still count against its address).
    pub fn acquire(&self, ip: IpAddr) -> Option<IpSlot> {
        self.acquire_if(ip, |_| true)
    }

    fn acquire_if(&self, ip: IpAddr, allowed: impl FnOnce(u32) -> bool) -> Option<IpSlot> {
        let ip = key_of(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Table { slots, by_ip } = &mut *table;
        let key = match by_ip.get(&ip) {
            Some(&key) => key,
            None => {
                if !allowed(0) {
                    return None;
                }
                let key = slots.insert((ip, 1));
                by_ip.insert(ip, key);
                return slot_of(key);
            }
        };
        let open = &mut slots[key].1;
        if !allowed(*open) {
            return None;
        }
        *open += 1;
        slot_of(key)
    }

    /// Gives back the slot of a closed connection.
    pub fn release(&self, slot: IpSlot) {
        let key = slot.0.get() as usize - 1;
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let Table { slots, by_ip } = &mut *table;
        let Some((ip, open)) = slots.get_mut(key) else {
            debug_assert!(false, "released a free slot");
            return;
        };
        *open -= 1;
        if *open == 0 {
            let ip = *ip;
            slots.remove(key);
            by_ip.remove(&ip);
        }
    }

    /// Open connections counted for `ip`.
    #[cfg(test)]
    pub fn open(&self, ip: IpAddr) -> u32 {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.by_ip.get(&key_of(ip)).map_or(0, |&key| table.slots[key].1)
    }
}

fn slot_of(key: usize) -> Option<IpSlot> {
    u32::try_from(key + 1).ok().and_then(NonZeroU32::new).map(IpSlot)
}

/// The address a connection counts against.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_up_to_the_limit_and_back() {
        let limit = IpLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.try_acquire(a).unwrap();
        let second = limit.try_acquire(a).unwrap();
        assert_eq!(first, second, "one slot per address");
        assert_eq!(limit.try_acquire(a), None);
        let other = limit.try_acquire(b).unwrap();
        assert_ne!(other, first);
        assert_eq!(limit.open(a), 2);
        limit.release(first);
        assert_eq!(limit.open(a), 1);
        assert!(limit.try_acquire(a).is_some());
        limit.release(first);
        limit.release(first);
        assert_eq!(limit.open(a), 0);
        // Forced past the limit (registered sockets), then back.
        let slots: Vec<_> = (0..3).map(|_| limit.acquire(a).unwrap()).collect();
        assert_eq!(limit.open(a), 3);
        assert_eq!(limit.try_acquire(a), None);
        for slot in slots {
            limit.release(slot);
        }
        limit.release(other);
        let table = limit.table.lock().unwrap();
        assert!(table.slots.is_empty() && table.by_ip.is_empty());
    }

    #[test]
    fn mapped_addresses_and_ipv6_networks_share_a_count() {
        let limit = IpLimit::new(1);
        assert!(limit.try_acquire("127.0.0.1".parse().unwrap()).is_some());
        assert_eq!(limit.try_acquire("::ffff:127.0.0.1".parse().unwrap()), None);
        assert!(limit.try_acquire("2001:db8:0:1::1".parse().unwrap()).is_some());
        assert_eq!(limit.try_acquire("2001:db8:0:1:ffff::2".parse().unwrap()), None);
        assert!(limit.try_acquire("2001:db8:0:2::1".parse().unwrap()).is_some());
        assert_eq!(IpSlot::from_raw(IpSlot::to_raw(None)), None);
        let slot = limit.acquire("10.1.1.1".parse().unwrap());
        assert_eq!(IpSlot::from_raw(IpSlot::to_raw(slot)), slot);
    }
}
