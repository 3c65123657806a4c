//! The single-node history of a worker's ids (design §1.3): owned by one worker, so no
//! locks of its own. Each id keeps its last `history_size` messages, exactly; a history is
//! dropped `history_ttl` after its last message, or earlier, soonest-to-expire first, when
//! the worker's share of `history_max_bytes` is exceeded. A dropped history starts again under
//! a new epoch, so a client is never given a silent gap.
//!
//! A kept message holds the plain frame that was delivered live (a reference count, not a
//! copy): replaying it to a plain socket queues the very same bytes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::wire::split_frame;
use super::{Entry, Epoch, HistoryRead, Page, Position};

/// What an id's history costs beyond its messages, as counted against `history_max_bytes`:
/// its map slot (the `Arc<str>` and [`IdHistory`]), the id's own allocation header, an empty
/// ring and its expiry entry. The id's bytes are added. Measured by
/// `memory_accounting_covers_what_is_allocated`.
pub(crate) const ID_OVERHEAD: usize = 320;

/// What a kept message costs beyond its frame's bytes: its ring slot (the ring doubles as it
/// grows, so up to two slots), the shared header the frame's `Bytes` gets when it is kept
/// and the frame allocation's header. Measured by `memory_accounting_covers_what_is_allocated`.
pub(crate) const MESSAGE_OVERHEAD: usize = 144;

/// One kept message: the plain frame as delivered live.
pub(crate) struct Kept {
    /// Its offset in the history's epoch.
    pub offset: u64,
    /// The whole plain frame (header and payload).
    pub frame: Bytes,
    /// Where the payload starts in `frame`.
    body_start: u8,
    /// A binary message (else text).
    pub binary: bool,
}

impl Kept {
    /// The message itself.
    pub fn body(&self) -> &[u8] {
        &self.frame[usize::from(self.body_start)..]
    }

    /// As an [`Entry`], sharing the frame's bytes.
    fn entry(&self) -> Entry {
        Entry {
            offset: self.offset,
            binary: self.binary,
            body: self.frame.slice(usize::from(self.body_start)..),
        }
    }
}

/// One id's history.
struct IdHistory {
    epoch: Epoch,
    /// The newest offset (0: none yet in this epoch).
    top: u64,
    /// The kept messages, oldest first, contiguous offsets ending at `top`.
    ring: VecDeque<Kept>,
    /// What this history counts against the cap, its overhead included.
    bytes: usize,
    /// The worker's clock at the last message (or at creation).
    last_write_ms: u64,
    /// Tells this history's expiry entry from those of earlier histories of the same id.
    serial: u64,
}

impl IdHistory {
    /// The offset of the oldest kept message (`top + 1` when none is kept).
    fn front(&self) -> u64 {
        self.ring.front().map_or(self.top + 1, |kept| kept.offset)
    }

    /// Whether the history continues `since` with no gap: same epoch, not beyond the top,
    /// and the message after `since` is still kept (or there is none yet).
    fn reaches(&self, since: Position) -> bool {
        since.epoch == self.epoch && since.offset <= self.top && self.front() <= since.offset + 1
    }
}

/// A worker's histories.
pub(crate) struct Store {
    /// Messages kept per id (`history_size`, at least 1).
    size: usize,
    ttl_ms: u64,
    /// This worker's share of `history_max_bytes`.
    max_bytes: usize,
    histories: HashMap<Arc<str>, IdHistory, foldhash::fast::RandomState>,
    /// (deadline, serial, id), soonest first: at most one current entry per history (its
    /// serial matches); a popped entry whose history was written since is pushed again at its
    /// real deadline. Entries of dropped histories are skipped, and swept when they outnumber
    /// the histories.
    deadlines: BinaryHeap<Reverse<(u64, u64, Arc<str>)>>,
    bytes: usize,
    next_serial: u64,
}

impl Store {
    /// A store keeping `size` messages per id for `ttl` after each id's last message,
    /// within `max_bytes`.
    pub fn new(size: usize, ttl: Duration, max_bytes: usize) -> Self {
        Self {
            size: size.max(1),
            ttl_ms: ttl.as_millis() as u64,
            max_bytes,
            histories: HashMap::default(),
            deadlines: BinaryHeap::new(),
            bytes: 0,
            next_serial: 0,
        }
    }

