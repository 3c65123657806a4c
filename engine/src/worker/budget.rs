//! The node-wide cap on queued output (`max_node_buffered_bytes`): the workers' shared
//! [`NodeBuffer`], each worker's account with it ([`Budget`]), and which sockets are
//! closed to make room ([`close_oldest_blocked`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The output queued for sockets across the node, and its cap (`max_node_buffered_bytes`).
///
/// Each worker keeps its own total as a plain integer (a couple of integer adds per
/// message) and publishes it in its slot once per pass of its loop: the node's total, for
/// the gauge, is the sum of the slots. No locks, no atomic read-modify-write.
///
/// The cap works with reservations. A worker may grow its total up to a mark without
/// asking anyone; past it, it adds up what the other workers reserved, and either takes a
/// share of the room left (1/workers of it, at least the message at hand), publishing the
/// new mark as its reservation *before* using it, or finds the node full. At the end of
/// each pass it publishes its actual total as its reservation and gives up the rest, so
/// the next growth asks again (once per pass, not per message). Reservations never
/// exceed the cap together (up to workers racing in the same instant), so neither does
/// the output, except that a message for a socket that has taken all its output so far
/// is written at once rather than refused (the socket is not a slow consumer): a socket
/// may be one message over, then it is write-blocked and judged as below.
///
/// When the node is full, a message for a write-blocked socket (a slow consumer) makes
/// room: the worker closes its own sockets that have been write-blocked the longest first
/// (1008 "node buffer limit", discarding their queued output) until the message fits,
/// which at the latest is the socket itself. The order is exact within a worker; across
/// workers, each worker frees its own oldest (it cannot wait for another). On each tick, a
/// worker also checks the node's total, and if it is over the cap (races, the one message
/// over), frees its share of the excess (in proportion to what it holds), oldest first.
pub(crate) struct NodeBuffer {
    cap: Option<usize>,
    slots: Box<[NodeSlot]>,
}

/// One worker's published totals, on cache lines of their own (only their worker writes
/// them, once per pass).
#[derive(Debug, Default)]
#[repr(align(128))]
struct NodeSlot {
    /// Output queued for this worker's sockets.
    queued: AtomicU64,
    /// What the worker may hold before it asks again: at least `queued`.
    reserved: AtomicU64,
}

impl NodeBuffer {
    /// Slots for `workers`, under `cap` (`None`: unlimited).
    pub fn new(workers: usize, cap: Option<usize>) -> Self {
        Self { cap, slots: (0..workers).map(|_| NodeSlot::default()).collect() }
    }

    /// The output queued across the node, as last published.
    pub fn queued(&self) -> u64 {
        self.slots.iter().map(|slot| slot.queued.load(Ordering::Acquire)).sum()
    }

    /// What the workers other than `worker` reserved.
    fn others_reserved(&self, worker: usize) -> usize {
        let all: u64 = self
            .slots
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != worker)
            .map(|(_, slot)| slot.reserved.load(Ordering::Acquire))
            .sum();
        usize::try_from(all).unwrap_or(usize::MAX)
    }
}

/// One worker's account with the [`NodeBuffer`]: its total of queued output, its
/// reservation, and its sockets in the order they became write-blocked.
pub(crate) struct Budget {
    node: Arc<NodeBuffer>,
    worker: usize,
    /// Output queued for this worker's sockets: the sum of their `Link::queued`.
    buffered: usize,
    /// The value of `buffered` last published in this worker's [`NodeSlot`].
    published: usize,
    /// `buffered` may grow up to here without asking the node (`usize::MAX` without a cap).
    room_until: usize,
    /// Sockets in the order they became write-blocked, as (serial, `blocked_since`); only
    /// with a node cap. Entries of sockets that unblocked or closed since are stale, and
    /// skipped (or compacted away).
    blocked: VecDeque<(u64, u32)>,
}

impl Budget {
    /// The account of `worker` (its index among the node's slots).
    pub fn new(node: Arc<NodeBuffer>, worker: usize) -> Self {
        let room_until = if node.cap.is_some() { 0 } else { usize::MAX };
        Self { node, worker, buffered: 0, published: 0, room_until, blocked: VecDeque::new() }
    }

    /// Output queued for this worker's sockets.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    #[inline]
    pub fn add(&mut self, len: usize) {
        self.buffered += len;
    }

    #[inline]
    pub fn sub(&mut self, len: usize) {
        self.buffered -= len;
    }

    /// One socket's queue went from `before` to `after` bytes.
    pub fn replace(&mut self, before: usize, after: usize) {
        self.buffered = self.buffered - before + after;
    }

    /// Whether `len` more bytes fit: the hot path is an addition and a comparison, true
    /// while the reservation covers them (always, without a cap); past it, the node is
    /// asked ([`Budget::node_room`]).
    #[inline]
    pub fn has_room(&mut self, len: usize) -> bool {
        self.buffered + len <= self.room_until || self.node_room(len)
    }

    /// Whether `len` bytes are more than the node's whole cap: they never fit.
    pub fn over_cap(&self, len: usize) -> bool {
        self.node.cap.is_some_and(|cap| len > cap)
    }

