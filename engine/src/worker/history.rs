//! History in a worker, single node (design §3.4): the worker that owns an id is its
//! sequencer. Each send to the id is appended to the worker's [`Store`] (so gets the next
//! offset) before it is delivered; a socket that resumes (`?since=`) replays from the store,
//! under flow control, and joins the live sockets in the worker turn in which it has caught
//! up. The worker is one thread, so nothing can be sent between the replay's last message
//! and the join: no gap, no duplicate at the seam.
//!
//! Only reached when `history_size > 0`; with history off the worker takes none of these
//! paths (a check of one `Option` per send).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use slab::Slab;

use super::connection::{CloseCause, Connection};
use super::core::Core;
use super::event_loop::Worker;
use super::live::LiveIds;
use super::mailbox::HistoryReply;
use super::output::{deliver, Queued};
use super::settings::WorkerSettings;
use crate::history::store::Store;
use crate::history::wire::{self, LOST_CLOSE_CODE, LOST_CLOSE_REASON};
use crate::history::{HistoryRead, Position};
use crate::receipt::Collector;
use crate::stats::bump;

/// Messages replayed to one socket per pass of the loop at most: a long replay shares the
/// worker with every other socket; the rest follows next pass.
pub(super) const REPLAY_PER_PASS: usize = 1024;

/// A worker's history: its store and the sockets still replaying.
pub(super) struct WorkerHistory {
    /// Cluster mode: the ids' live positions (Redis keeps the history; `store` stays empty).
    pub live: Option<LiveIds>,
    store: Store,
    resuming: Vec<Resume>,
    /// Messages a socket may replay before it is told it cannot catch up (the id moves
    /// faster than it reads): twice `history_size`.
    replay_cap: u64,
}

/// A socket replaying history: the next message it gets is `next`.
struct Resume {
    key: usize,
    serial: u64,
    next: Position,
    replayed: u64,
}

/// What a replay step left.
enum Replay {
    /// Still replaying: waits for its output to drain, or for the next pass.
    Waiting,
    /// Joined live, told lost, or gone.
    Done,
}

impl WorkerHistory {
    /// The worker's history, if history is on.
    pub fn from_settings(settings: &WorkerSettings, cluster: bool) -> Option<Self> {
        (settings.history_size > 0).then(|| Self {
            live: cluster.then(|| LiveIds::new(settings.history_size)),
            store: Store::new(settings.history_size, settings.history_ttl, settings.history_max_bytes),
            resuming: Vec::new(),
            replay_cap: 2 * settings.history_size as u64,
        })
    }
}

impl Worker {
    /// `Command::Send` with history on: append, then deliver the plain frame to plain
    /// sockets and the v1 frame (encoded once, only if needed) to v1 sockets; resuming
    /// sockets get it from the store.
    pub(super) fn send_with_history(&mut self, id: &str, frame: Bytes, receipt: Option<Arc<Collector>>) {
        let Some(history) = self.history.as_mut() else { return };
        let counters = &self.core.shared.counters;
        let position =
            history.store.append(id, frame.clone(), self.core.now_ms).map(|(position, evicted)| {
                bump(&counters.history_appended, 1);
                bump(&counters.history_evicted, evicted as u64);
                position
            });
        counters.history_bytes.store(history.store.bytes() as u64, Relaxed);
        let keys = self.ids.get(id).map(Vec::as_slice).unwrap_or_default();
        let reached = deliver_live(&mut self.core, &mut self.conns, keys, frame, position);
        if let Some(receipt) = receipt {
            if let Some(position) = position {
                receipt.set_position(position);
            }
            self.core.budget.publish_queued();
            receipt.add_sockets(reached);
        }
    }

    /// A message without a position in cluster mode (compat channel, a node without
    /// history): live-only, so v1 sockets get it with the `-` head and resuming sockets do
    /// not get it.
    pub(super) fn send_live_only(&mut self, id: &str, frame: Bytes, receipt: Option<Arc<Collector>>) {
        let keys = self.ids.get(id).map(Vec::as_slice).unwrap_or_default();
        let reached = deliver_live(&mut self.core, &mut self.conns, keys, frame, None);
        if let Some(receipt) = receipt {
            self.core.budget.publish_queued();
            receipt.add_sockets(reached);
        }
    }