    /// What the histories count against the cap now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a message, given as the plain frame delivered live, to `id`'s history
    /// (starting one under a new epoch if there is none): its position, and how many
    /// histories were dropped to stay under the cap. `None` for a frame that is not a
    /// text or binary message.
    pub fn append(&mut self, id: &str, frame: Bytes, now_ms: u64) -> Option<(Position, usize)> {
        let (binary, body_start) = split_frame(&frame)?;
        let cost = frame.len() + MESSAGE_OVERHEAD;
        let size = self.size;
        let history = self.history(id, now_ms);
        history.top += 1;
        let offset = history.top;
        history.ring.push_back(Kept { offset, frame, body_start: body_start as u8, binary });
        history.bytes += cost;
        history.last_write_ms = now_ms;
        let mut freed = 0;
        while history.ring.len() > size {
            let trimmed = history.ring.pop_front().map_or(0, |kept| kept.frame.len() + MESSAGE_OVERHEAD);
            history.bytes -= trimmed;
            freed += trimmed;
        }
        let position = Position::new(history.epoch, offset);
        self.bytes = self.bytes + cost - freed;
        Some((position, self.evict_over_cap()))
    }

    /// `id`'s position, starting an empty history (new epoch, top 0) if it has none, so a
    /// client always has a position; and how many histories were dropped for the cap.
    pub fn ensure(&mut self, id: &str, now_ms: u64) -> (Position, usize) {
        let history = self.history(id, now_ms);
        let position = Position::new(history.epoch, history.top);
        (position, self.evict_over_cap())
    }

    /// `id`'s position, if it has a history.
    pub fn position(&self, id: &str) -> Option<Position> {
        self.histories.get(id).map(|history| Position::new(history.epoch, history.top))
    }

    /// Whether `id`'s history continues `since` with no gap.
    pub fn reaches(&self, id: &str, since: Position) -> bool {
        self.histories.get(id).is_some_and(|history| history.reaches(since))
    }

    /// The kept message of `id` at `position`, if it is still kept in that epoch.
    pub fn kept(&self, id: &str, position: Position) -> Option<&Kept> {
        let history = self.histories.get(id).filter(|history| history.epoch == position.epoch)?;
        let index = position.offset.checked_sub(history.front())?;
        history.ring.get(usize::try_from(index).ok()?)
    }

    /// Up to `limit` messages of `id`: those after `since` if the history still reaches it
    /// (`recovered`), else from the oldest kept. `None` if `id` has no history.
    pub fn read(&self, id: &str, since: Option<Position>, limit: usize) -> Option<HistoryRead> {
        let history = self.histories.get(id)?;
        let recovered = since.is_some_and(|since| history.reaches(since));
        let from = match since {
            Some(since) if recovered => since.offset + 1,
            _ => history.front(),
        };
        let skip = usize::try_from(from - history.front()).unwrap_or(usize::MAX);
        let entries = history.ring.iter().skip(skip).take(limit).map(Kept::entry).collect();
        Some(HistoryRead { page: Page { epoch: history.epoch, top: history.top, entries }, recovered })
    }