    /// Whether the node has room for `len` more bytes of this worker's: if so, reserves a
    /// share of the room left (at least `len`) up to `room_until`.
    pub fn node_room(&mut self, len: usize) -> bool {
        let Some(cap) = self.node.cap else { return true };
        let others = self.node.others_reserved(self.worker);
        let wanted = self.buffered.saturating_add(len);
        let Some(left) = cap.checked_sub(wanted.saturating_add(others)) else {
            return false;
        };
        self.room_until = wanted + left / self.node.slots.len();
        self.slot().reserved.store(self.room_until as u64, Ordering::Release);
        true
    }

    /// A frame was queued past the node's cap (for a socket that is not a slow consumer):
    /// the reservation covers it, so that the other workers see it.
    pub fn overdraw(&mut self) {
        self.room_until = self.buffered;
        self.slot().reserved.store(self.buffered as u64, Ordering::Release);
    }

    /// Publishes the worker's total in its slot (the end of a pass); with a node cap, the
    /// room reserved beyond it is given up, so the next growth asks the node again.
    pub fn publish(&mut self) {
        self.publish_queued();
        if self.node.cap.is_some() && self.room_until != self.buffered {
            self.room_until = self.buffered;
            self.slot().reserved.store(self.buffered as u64, Ordering::Release);
        }
    }

    /// Publishes the worker's total for the gauge: at the end of each pass, and before a
    /// receipt is answered (so that whoever waits for it reads stats that include its
    /// message, even while a stream of commands keeps the pass going).
    pub fn publish_queued(&mut self) {
        if self.buffered != self.published {
            self.published = self.buffered;
            self.slot().queued.store(self.buffered as u64, Ordering::Release);
        }
    }

    /// When the node's output is over its cap, what this worker should hold at most to
    /// free its share of the excess (in proportion to what it holds).
    pub fn relief_target(&self) -> Option<usize> {
        let cap = self.node.cap?;
        let total = self.buffered.saturating_add(self.node.others_reserved(self.worker));
        if total <= cap {
            return None;
        }
        let share = ((total - cap) as u128 * self.buffered as u128).div_ceil(total as u128) as usize;
        Some(self.buffered.saturating_sub(share))
    }

    /// A socket became write-blocked: it is listed (with a cap only; without one nothing is
    /// ever closed to make room).
    pub fn note_blocked(&mut self, serial: u64, since: u32) {
        if self.node.cap.is_some() {
            self.blocked.push_back((serial, since));
        }
    }

    /// The entries of the list of blocked sockets, stale ones included.
    pub fn blocked_len(&self) -> usize {
        self.blocked.len()
    }

    /// Keeps the entries of the list of blocked sockets that `current` accepts.
    pub fn retain_blocked(&mut self, mut current: impl FnMut(u64, u32) -> bool) {
        self.blocked.retain(|&(serial, since)| current(serial, since));
    }

    fn slot(&self) -> &NodeSlot {
        &self.node.slots[self.worker]
    }
}

/// A worker's sockets as freeing room sees them.
pub(crate) trait Evict {
    fn budget(&mut self) -> &mut Budget;
    /// The key of the socket an entry of the blocked list names, if the entry is current:
    /// the socket is open and has been write-blocked since then.
    fn current(&self, serial: u64, since: u32) -> Option<usize>;
    /// Closes the socket at `key`, discarding its queued output (which the budget loses).
    fn evict(&mut self, key: usize);
}

