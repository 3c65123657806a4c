//! History in a worker, cluster mode (design §3.2, §3.3): Redis is the sequencer, and each
//! id this worker holds keeps its live position `(epoch, top)` on this node. A positioned
//! message advances it only by `top + 1`; a message beyond that is held while the gap is
//! read from Redis, one at or below it is a duplicate and dropped. So the sockets of an id
//! get its messages exactly once and in order, whichever way they arrive: live, from a
//! catch-up read after the subscription was lost, or from both.
//!
//! An id is *live* once Redis confirmed its subscription (every later publish reaches this
//! node) and a read after that gave its position. Until then, and while a gap is being
//! read, positioned messages are held (bounded: the oldest are dropped, to be read again).
//! When the subscriber loses its connection every id stops being live until Redis confirms
//! it again; the read that follows delivers what was missed, or, when the history was lost
//! meanwhile (new epoch), tells the id's positioned sockets `!lost` / 4410.
//!
//! A resuming socket (`?since=`, or `wspush.v1` on an id not live yet) waits until its id
//! is live, replays pages read from Redis (one read per id at a time, its page shared by
//! every socket of the id that needs it) up to the id's position, and joins the live
//! sockets in the same worker turn: no gap, no duplicate at the seam.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use slab::Slab;

use super::connection::{CloseCause, Connection};
use super::core::Core;
use super::event_loop::Worker;
use super::history::{deliver_live, lost, signal, REPLAY_PER_PASS};
use super::output::Queued;
use crate::cluster::ReadFailed;
use crate::frame::{self, OpCode};
use crate::history::wire::{self, LOST_CLOSE_CODE, LOST_CLOSE_REASON};
use crate::history::{Entry, Epoch, Page, Position};
use crate::stats::bump;

/// Entries asked for per read (the reader's page).
const PAGE: usize = 256;
/// Messages held for an id while it is not live, and their bytes: beyond either, the
/// oldest are dropped (they are in the id's history, and read again).
const MAX_HELD: usize = 1024;
const MAX_HELD_BYTES: usize = 1 << 20;
/// Bytes held for all the ids of a worker: beyond it, a message is not held at all, only
/// its position remembered (so it is read when the id catches up).
const MAX_WORKER_HELD_BYTES: usize = 16 << 20;
/// What a held message costs besides its frame's bytes (its slot: position and `Bytes`).
const HELD_OVERHEAD: usize = std::mem::size_of::<(Position, Bytes)>();
/// A read unanswered this long is given up (its answer, if it comes, is ignored) and asked
/// again.
const READ_TIMEOUT_MS: u64 = 5_000;
/// A read that failed (Redis unreachable) or could not be queued is asked again after this,
/// doubled after each failure in a row up to [`MAX_RETRY_MS`].
const RETRY_MS: u64 = 500;
const MAX_RETRY_MS: u64 = 8_000;
/// How long a socket that resumes from beyond its id's position here (it saw more on
/// another node, and those messages are still on their way to this one) waits for them
/// before it is told lost.
const AHEAD_WAIT_MS: u64 = 3_000;
/// An id not confirmed subscribed this long is read anyway (the confirmation was lost to
/// a worker queue that stayed full); a later confirmation reads it again.
const CONFIRM_FALLBACK_MS: u64 = 10_000;
/// Reads a worker has under way at most; more wait for the next tick.
const MAX_READS_IN_FLIGHT: usize = 1024;

/// A worker's cluster-history state: its ids' live positions and its resuming sockets.
pub(super) struct LiveIds {
    ids: HashMap<Arc<str>, IdLive, foldhash::fast::RandomState>,
    /// The ids with sockets not live yet (their `IdLive::resuming`).
    with_resuming: HashSet<Arc<str>, foldhash::fast::RandomState>,
    /// Ids whose live read waits for room among the worker's reads, in order.
    deferred: VecDeque<Arc<str>>,
    /// Bytes held for all ids (at most [`MAX_WORKER_HELD_BYTES`]).
    held_total: Arc<AtomicUsize>,
    /// The subscription losses this worker has acted on.
    losses_seen: u64,
    next_token: u64,
    reads_in_flight: usize,
    /// Messages a socket may replay before it is told it cannot catch up.
    replay_cap: u64,
    /// A replay stopped at its per-pass budget: the loop polls without sleeping.
    busy: bool,
}