    /// `Command::Broadcast` with history on: live-only, so v1 sockets get it with the `-`
    /// head and resuming sockets do not get it.
    pub(super) fn broadcast_with_history(&mut self, frame: Bytes, receipt: Option<Arc<Collector>>) {
        let keys: Vec<usize> =
            self.conns.iter().filter(|(_, conn)| !conn.link().is_resuming()).map(|(key, _)| key).collect();
        let mut v1_frame = None;
        let mut reached = 0;
        for key in keys {
            let frame = if self.conns[key].link().is_v1() {
                v1_frame.get_or_insert_with(|| wire::relabel(&frame, None)).clone()
            } else {
                frame.clone()
            };
            reached += usize::from(deliver(&mut self.core, &mut self.conns, key, frame));
        }
        if let Some(receipt) = receipt {
            self.core.budget.publish_queued();
            receipt.add_sockets(reached);
        }
    }

    /// The frame a reply to one socket becomes: with the `-` head for a v1 socket.
    pub(super) fn live_only_frame(&self, key: usize, frame: Bytes) -> Bytes {
        if self.conns[key].link().is_v1() {
            wire::relabel(&frame, None)
        } else {
            frame
        }
    }

    /// `Command::History`: reads `id`'s history (starting an empty one if it has none, so
    /// the answer always has a position) and replies.
    pub(super) fn read_history(
        &mut self,
        id: &str,
        since: Option<Position>,
        limit: usize,
        reply: HistoryReply,
    ) {
        let Some(history) = self.history.as_mut() else { return };
        let (_, evicted) = history.store.ensure(id, self.core.now_ms);
        bump(&self.core.shared.counters.history_evicted, evicted as u64);
        self.core.shared.counters.history_bytes.store(history.store.bytes() as u64, Relaxed);
        if let Some(read) = history.store.read(id, since, limit) {
            reply(read);
        } else {
            // Evicted at once (a cap smaller than one empty history): nothing kept.
            let (position, _) = history.store.ensure(id, self.core.now_ms);
            let page =
                crate::history::Page { epoch: position.epoch, top: position.offset, entries: Vec::new() };
            reply(HistoryRead { page, recovered: false });
        }
    }

    /// Gives a socket just adopted (`key`, `serial`) its place in its id's history: a v1
    /// socket gets `!pos`, a resuming one starts its replay (continued by
    /// [`Worker::continue_resumes`] in this same pass), one whose `since` the history no
    /// longer reaches is told so. With history off, a socket that asked to resume is closed
    /// with 4410 (it cannot be given what it missed).
    pub(super) fn position_socket(&mut self, key: usize, serial: u64, since: Option<Position>, v1: bool) {
        let Some(conn) = self.conns.get_mut(key).filter(|conn| conn.link().serial() == serial) else {
            return;
        };
        let link = conn.link_mut();
        let Some(history) = self.history.as_mut() else {
            if since.is_some() {
                bump(&self.core.shared.counters.history_lost_signals, 1);
                let cause = CloseCause::Initiate;
                self.core.close(key, link, LOST_CLOSE_CODE, LOST_CLOSE_REASON, cause, false);
            }
            return;
        };
        if v1 {
            link.set_v1();
        }
        if history.live.is_some() {
            return self.live_adopted(key, since, v1);
        }
        if since.is_none() && !v1 {
            return;
        }
        let id = link.id().clone();
        let (position, evicted) = history.store.ensure(&id, self.core.now_ms);
        bump(&self.core.shared.counters.history_evicted, evicted as u64);
        self.core.shared.counters.history_bytes.store(history.store.bytes() as u64, Relaxed);
        let Some(since) = since else {
            return signal(&mut self.core, &mut self.conns, key, wire::pos_frame(position));
        };
        bump(&self.core.shared.counters.history_resumes, 1);
        if !history.store.reaches(&id, since) {
            return lost(&mut self.core, &mut self.conns, key, position);
        }
        if since.offset == position.offset {
            if v1 {
                signal(&mut self.core, &mut self.conns, key, wire::pos_frame(position));
            }
            return;
        }
        link.set_resuming(true);
        let next = Position::new(since.epoch, since.offset + 1);
        history.resuming.push(Resume { key, serial, next, replayed: 0 });
    }

    /// Replays to every resuming socket what its output has room for (up to
    /// `max_buffered_bytes / 2` queued, and [`REPLAY_PER_PASS`] messages), joining each to
    /// the live sockets once it has caught up.
    pub(super) fn continue_resumes(&mut self) {
        let Some(history) = self.history.as_mut() else { return };
        if history.live.is_some() {
            return self.continue_live_resumes();
        }
        if history.resuming.is_empty() {
            return;
        }
        let mut resuming = std::mem::take(&mut history.resuming);
        resuming.retain_mut(|resume| {
            matches!(replay(&mut self.core, &mut self.conns, history, resume), Replay::Waiting)
        });
        history.resuming = resuming;
    }