/// Closes the sockets that have been write-blocked the longest, one by one, until
/// `enough`.
pub(crate) fn close_oldest_blocked<E: Evict>(sockets: &mut E, mut enough: impl FnMut(&mut E) -> bool) {
    while !enough(sockets) {
        let Some((serial, since)) = sockets.budget().blocked.pop_front() else { return };
        let Some(key) = sockets.current(serial, since) else { continue };
        sockets.evict(key);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn node(workers: usize, cap: Option<usize>) -> Arc<NodeBuffer> {
        Arc::new(NodeBuffer::new(workers, cap))
    }

    fn reserved(node: &NodeBuffer, worker: usize) -> u64 {
        node.slots[worker].reserved.load(Ordering::Acquire)
    }

    #[test]
    fn a_reservation_takes_a_share_of_the_room_left() {
        let node = node(2, Some(1_000));
        let mut first = Budget::new(node.clone(), 0);
        assert!(first.has_room(100));
        // 100 wanted, then half of the 900 left.
        assert_eq!(reserved(&node, 0), 550);
        first.add(100);
        // Within the reservation the node is not asked again.
        assert!(first.has_room(450));
        assert_eq!(reserved(&node, 0), 550);
    }

    #[test]
    fn the_node_is_full_when_the_others_reserved_the_rest() {
        let node = node(2, Some(1_000));
        let mut first = Budget::new(node.clone(), 0);
        let mut second = Budget::new(node.clone(), 1);
        assert!(first.has_room(100));
        assert!(!second.has_room(451), "550 reserved by the first worker, 451 more is over");
        assert_eq!(reserved(&node, 1), 0, "a refusal reserves nothing");
        assert!(second.has_room(450));
        assert_eq!(reserved(&node, 1), 450);
        assert!(!first.has_room(551), "the first worker's reservation ends at 550");
    }

    #[test]
    fn publishing_gives_back_what_is_not_used() {
        let node = node(2, Some(1_000));
        let mut first = Budget::new(node.clone(), 0);
        let mut second = Budget::new(node.clone(), 1);
        assert!(first.has_room(100));
        first.add(100);
        assert_eq!(node.queued(), 0, "the gauge moves when the worker publishes");
        first.publish();
        assert_eq!((node.queued(), reserved(&node, 0)), (100, 100));
        assert!(second.has_room(900));
        first.sub(100);
        first.publish();
        assert_eq!((node.queued(), reserved(&node, 0)), (0, 0));
        // Published totals of both workers add up.
        second.add(900);
        second.publish_queued();
        assert_eq!(node.queued(), 900);
    }

    #[test]
    fn an_overdraw_is_reserved_for_the_others_to_see() {
        let node = node(2, Some(1_000));
        let mut first = Budget::new(node.clone(), 0);
        let mut second = Budget::new(node.clone(), 1);
        assert!(second.has_room(1_000));
        assert!(!first.has_room(10));
        first.add(10);
        first.overdraw();
        assert_eq!(reserved(&node, 0), 10);
        // 10 over: this worker holds 10 of the 1,010, so its share rounds up to 1.
        assert_eq!(first.relief_target(), Some(9));
    }

    #[test]
    fn without_a_cap_there_is_always_room_and_no_list() {
        let node = node(2, None);
        let mut budget = Budget::new(node.clone(), 0);
        assert!(budget.has_room(usize::MAX / 2));
        budget.add(usize::MAX / 2);
        budget.publish();
        assert_eq!(reserved(&node, 0), 0, "no reservations without a cap");
        assert_eq!(node.queued(), (usize::MAX / 2) as u64);
        budget.note_blocked(1, 1);
        assert_eq!(budget.blocked_len(), 0);
        assert_eq!(budget.relief_target(), None);
    }

    #[test]
    fn the_excess_is_shared_in_proportion_to_what_each_holds() {
        let node = node(2, Some(1_000));
        let mut first = Budget::new(node.clone(), 0);
        let mut second = Budget::new(node.clone(), 1);
        first.add(900);
        first.publish();
        second.add(300);
        second.publish();
        // 200 over: the first holds 3/4 of the total, so frees 150; the second 50.
        assert_eq!(first.relief_target(), Some(750));
        assert_eq!(second.relief_target(), Some(250));
        second.sub(200);
        second.publish();
        assert_eq!(first.relief_target(), None);
    }

    /// Sockets by serial: (blocked since, bytes queued, still blocked).
    struct Fake {
        budget: Budget,
        sockets: HashMap<u64, (u32, usize, bool)>,
        closed: Vec<u64>,
    }

    impl Fake {
        fn new(sockets: &[(u64, u32, usize)]) -> Self {
            let mut budget = Budget::new(node(1, Some(1_000)), 0);
            let mut map = HashMap::new();
            for &(serial, since, queued) in sockets {
                budget.add(queued);
                budget.note_blocked(serial, since);
                map.insert(serial, (since, queued, true));
            }
            Self { budget, sockets: map, closed: Vec::new() }
        }
    }

    impl Evict for Fake {
        fn budget(&mut self) -> &mut Budget {
            &mut self.budget
        }

        fn current(&self, serial: u64, since: u32) -> Option<usize> {
            let &(blocked_since, _, blocked) = self.sockets.get(&serial)?;
            (blocked && blocked_since == since).then_some(serial as usize)
        }

        fn evict(&mut self, key: usize) {
            let (_, queued, _) = self.sockets.remove(&(key as u64)).unwrap();
            self.budget.sub(queued);
            self.closed.push(key as u64);
        }
    }

    #[test]
    fn the_longest_blocked_sockets_are_closed_first_until_enough() {
        let mut fake = Fake::new(&[(7, 10, 300), (3, 20, 300), (9, 30, 300), (4, 40, 300)]);
        // 3 unblocked since (its entry is stale); 9 unblocked and blocked again later.
        fake.sockets.get_mut(&3).unwrap().2 = false;
        fake.sockets.get_mut(&9).unwrap().0 = 50;
        fake.budget.note_blocked(9, 50);
        close_oldest_blocked(&mut fake, |fake| fake.budget.buffered() <= 600);
        assert_eq!(fake.closed, [7, 4], "oldest current entries first, stale ones skipped");
        assert_eq!(fake.budget.buffered(), 600);
        close_oldest_blocked(&mut fake, |_| false);
        assert_eq!(fake.closed, [7, 4, 9], "the list runs out: 3 is not blocked");
        assert_eq!(fake.budget.blocked_len(), 0);
    }

    #[test]
    fn nothing_is_closed_when_there_is_enough_room() {
        let mut fake = Fake::new(&[(1, 1, 100)]);
        close_oldest_blocked(&mut fake, |fake| fake.budget.buffered() <= 100);
        assert!(fake.closed.is_empty());
        assert_eq!(fake.budget.blocked_len(), 1);
    }
}