/// One id's live state on this worker.
struct IdLive {
    /// The id's position here: `None` until the first read.
    epoch: Option<Epoch>,
    top: u64,
    /// Redis confirmed the subscription (since the last loss).
    confirmed: bool,
    /// A read is owed before the id is live again: after a confirmation (what was published
    /// before it may be missing), a lost subscription, or a gap. Cleared only by a page that
    /// leaves nothing missing, so a read that fails or cannot be asked keeps the id held.
    owed: bool,
    /// Waiting for room among the worker's reads (queued in `LiveIds::deferred`).
    deferred: bool,
    /// Its sockets not live yet.
    resuming: Vec<Resume>,
    /// When the id was opened or its subscription lost (for [`CONFIRM_FALLBACK_MS`]).
    unconfirmed_since_ms: u64,
    /// The read of the id's own position or gap, if one is under way.
    live_read: Option<Read>,
    /// A confirmation arrived while `live_read` was under way: read again after it.
    recheck: bool,
    /// The live read failed or could not be asked: ask again at this time.
    retry_at_ms: Option<u64>,
    /// Failed reads in a row (for the backoff).
    failures: u32,
    /// A resuming socket needs a page nobody asked for yet (asked after the replay pass).
    replay_wanted: bool,
    /// The read for resuming sockets, if one is under way.
    replay_read: Option<Read>,
    replay_retry_at_ms: u64,
    /// Positioned messages that arrived while the id was not live, in arrival order.
    held: VecDeque<(Position, Bytes)>,
    held_bytes: usize,
    /// The newest position that arrived while not live, held or not: the id reads up to it.
    seen: Option<Position>,
    /// The worker's total of held bytes, shared by its ids.
    held_total: Arc<AtomicUsize>,
    /// The last page read for resuming sockets.
    cache: Option<Arc<CachedPage>>,
}

struct Read {
    token: u64,
    from: u64,
    sent_ms: u64,
}

/// A page read for resuming sockets, each entry's frames encoded once for all of them.
struct CachedPage {
    epoch: Epoch,
    top: u64,
    from: u64,
    entries: Vec<CachedEntry>,
}

struct CachedEntry {
    entry: Entry,
    plain: OnceLock<Bytes>,
    v1: OnceLock<Bytes>,
}

/// A socket not live yet: it replays from `next` (or, with `None`, joins at the id's
/// position) once its id is live.
struct Resume {
    key: usize,
    serial: u64,
    next: Option<Position>,
    replayed: u64,
    /// Since when it waits for its id to reach its `since` (see [`AHEAD_WAIT_MS`]).
    ahead_since_ms: Option<u64>,
    /// A v1 socket from another epoch: told `!lost` right before the first message it gets
    /// of the id's epoch (or when it joins), unless the replay itself fails and tells it.
    pending_lost: bool,
}

/// What a replay step left.
enum Step {
    /// Waits for an event (its id going live, a page, room in its output).
    Waiting,
    /// Stopped at the pass's budget: goes on next pass.
    Busy,
    /// Joined live, was told lost, or is gone.
    Done,
}

impl IdLive {
    fn new(now_ms: u64, held_total: Arc<AtomicUsize>) -> Self {
        Self {
            seen: None,
            held_total,
            epoch: None,
            top: 0,
            confirmed: false,
            owed: true,
            deferred: false,
            resuming: Vec::new(),
            unconfirmed_since_ms: now_ms,
            live_read: None,
            recheck: false,
            retry_at_ms: None,
            failures: 0,
            replay_wanted: false,
            replay_read: None,
            replay_retry_at_ms: 0,
            held: VecDeque::new(),
            held_bytes: 0,
            cache: None,
        }
    }

    /// Every message from now on is delivered in order as it arrives.
    fn is_live(&self) -> bool {
        self.confirmed && !self.owed && self.live_read.is_none() && self.epoch.is_some()
    }

    /// The id's position here (once it has one).
    fn position(&self) -> Option<Position> {
        self.epoch.map(|epoch| Position::new(epoch, self.top))
    }