    /// Whether a resuming socket can go on at once (its output is not waiting for the
    /// socket to become writable): the loop then polls without sleeping.
    pub(super) fn resumes_ready(&self) -> bool {
        if self.live_resumes_busy() {
            return true;
        }
        self.history.as_ref().is_some_and(|history| {
            history.resuming.iter().any(|resume| {
                self.conns.get(resume.key).is_some_and(|conn| {
                    let link = conn.link();
                    link.serial() == resume.serial && link.is_open() && !link.is_write_blocked()
                })
            })
        })
    }

    /// Drops the histories silent for `history_ttl`.
    pub(super) fn expire_histories(&mut self) {
        if let Some(history) = self.history.as_mut() {
            history.store.expire(self.core.now_ms);
            self.core.shared.counters.history_bytes.store(history.store.bytes() as u64, Relaxed);
        }
    }
}

/// Queues a message to the live sockets among `keys` (resuming ones get it from history):
/// the plain frame, or the v1 frame with `position` as its head (`-` without), encoded once,
/// to v1 sockets. How many it reached.
pub(super) fn deliver_live(
    core: &mut Core,
    conns: &mut Slab<Connection>,
    keys: &[usize],
    frame: Bytes,
    position: Option<Position>,
) -> usize {
    let mut reached = 0;
    let mut v1_frame = None;
    for &key in keys {
        let link = conns[key].link();
        if link.is_resuming() {
            continue;
        }
        let frame = if link.is_v1() {
            v1_frame.get_or_insert_with(|| wire::relabel(&frame, position)).clone()
        } else {
            frame.clone()
        };
        reached += usize::from(deliver(core, conns, key, frame));
    }
    reached
}

/// One socket's replay step.
fn replay(
    core: &mut Core,
    conns: &mut Slab<Connection>,
    history: &mut WorkerHistory,
    resume: &mut Resume,
) -> Replay {
    let key = resume.key;
    let Some(conn) = conns.get_mut(key).filter(|conn| conn.link().serial() == resume.serial) else {
        return Replay::Done;
    };
    if !conn.link().is_open() {
        return Replay::Done;
    }
    let id = conn.link().id().clone();
    let room = core.settings.max_buffered_bytes / 2;
    for _ in 0..REPLAY_PER_PASS {
        let now = match history.store.position(&id) {
            Some(now) => now,
            // Dropped while the socket replayed (expired, evicted): a new epoch.
            None => history.store.ensure(&id, core.now_ms).0,
        };
        if now.epoch != resume.next.epoch {
            conns[key].link_mut().set_resuming(false);
            lost(core, conns, key, now);
            return Replay::Done;
        }
        if resume.next.offset > now.offset {
            let link = conns[key].link_mut();
            link.set_resuming(false);
            if link.is_v1() {
                signal(core, conns, key, wire::pos_frame(now));
            }
            return Replay::Done;
        }
        let Some(kept) =
            history.store.kept(&id, resume.next).filter(|_| resume.replayed < history.replay_cap)
        else {
            // Trimmed before it could be replayed, or the socket cannot catch up.
            conns[key].link_mut().set_resuming(false);
            lost(core, conns, key, now);
            return Replay::Done;
        };
        let link = conns[key].link_mut();
        if link.queued() > room {
            return Replay::Waiting;
        }
        let frame = if link.is_v1() {
            wire::data_frame(kept.binary, Some(resume.next), kept.body())
        } else {
            kept.frame.clone()
        };
        if !matches!(core.queue_data(key, link, frame, false), Queued::Yes) {
            // Refused (the node's output cap): a gap this socket must hear about, if it
            // is still open.
            link.set_resuming(false);
            lost(core, conns, key, now);
            return Replay::Done;
        }
        bump(&core.shared.counters.history_replayed, 1);
        resume.next.offset += 1;
        resume.replayed += 1;
    }
    Replay::Waiting
}

/// Tells the socket at `key` that history cannot reach back: `!lost E:O` to a v1 socket,
/// which then continues live from `position`; close 4410 to another.
pub(super) fn lost(core: &mut Core, conns: &mut Slab<Connection>, key: usize, position: Position) {
    let link = conns[key].link_mut();
    if !link.is_open() {
        return;
    }
    bump(&core.shared.counters.history_lost_signals, 1);
    if link.is_v1() {
        signal(core, conns, key, wire::lost_frame(position));
    } else {
        core.close(key, link, LOST_CLOSE_CODE, LOST_CLOSE_REASON, CloseCause::Initiate, false);
    }
}

/// Queues a control text (`!pos`, `!lost`): a few bytes, queued whatever the socket's
/// backlog, as a close frame is (it says where the socket stands).
pub(super) fn signal(core: &mut Core, conns: &mut Slab<Connection>, key: usize, frame: Bytes) {
    let link = conns[key].link_mut();
    if link.is_open() {
        core.push(key, link, frame);
    }
}