    /// Drops the histories silent for `history_ttl` at `now_ms`: how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut expired = 0;
        while self.deadlines.peek().is_some_and(|Reverse((deadline, _, _))| *deadline <= now_ms) {
            if self.drop_front_if_due() {
                expired += 1;
            }
        }
        self.sweep_deadlines();
        expired
    }

    /// `id`'s history, started now under a new epoch if there is none.
    fn history(&mut self, id: &str, now_ms: u64) -> &mut IdHistory {
        if !self.histories.contains_key(id) {
            let id: Arc<str> = Arc::from(id);
            let serial = self.next_serial;
            self.next_serial += 1;
            let bytes = ID_OVERHEAD + id.len();
            self.bytes += bytes;
            self.deadlines.push(Reverse((now_ms + self.ttl_ms, serial, id.clone())));
            let history = IdHistory {
                epoch: Epoch::random(),
                top: 0,
                ring: VecDeque::new(),
                bytes,
                last_write_ms: now_ms,
                serial,
            };
            self.histories.insert(id, history);
        }
        self.histories.get_mut(id).expect("inserted just above")
    }

    /// Drops whole histories, soonest to expire first, until under the cap: how many.
    fn evict_over_cap(&mut self) -> usize {
        let mut evicted = 0;
        while self.bytes > self.max_bytes && !self.deadlines.is_empty() {
            if self.drop_front_if_due_by(u64::MAX) {
                evicted += 1;
            }
        }
        if evicted > 0 {
            self.sweep_deadlines();
        }
        evicted
    }

    /// Pops the soonest deadline: drops its history if it is really due by now (true),
    /// re-lists it at its real deadline if it was written since, skips it if stale.
    fn drop_front_if_due(&mut self) -> bool {
        let Some(Reverse((deadline, _, _))) = self.deadlines.peek() else { return false };
        let due_by = *deadline;
        self.drop_front_if_due_by(due_by)
    }

    /// As [`Store::drop_front_if_due`], dropping any history whose real deadline is at or
    /// before `due_by` (`u64::MAX`: whatever its deadline, for eviction).
    fn drop_front_if_due_by(&mut self, due_by: u64) -> bool {
        let Some(Reverse((deadline, serial, id))) = self.deadlines.pop() else { return false };
        let Some(history) = self.histories.get(&id).filter(|history| history.serial == serial) else {
            return false;
        };
        let real = history.last_write_ms + self.ttl_ms;
        if real > deadline {
            // Written since it was listed: its turn comes at its real deadline.
            self.deadlines.push(Reverse((real, serial, id)));
            return false;
        }
        if real > due_by {
            self.deadlines.push(Reverse((deadline, serial, id)));
            return false;
        }
        if let Some(history) = self.histories.remove(&id) {
            self.bytes -= history.bytes;
        }
        true
    }

    /// Drops the entries of dropped histories once they outnumber the live ones, so the
    /// heap stays within twice the histories however many come and go.
    fn sweep_deadlines(&mut self) {
        if self.deadlines.len() > 2 * self.histories.len() + 64 {
            let histories = &self.histories;
            self.deadlines.retain(|Reverse((_, serial, id))| {
                histories.get(id).is_some_and(|history| history.serial == *serial)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;
    use crate::Message;

    const TTL: Duration = Duration::from_secs(10);

    fn text(body: &str) -> Bytes {
        frame::encode_message(Message::Text(body))
    }

    fn offsets(store: &Store, id: &str) -> Vec<u64> {
        store.read(id, None, usize::MAX).unwrap().page.entries.iter().map(|e| e.offset).collect()
    }

    #[test]
    fn offsets_count_from_one_and_the_ring_is_trimmed_exactly_at_size() {
        let mut store = Store::new(3, TTL, usize::MAX);
        let first = store.append("a", text("m1"), 0).unwrap().0;
        assert_eq!(first.offset, 1);
        for i in 2..=5 {
            let (position, evicted) = store.append("a", text(&format!("m{i}")), 0).unwrap();
            assert_eq!((position, evicted), (Position::new(first.epoch, i), 0));
        }
        assert_eq!(offsets(&store, "a"), [3, 4, 5]);
        let read = store.read("a", None, 10).unwrap();
        assert_eq!(read.page.entries[0].body, "m3");
        assert!(!read.page.entries[0].binary);
        assert_eq!((read.page.top, read.recovered), (5, false));
        assert_ne!(store.append("b", text("x"), 0).unwrap().0.epoch, first.epoch, "each id its own epoch");
    }

    #[test]
    fn the_body_shares_the_frames_bytes() {
        let mut store = Store::new(2, TTL, usize::MAX);
        let frame = frame::encode_message(Message::Binary(&[1, 2, 3]));
        let position = store.append("a", frame.clone(), 0).unwrap().0;
        let kept = store.kept("a", position).unwrap();
        assert_eq!(kept.frame.as_ptr(), frame.as_ptr(), "the live frame itself is kept");
        assert_eq!(kept.body(), [1, 2, 3]);
        let entry = &store.read("a", None, 1).unwrap().page.entries[0];
        assert!(entry.binary);
        assert_eq!(entry.body.as_ptr(), frame[2..].as_ptr(), "the entry's body is a slice of the frame");
    }

    #[test]
    fn reads_recover_from_a_position_only_without_a_gap() {
        let mut store = Store::new(5, TTL, usize::MAX);
        let mut epoch = None;
        for i in 1..=8 {
            epoch = Some(store.append("a", text(&i.to_string()), 0).unwrap().0.epoch);
        }
        let e = epoch.unwrap();
        // Kept: 4..=8.
        let at = |offset| Some(Position::new(e, offset));
        let read = store.read("a", at(3), 2).unwrap();
        assert!(read.recovered);
        assert_eq!(read.page.entries.iter().map(|e| e.offset).collect::<Vec<_>>(), [4, 5]);
        assert!(store.read("a", at(8), 10).unwrap().recovered, "nothing missing");
        assert!(store.read("a", at(8), 10).unwrap().page.entries.is_empty());
        for lost in [at(2), at(9), Some(Position::new("other".parse().unwrap(), 5)), None] {
            let read = store.read("a", lost, 10).unwrap();
            assert!(!read.recovered, "{lost:?}");
            assert_eq!(read.page.entries.first().map(|e| e.offset), Some(4), "from the oldest kept");
        }
        assert!(store.reaches("a", Position::new(e, 3)));
        assert!(!store.reaches("a", Position::new(e, 2)));
        assert!(!store.reaches("b", Position::new(e, 3)), "no history");
        assert!(store.kept("a", Position::new(e, 3)).is_none());
        assert_eq!(store.kept("a", Position::new(e, 8)).unwrap().body(), b"8");
        assert!(store.kept("a", Position::new(e, 9)).is_none());
    }

    #[test]
    fn an_id_without_history_gets_an_empty_one_that_positions_exist_for() {
        let mut store = Store::new(5, TTL, usize::MAX);
        assert_eq!(store.position("a"), None);
        let (position, _) = store.ensure("a", 0);
        assert_eq!(position.offset, 0);
        assert_eq!(store.ensure("a", 0).0, position, "the same history");
        assert!(store.reaches("a", position));
        assert_eq!(store.append("a", text("x"), 0).unwrap().0, Position::new(position.epoch, 1));
    }

    #[test]
    fn a_history_expires_after_ttl_of_silence_and_comes_back_under_a_new_epoch() {
        let mut store = Store::new(5, Duration::from_millis(100), usize::MAX);
        let first = store.append("a", text("1"), 0).unwrap().0;
        store.append("a", text("2"), 60).unwrap();
        assert_eq!(store.expire(100), 0, "written at 60: lives until 160");
        assert_eq!(store.position("a"), Some(Position::new(first.epoch, 2)));
        assert_eq!(store.expire(159), 0);
        assert_eq!(store.expire(160), 1);
        assert_eq!(store.position("a"), None);
        assert_eq!(store.bytes(), 0);
        let again = store.append("a", text("3"), 200).unwrap().0;
        assert_eq!(again.offset, 1);
        assert_ne!(again.epoch, first.epoch);
    }

    #[test]
    fn over_the_cap_whole_histories_go_soonest_to_expire_first() {
        let one_id = ID_OVERHEAD + 1 + text("x").len() + MESSAGE_OVERHEAD;
        let mut store = Store::new(5, TTL, 3 * one_id);
        store.append("a", text("x"), 0).unwrap();
        store.append("b", text("x"), 10).unwrap();
        store.append("c", text("x"), 20).unwrap();
        assert_eq!(store.bytes(), 3 * one_id);
        // `a` was written last: `b` is now the soonest to expire.
        store.append("a", text("y"), 30).unwrap();
        assert_eq!(store.position("b"), None);
        assert_eq!(store.position("c").map(|p| p.offset), Some(1));
        assert_eq!(store.position("a").map(|p| p.offset), Some(2));
        let (_, evicted) = store.append("d", text("x"), 40).unwrap();
        assert_eq!(evicted, 1);
        assert_eq!(store.position("c"), None, "c (written at 20) before a (30)");
        assert!(store.bytes() <= 3 * one_id);
    }

    #[test]
    fn the_deadline_heap_stays_bounded_however_many_ids_come_and_go() {
        let mut store = Store::new(1, TTL, ID_OVERHEAD + 8);
        for i in 0..10_000 {
            store.ensure(&i.to_string(), 0);
        }
        assert!(store.histories.len() <= 1);
        assert!(store.deadlines.len() <= 2 * store.histories.len() + 64 + 1, "{}", store.deadlines.len());
    }

    use crate::test_alloc as counting;

    /// The figures README quotes: what an id and a message cost, measured, and that the
    /// store's own count (what `history_max_bytes` caps) is never below it.
    #[test]
    fn memory_accounting_covers_what_is_allocated() {
        const IDS: usize = 2_000;
        const PER_ID: usize = 100;
        const BODY: usize = 100;
        let ids: Vec<String> = (0..IDS).map(|i| format!("user-{i:06}")).collect();
        let body = "x".repeat(BODY);
        let before = counting::live();
        let mut store = Store::new(PER_ID, TTL, usize::MAX);
        for id in &ids {
            store.ensure(id, 0);
        }
        let per_id = (counting::live() - before) as f64 / IDS as f64;
        let empty_count = store.bytes();
        // The frame is made here as the live delivery makes it; the store keeps it alive
        // once the live side is done with it, so it counts.
        let before_messages = counting::live();
        for id in &ids {
            for _ in 0..PER_ID {
                // Shared with the live delivery, as in a worker (the clone gives the `Bytes`
                // its shared header).
                let frame = text(&body);
                store.append(id, frame.clone(), 0).unwrap();
                drop(frame);
            }
        }
        let per_message = (counting::live() - before_messages) as f64 / (IDS * PER_ID) as f64;
        let message_count = (store.bytes() - empty_count) as f64 / (IDS * PER_ID) as f64;
        eprintln!(
            "history memory: {per_id:.0} B per id (id of 11 bytes, counted {:.0}), {per_message:.0} B per \
             message of {BODY} B (counted {message_count:.0}), i.e. {:.0} B beyond the body",
            empty_count as f64 / IDS as f64,
            per_message - BODY as f64,
        );
        assert!(empty_count as f64 >= per_id, "an id costs {per_id:.0} B, counted {}", empty_count / IDS);
        assert!(
            message_count >= per_message,
            "a message costs {per_message:.0} B, counted {message_count:.0}"
        );
        drop(store);
    }
}