    /// The wait before asking again after a failure, counting it.
    fn backoff_ms(&mut self) -> u64 {
        self.failures = self.failures.saturating_add(1);
        RETRY_MS.saturating_mul(1 << (self.failures - 1).min(8)).min(MAX_RETRY_MS)
    }

    /// Holds a message until the id is live; over the bounds the oldest held go (and a
    /// message the worker has no room for is not kept): their positions are below the
    /// newest one `seen`, so the id reads them from the stream.
    fn hold(&mut self, position: Position, frame: Bytes) {
        if self.seen.is_none_or(|seen| seen.epoch != position.epoch || seen.offset < position.offset) {
            self.seen = Some(position);
        }
        let cost = frame.len() + HELD_OVERHEAD;
        if self.held_total.load(Ordering::Relaxed) + cost > MAX_WORKER_HELD_BYTES {
            return;
        }
        self.add_held(cost);
        self.held.push_back((position, frame));
        while self.held.len() > MAX_HELD || self.held_bytes > MAX_HELD_BYTES {
            let Some((_, dropped)) = self.held.pop_front() else { break };
            self.sub_held(dropped.len() + HELD_OVERHEAD);
        }
    }

    fn take_held(&mut self) -> Option<(Position, Bytes)> {
        let (position, frame) = self.held.pop_front()?;
        self.sub_held(frame.len() + HELD_OVERHEAD);
        Some((position, frame))
    }

    fn hold_again(&mut self, position: Position, frame: Bytes) {
        self.add_held(frame.len() + HELD_OVERHEAD);
        self.held.push_front((position, frame));
    }

    /// Keeps of what is held only what `keep` accepts (the rest is covered by a lost
    /// signal).
    fn keep_held(&mut self, keep: impl Fn(Position) -> bool) {
        let before = self.held_bytes;
        self.held.retain(|(position, _)| keep(*position));
        let after: usize = self.held.iter().map(|(_, frame)| frame.len() + HELD_OVERHEAD).sum();
        self.sub_held(before - after);
        if self.seen.is_some_and(|seen| !keep(seen)) {
            self.seen = None;
        }
    }

