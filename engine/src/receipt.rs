//! Receipts: what a send or broadcast reached, reported once every part that handled it
//! (each worker involved, and the Redis publisher in cluster mode) has counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::history::Position;

/// What a send or broadcast reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Receipt {
    /// Local sockets the message was queued to.
    pub sockets: usize,
    /// Other nodes that received the publish (cluster mode; `None` on a single node, or
    /// when the publish could not be made, e.g. while Redis is down).
    pub nodes: Option<usize>,
    /// The message's place in the id's history (`None` with history off, and for
    /// broadcasts, which are live-only).
    pub position: Option<Position>,
}

impl Receipt {
    /// Where the message is in the id's history, if it has a position.
    pub fn position(&self) -> Option<Position> {
        self.position
    }
}

/// Where an id is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Presence {
    /// Local sockets of the id.
    pub sockets: usize,
    /// Nodes subscribed to the id, this one included (cluster mode; `None` on a single
    /// node or while Redis is unreachable).
    pub nodes: Option<usize>,
}

/// How to turn Redis's receiver count into "other nodes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SelfCount {
    /// The count is reported as is (presence).
    Include,
    /// This node is among the receivers whenever it has local sockets (a send to an id).
    ExcludeIfLocal,
    /// This node always receives its own publish (broadcast channel).
    ExcludeAlways,
}

const NO_NODES: usize = usize::MAX;

type Callback = Box<dyn FnOnce(usize, Option<usize>, Option<Position>) + Send>;

/// Adds up the parts of a receipt and calls back once, from whichever thread finishes last.
pub(crate) struct Collector {
    remaining: AtomicUsize,
    sockets: AtomicUsize,
    receivers: AtomicUsize,
    self_count: SelfCount,
    /// Set (once) by the part that sequenced the message, before it reports its part.
    position: OnceLock<Position>,
    callback: Mutex<Option<Callback>>,
}

impl Collector {
    pub fn new(parts: usize, self_count: SelfCount, callback: Callback) -> Self {
        Self {
            remaining: AtomicUsize::new(parts),
            sockets: AtomicUsize::new(0),
            receivers: AtomicUsize::new(NO_NODES),
            self_count,
            position: OnceLock::new(),
            callback: Mutex::new(Some(callback)),
        }
    }

    pub fn for_receipt(
        parts: usize,
        self_count: SelfCount,
        done: impl FnOnce(Receipt) + Send + 'static,
    ) -> Self {
        Self::new(
            parts,
            self_count,
            Box::new(move |sockets, nodes, position| done(Receipt { sockets, nodes, position })),
        )
    }

    pub fn for_presence(parts: usize, done: impl FnOnce(Presence) + Send + 'static) -> Self {
        Self::new(
            parts,
            SelfCount::Include,
            Box::new(move |sockets, nodes, _| done(Presence { sockets, nodes })),
        )
    }

    /// A worker's part: the local sockets it reached.
    pub fn add_sockets(&self, sockets: usize) {
        self.sockets.fetch_add(sockets, Ordering::AcqRel);
        self.part_done();
    }

    /// The message's place in its id's history, set by the part that sequenced it (the
    /// worker on a single node, the publisher from Redis's reply) before that part reports
    /// (a second position is ignored: a message has one).
    pub fn set_position(&self, position: Position) {
        let _ = self.position.set(position);
    }

    /// The publisher's part: Redis's receiver count, if the publish was made.
    pub fn set_receivers(&self, receivers: Option<usize>) {
        if let Some(receivers) = receivers {
            self.receivers.store(receivers, Ordering::Release);
        }
        self.part_done();
    }

    fn part_done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let callback = self.callback.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(callback) = callback {
            let sockets = self.sockets.load(Ordering::Acquire);
            let receivers = self.receivers.load(Ordering::Acquire);
            let nodes = (receivers != NO_NODES).then(|| match self.self_count {
                SelfCount::Include => receivers,
                SelfCount::ExcludeIfLocal if sockets > 0 => receivers.saturating_sub(1),
                SelfCount::ExcludeIfLocal => receivers,
                SelfCount::ExcludeAlways => receivers.saturating_sub(1),
            });
            callback(sockets, nodes, self.position.get().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn reports_once_when_every_part_is_in() {
        let (tx, rx) = mpsc::channel();
        let collector = Collector::for_receipt(3, SelfCount::ExcludeIfLocal, move |r| tx.send(r).unwrap());
        collector.add_sockets(2);
        collector.set_receivers(Some(3));
        assert!(rx.try_recv().is_err());
        collector.add_sockets(1);
        assert_eq!(rx.try_recv().unwrap(), Receipt { sockets: 3, nodes: Some(2), position: None });
    }

    #[test]
    fn a_failed_publish_reports_no_nodes() {
        let (tx, rx) = mpsc::channel();
        let collector = Collector::for_receipt(2, SelfCount::ExcludeAlways, move |r| tx.send(r).unwrap());
        collector.set_receivers(None);
        collector.add_sockets(0);
        assert_eq!(rx.try_recv().unwrap(), Receipt { sockets: 0, nodes: None, position: None });
    }

    #[test]
    fn a_position_set_before_the_last_part_is_reported() {
        let (tx, rx) = mpsc::channel();
        let collector = Collector::for_receipt(1, SelfCount::ExcludeIfLocal, move |r| tx.send(r).unwrap());
        let position: Position = "e1:7".parse().unwrap();
        collector.set_position(position);
        collector.set_position("e2:9".parse().unwrap());
        collector.add_sockets(2);
        assert_eq!(rx.try_recv().unwrap(), Receipt { sockets: 2, nodes: None, position: Some(position) });
    }

    #[test]
    fn a_position_set_by_the_publisher_is_reported_with_its_receivers() {
        let (tx, rx) = mpsc::channel();
        let collector = Collector::for_receipt(2, SelfCount::ExcludeIfLocal, move |r| tx.send(r).unwrap());
        collector.add_sockets(1);
        let position: Position = "e1:7".parse().unwrap();
        collector.set_position(position);
        collector.set_receivers(Some(2));
        let receipt = rx.try_recv().unwrap();
        assert_eq!(receipt.position(), Some(position));
        assert_eq!(receipt, Receipt { sockets: 1, nodes: Some(1), position: Some(position) });
    }
}