    fn add_held(&mut self, bytes: usize) {
        self.held_bytes += bytes;
        self.held_total.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub_held(&mut self, bytes: usize) {
        self.held_bytes -= bytes;
        self.held_total.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// A message arrived while the id was not live that is neither delivered nor held.
    fn missing_seen(&self) -> bool {
        self.seen.is_some_and(|seen| Some(seen.epoch) != self.epoch || seen.offset > self.top)
    }
}

impl Drop for IdLive {
    fn drop(&mut self) {
        self.held_total.fetch_sub(self.held_bytes, Ordering::Relaxed);
    }
}

impl LiveIds {
    pub fn new(history_size: usize) -> Self {
        Self {
            ids: HashMap::default(),
            with_resuming: HashSet::default(),
            deferred: VecDeque::new(),
            held_total: Arc::default(),
            losses_seen: 0,
            next_token: 0,
            reads_in_flight: 0,
            replay_cap: 2 * history_size as u64,
            busy: false,
        }
    }
}

impl Worker {
    fn live_ids(&mut self) -> Option<&mut LiveIds> {
        self.history.as_mut().and_then(|history| history.live.as_mut())
    }

    /// A socket adopted in cluster-history mode: live at once when it neither resumes nor
    /// needs a position and its id is live; otherwise it waits for its id, then replays
    /// or just joins (v1 sockets get `!pos` when they join).
    pub(super) fn live_adopted(&mut self, key: usize, since: Option<Position>, v1: bool) {
        let now_ms = self.core.now_ms;
        let link = self.conns[key].link_mut();
        let serial = link.serial();
        let id = link.id().clone();
        if since.is_some() {
            link.set_positioned();
            bump(&self.core.shared.counters.history_resumes, 1);
        }
        let Some(live) = self.live_ids() else { return };
        let held_total = live.held_total.clone();
        let state = live.ids.entry(id.clone()).or_insert_with(|| IdLive::new(now_ms, held_total));
        if since.is_none() && !v1 && state.is_live() {
            return;
        }
        let next = since.map(|since| Position::new(since.epoch, since.offset + 1));
        state.resuming.push(Resume {
            key,
            serial,
            next,
            replayed: 0,
            ahead_since_ms: None,
            pending_lost: false,
        });
        live.with_resuming.insert(id);
        self.conns[key].link_mut().set_resuming(true);
    }

    /// The worker's last socket of `id` closed: its live state goes (a socket of it that
    /// opens later starts again from a read).
    pub(super) fn live_forget(&mut self, id: &str) {
        if let Some(live) = self.live_ids() {
            if let Some(state) = live.ids.remove(id) {
                live.reads_in_flight -=
                    usize::from(state.live_read.is_some()) + usize::from(state.replay_read.is_some());
            }
            live.with_resuming.remove(id);
        }
    }

    /// `Command::SendAt`: a positioned message from Redis.
    pub(super) fn live_send_at(&mut self, id: &str, frame: Bytes, position: Position) {
        self.note_losses();
        let Some(live) = self.history.as_mut().and_then(|history| history.live.as_mut()) else { return };
        let Some((id, state)) = live.ids.get_key_value(id) else { return };
        let id = id.clone();
        if !state.is_live() {
            live.ids.get_mut(&id).expect("just found").hold(position, frame);
            return;
        }
        self.apply_delivery(&id, position, frame);
    }

    /// `Command::Subscribed`: every message published to `id` from now on reaches this node,
    /// so a read now gives a position nothing can slip past.
    pub(super) fn live_subscribed(&mut self, id: &str) {
        self.note_losses();
        let Some(live) = self.live_ids() else { return };
        let Some(id) = live.ids.get_key_value(id).map(|(id, _)| id.clone()) else { return };
        let state = live.ids.get_mut(&id).expect("just found");
        state.confirmed = true;
        state.owed = true;
        if state.live_read.is_some() {
            state.recheck = true;
        } else {
            self.request_live_read(&id);
        }
    }

    /// `Command::HistoryPage`: the answer to a read this worker asked for.
    pub(super) fn live_page(&mut self, id: &str, token: u64, page: Result<Page, ReadFailed>) {
        let now_ms = self.core.now_ms;
        let Some(live) = self.live_ids() else { return };
        let Some(id) = live.ids.get_key_value(id).map(|(id, _)| id.clone()) else { return };
        let state = live.ids.get_mut(&id).expect("just found");
        if state.live_read.as_ref().is_some_and(|read| read.token == token) {
            let read = state.live_read.take().expect("just matched");
            live.reads_in_flight -= 1;
            match page {
                Ok(page) => {
                    state.failures = 0;
                    self.apply_live_page(&id, read.from, page)
                }
                Err(_) => state.retry_at_ms = Some(now_ms + state.backoff_ms()),
            }
            self.start_deferred();
        } else if state.replay_read.as_ref().is_some_and(|read| read.token == token) {
            let read = state.replay_read.take().expect("just matched");
            live.reads_in_flight -= 1;
            match page {
                Ok(page) if Some(page.epoch) != state.epoch => {
                    // The history changed epoch under the id (expired, deleted, Redis lost
                    // it): the id's own read tells its sockets, then the resumers are told.
                    state.failures = 0;
                    state.owed = true;
                    if state.live_read.is_none() {
                        self.request_live_read(&id);
                    }
                }
                Ok(page) => {
                    state.failures = 0;
                    let entries = page
                        .entries
                        .into_iter()
                        .map(|entry| CachedEntry { entry, plain: OnceLock::new(), v1: OnceLock::new() })
                        .collect();
                    state.cache = Some(Arc::new(CachedPage {
                        epoch: page.epoch,
                        top: page.top,
                        from: read.from,
                        entries,
                    }));
                }
                Err(_) => state.replay_retry_at_ms = now_ms + state.backoff_ms(),
            }
            self.start_deferred();
        }
    }

    /// Asks the live reads that waited for room among the worker's reads, in order, while
    /// there is room.
    fn start_deferred(&mut self) {
        loop {
            let Some(live) = self.live_ids() else { return };
            if live.reads_in_flight >= MAX_READS_IN_FLIGHT {
                return;
            }
            let Some(id) = live.deferred.pop_front() else { return };
            let Some(state) = live.ids.get_mut(&id) else { continue };
            state.deferred = false;
            if state.live_read.is_none() {
                self.request_live_read(&id);
            }
        }
    }

    /// Timers: reads that timed out or are due again, ids never confirmed.
    pub(super) fn live_tick(&mut self) {
        self.note_losses();
        let now_ms = self.core.now_ms;
        let subscribed =
            self.core.shared.backplane.as_ref().is_some_and(|backplane| backplane.is_subscribed());
        let Some(live) = self.live_ids() else { return };
        let mut due = Vec::new();
        for (id, state) in live.ids.iter_mut() {
            if state.live_read.as_ref().is_some_and(|read| now_ms >= read.sent_ms + READ_TIMEOUT_MS) {
                state.live_read = None;
                live.reads_in_flight -= 1;
                let backoff = state.backoff_ms();
                state.retry_at_ms.get_or_insert(now_ms + backoff);
            }
            if state.replay_read.as_ref().is_some_and(|read| now_ms >= read.sent_ms + READ_TIMEOUT_MS) {
                state.replay_read = None;
                live.reads_in_flight -= 1;
                state.replay_retry_at_ms = now_ms + state.backoff_ms();
            }
            let overdue = now_ms >= state.unconfirmed_since_ms + CONFIRM_FALLBACK_MS;
            if !state.confirmed && subscribed && overdue {
                state.confirmed = true;
                state.owed = true;
                state.retry_at_ms.get_or_insert(now_ms);
            }
            if state.live_read.is_none() && state.retry_at_ms.is_some_and(|at| now_ms >= at) {
                due.push(id.clone());
            }
        }
        for id in due {
            self.request_live_read(&id);
        }
    }

    /// Whether a replay can go on at once (the loop then polls without sleeping).
    pub(super) fn live_resumes_busy(&self) -> bool {
        self.history.as_ref().and_then(|history| history.live.as_ref()).is_some_and(|live| live.busy)
    }

    /// Acts on a loss of the subscription the worker has not seen yet: no id is live until
    /// Redis confirms it again.
    fn note_losses(&mut self) {
        let Some(backplane) = self.core.shared.backplane.as_ref() else { return };
        let losses = backplane.subscription_losses();
        let now_ms = self.core.now_ms;
        let Some(live) = self.history.as_mut().and_then(|history| history.live.as_mut()) else { return };
        if losses == live.losses_seen {
            return;
        }
        live.losses_seen = losses;
        for state in live.ids.values_mut() {
            state.confirmed = false;
            state.owed = true;
            state.unconfirmed_since_ms = now_ms;
        }
    }

    /// Asks Redis for `id`'s messages after its position (or for its position, when it has
    /// none yet); a read that cannot be asked now is retried at the next tick.
    fn request_live_read(&mut self, id: &Arc<str>) {
        let now_ms = self.core.now_ms;
        let Some(backplane) = self.core.shared.backplane.clone() else { return };
        let counters = self.core.shared.counters.clone();
        let Some(live) = self.live_ids() else { return };
        let token = live.next_token;
        let room = live.reads_in_flight < MAX_READS_IN_FLIGHT;
        let Some(state) = live.ids.get_mut(id) else { return };
        debug_assert!(state.live_read.is_none());
        let from = if state.epoch.is_some() { state.top + 1 } else { 0 };
        if !room {
            // Not a failure: it goes as soon as an earlier read answers.
            if !state.deferred {
                state.deferred = true;
                live.deferred.push_back(id.clone());
            }
            return;
        }
        if backplane.read_history(id, from, PAGE, token) {
            live.next_token += 1;
            live.reads_in_flight += 1;
            state.live_read = Some(Read { token, from, sent_ms: now_ms });
            state.retry_at_ms = None;
            if from > 0 {
                bump(&counters.history_gap_fills, 1);
            }
        } else {
            state.retry_at_ms = Some(now_ms + state.backoff_ms());
        }
    }

    /// A positioned message for a live id: delivered if it is the next one, dropped if it
    /// was delivered already, held behind a read of the gap otherwise.
    fn apply_delivery(&mut self, id: &Arc<str>, position: Position, frame: Bytes) {
        let Some(live) = self.history.as_mut().and_then(|history| history.live.as_mut()) else { return };
        let Some(state) = live.ids.get_mut(id) else { return };
        if state.epoch != Some(position.epoch) {
            // Live since the last message, so nothing of the old epoch was missed: its
            // history expired or was deleted, and the new one starts at 1.
            state.epoch = Some(position.epoch);
            state.top = 0;
        }
        if position.offset <= state.top {
            bump(&self.core.shared.counters.history_duplicates, 1);
        } else if position.offset == state.top + 1 {
            state.top = position.offset;
            let keys = self.ids.get(&**id).map(Vec::as_slice).unwrap_or_default();
            deliver_live(&mut self.core, &mut self.conns, keys, frame, Some(position));
        } else {
            state.hold(position, frame);
            state.owed = true;
            self.request_live_read(id);
        }
    }

    /// Applies the answer to `id`'s live read (from `from`): its position, the messages
    /// missed, or the news that its history was lost; then, if the id is live again, what
    /// was held meanwhile.
    fn apply_live_page(&mut self, id: &Arc<str>, from: u64, page: Page) {
        let Some(live) = self.history.as_mut().and_then(|history| history.live.as_mut()) else { return };
        let Some(state) = live.ids.get_mut(id) else { return };
        let keys = self.ids.get(&**id).map(Vec::as_slice).unwrap_or_default();
        let mut more = false;
        match state.epoch {
            None => {
                state.epoch = Some(page.epoch);
                state.top = page.top;
            }
            Some(epoch) if epoch != page.epoch => {
                // The history was lost (Redis restarted empty, the stream was deleted) while
                // this node may have missed messages of the old epoch: the positioned sockets
                // are told, then get the new epoch from its start (sends queued while Redis
                // was away are in it), read next.
                lose_live(&mut self.core, &mut self.conns, keys, Position::new(page.epoch, 0));
                state.epoch = Some(page.epoch);
                state.top = 0;
                more = page.top > 0;
                // What was held from the old epoch is what the signal covers.
                state.keep_held(|position| position.epoch == page.epoch);
            }
            Some(epoch) if page.top < state.top => {
                // The history went back (Redis restored from an older snapshot): its
                // offsets will be given again to other messages. What this node delivered
                // beyond the restored top is not in the history any more.
                lose_live(&mut self.core, &mut self.conns, keys, Position::new(epoch, page.top));
                state.top = page.top;
                state.keep_held(|position| position.epoch != epoch);
            }
            Some(epoch) => {
                let mut trimmed = from > 0 && page.top > state.top && page.entries.is_empty();
                for entry in page.entries {
                    if entry.offset <= state.top {
                        continue;
                    }
                    if entry.offset != state.top + 1 {
                        trimmed = true;
                        break;
                    }
                    state.top = entry.offset;
                    let frame = frame::encode(opcode(entry.binary), &entry.body);
                    let position = Some(Position::new(epoch, entry.offset));
                    deliver_live(&mut self.core, &mut self.conns, keys, frame, position);
                }
                if trimmed {
                    lose_live(&mut self.core, &mut self.conns, keys, Position::new(epoch, page.top));
                    state.top = page.top;
                } else {
                    more = state.top < page.top;
                }
            }
        }
        if more || std::mem::take(&mut state.recheck) {
            return self.request_live_read(id);
        }
        state.owed = false;
        if state.confirmed {
            // Sockets that only wait for a position join at this one, before what was held
            // meanwhile is delivered: they get it live.
            self.join_waiting(id);
            self.drain_held(id);
        }
    }

    /// Joins the sockets of `id` that wait for its position only (no `since`) to the live
    /// sockets, at the id's position now.
    fn join_waiting(&mut self, id: &Arc<str>) {
        let Some(live) = self.history.as_mut().and_then(|history| history.live.as_mut()) else { return };
        let Some(state) = live.ids.get_mut(id) else { return };
        let Some(now) = state.position().filter(|_| state.is_live()) else { return };
        let (core, conns) = (&mut self.core, &mut self.conns);
        state.resuming.retain(|resume| {
            let waiting = resume.next.is_none()
                && conns
                    .get(resume.key)
                    .is_some_and(|conn| conn.link().serial() == resume.serial && conn.link().is_open());
            if waiting {
                join(core, conns, resume.key, now);
            }
            !waiting
        });
        if state.resuming.is_empty() {
            live.with_resuming.remove(id);
        }
    }

    /// Delivers what was held for `id` while it was not live, in arrival order, until a gap
    /// (then read) or the end.
    fn drain_held(&mut self, id: &Arc<str>) {
        loop {
            let Some(live) = self.history.as_mut().and_then(|history| history.live.as_mut()) else { return };
            let Some(state) = live.ids.get_mut(id) else { return };
            if !state.is_live() {
                return;
            }
            let Some((position, frame)) = state.take_held() else {
                if state.missing_seen() {
                    state.owed = true;
                    return self.request_live_read(id);
                }
                state.seen = None;
                return;
            };
            let next = state.top + 1;
            if state.epoch == Some(position.epoch) && position.offset > next {
                state.hold_again(position, frame);
                state.owed = true;
                return self.request_live_read(id);
            }
            self.apply_delivery(id, position, frame);
        }
    }

    /// Moves every resuming socket on: replays what its output has room for, joins it to
    /// the live sockets once it has caught up with its id. Ids that are not live cost a
    /// lookup each, whatever the number of their sockets.
    pub(super) fn continue_live_resumes(&mut self) {
        self.note_losses();
        let Some(live) = self.live_ids() else { return };
        live.busy = false;
        if live.with_resuming.is_empty() {
            return;
        }
        let ids: Vec<Arc<str>> = live.with_resuming.iter().cloned().collect();
        let mut wanted: Vec<(Arc<str>, u64)> = Vec::new();
        let mut busy = false;
        let live = self.history.as_mut().and_then(|history| history.live.as_mut()).expect("just seen");
        for id in ids {
            let Some(state) = live.ids.get_mut(&id) else {
                live.with_resuming.remove(&id);
                continue;
            };
            if !state.is_live() {
                continue;
            }
            let mut resuming = std::mem::take(&mut state.resuming);
            resuming.retain_mut(|resume| {
                match replay(&mut self.core, &mut self.conns, state, live.replay_cap, resume, &mut wanted) {
                    Step::Waiting => true,
                    Step::Busy => {
                        busy = true;
                        true
                    }
                    Step::Done => false,
                }
            });
            state.resuming = resuming;
            if state.resuming.is_empty() {
                live.with_resuming.remove(&id);
            }
        }
        live.busy = busy;
        for (id, from) in wanted {
            self.request_replay_read(&id, from);
        }
    }

    /// Asks Redis for a page of `id` from `from` for its resuming sockets, unless one is
    /// under way or a failed one is not due again.
    fn request_replay_read(&mut self, id: &Arc<str>, from: u64) {
        let now_ms = self.core.now_ms;
        let Some(backplane) = self.core.shared.backplane.clone() else { return };
        let Some(live) = self.live_ids() else { return };
        let token = live.next_token;
        let Some(state) = live.ids.get_mut(id) else { return };
        state.replay_wanted = false;
        if live.reads_in_flight >= MAX_READS_IN_FLIGHT {
            return;
        }
        if state.replay_read.is_some() || now_ms < state.replay_retry_at_ms {
            return;
        }
        if backplane.read_history(id, from, PAGE, token) {
            live.next_token += 1;
            live.reads_in_flight += 1;
            state.replay_read = Some(Read { token, from, sent_ms: now_ms });
        } else {
            state.replay_retry_at_ms = now_ms + state.backoff_ms();
        }
    }
}

/// One resuming socket's step, its id live; a page it needs that nobody asked for yet goes
/// to `wanted`.
fn replay(
    core: &mut Core,
    conns: &mut Slab<Connection>,
    state: &mut IdLive,
    replay_cap: u64,
    resume: &mut Resume,
    wanted: &mut Vec<(Arc<str>, u64)>,
) -> Step {
    let key = resume.key;
    let Some(conn) = conns.get_mut(key).filter(|conn| conn.link().serial() == resume.serial) else {
        return Step::Done;
    };
    if !conn.link().is_open() {
        return Step::Done;
    }
    let id = conn.link().id().clone();
    let Some(now) = state.position().filter(|_| state.is_live()) else { return Step::Waiting };
    let room = core.settings.max_buffered_bytes / 2;
    for _ in 0..REPLAY_PER_PASS {
        let Some(next) = resume.next else { return join(core, conns, key, now) };
        if next.epoch != now.epoch && conns[key].link().is_v1() {
            // The history was lost since (another epoch now): a v1 socket is told, and
            // replays the new epoch from its start.
            resume.pending_lost = true;
            resume.next = Some(Position::new(now.epoch, 1));
            continue;
        }
        if next.epoch == now.epoch && next.offset > now.offset + 1 {
            // It saw more on another node: those messages are on their way here.
            let since = *resume.ahead_since_ms.get_or_insert(core.now_ms);
            if core.now_ms < since + AHEAD_WAIT_MS {
                return Step::Waiting;
            }
        }
        if next.epoch != now.epoch || next.offset > now.offset + 1 || resume.replayed >= replay_cap {
            // From another epoch (the history was lost since), beyond what this node has
            // (a position it never gave), or falling behind for good.
            conns[key].link_mut().set_resuming(false);
            lost(core, conns, key, now);
            return Step::Done;
        }
        if next.offset == now.offset + 1 {
            if std::mem::take(&mut resume.pending_lost) {
                lost(core, conns, key, Position::new(now.epoch, next.offset - 1));
            }
            return join(core, conns, key, now);
        }
        let cached = state.cache.clone().filter(|page| page.epoch == now.epoch);
        let entry = cached.as_ref().and_then(|page| {
            let first = page.entries.first()?.entry.offset;
            page.entries.get(usize::try_from(next.offset.checked_sub(first)?).ok()?)
        });
        let Some(entry) = entry else {
            let trimmed = cached.as_ref().is_some_and(|page| {
                page.from <= next.offset
                    && next.offset <= page.top
                    && page.entries.first().is_none_or(|first| first.entry.offset > next.offset)
            });
            if trimmed {
                conns[key].link_mut().set_resuming(false);
                lost(core, conns, key, now);
                return Step::Done;
            }
            if state.replay_read.is_none() && !state.replay_wanted {
                state.replay_wanted = true;
                wanted.push((id, next.offset));
            }
            return Step::Waiting;
        };
        if conns[key].link().queued() > room {
            return Step::Waiting;
        }
        if std::mem::take(&mut resume.pending_lost) {
            lost(core, conns, key, Position::new(now.epoch, next.offset - 1));
        }
        let link = conns[key].link_mut();
        let frame = if link.is_v1() {
            entry
                .v1
                .get_or_init(|| wire::data_frame(entry.entry.binary, Some(next), &entry.entry.body))
                .clone()
        } else {
            entry.plain.get_or_init(|| frame::encode(opcode(entry.entry.binary), &entry.entry.body)).clone()
        };
        if !matches!(core.queue_data(key, link, frame, false), Queued::Yes) {
            link.set_resuming(false);
            lost(core, conns, key, now);
            return Step::Done;
        }
        bump(&core.shared.counters.history_replayed, 1);
        resume.next = Some(Position::new(next.epoch, next.offset + 1));
        resume.replayed += 1;
    }
    Step::Busy
}

/// The socket has everything up to `now`: it joins the live sockets (a v1 one is told
/// where it stands).
fn join(core: &mut Core, conns: &mut Slab<Connection>, key: usize, now: Position) -> Step {
    let link = conns[key].link_mut();
    link.set_resuming(false);
    if link.is_v1() {
        signal(core, conns, key, wire::pos_frame(now));
    }
    Step::Done
}

/// Tells the live positioned sockets of an id that messages were lost: `!lost E:O` to v1
/// sockets (they go on live from `now`), close 4410 to those that resumed with `?since`.
/// Plain sockets that never asked for a position are not told.
fn lose_live(core: &mut Core, conns: &mut Slab<Connection>, keys: &[usize], now: Position) {
    for &key in keys {
        let link = conns[key].link_mut();
        if link.is_resuming() || !link.is_open() {
            continue;
        }
        if link.is_v1() {
            bump(&core.shared.counters.history_lost_signals, 1);
            signal(core, conns, key, wire::lost_frame(now));
        } else if link.is_positioned() {
            bump(&core.shared.counters.history_lost_signals, 1);
            core.close(key, link, LOST_CLOSE_CODE, LOST_CLOSE_REASON, CloseCause::Initiate, false);
        }
    }
}

fn opcode(binary: bool) -> OpCode {
    if binary {
        OpCode::Binary
    } else {
        OpCode::Text
    }
}
