//! The engine's and the workers' side of the backplane.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

use super::channels::Channels;
use super::reader::{ReadFailed, ReadReply, ReadRequest, MAX_QUEUED_READS};
use super::scripts::MAX_PAGE;
use super::stats::{ClusterCounters, ClusterStats};
use super::{compat, envelope, ClusterConfig};
use crate::history::{HistoryRead, Position};
use crate::receipt::Collector;
use crate::stats::bump;
use crate::worker::Mailboxes;
use crate::{worker, Error, Message};

/// Where a cluster history read goes: the read, or why Redis could not answer it.
pub(crate) type HistoryDone = Box<dyn FnOnce(Result<HistoryRead, ReadFailed>) + Send>;

/// A change in the ids this node holds, from the worker that owns the id.
#[derive(Debug)]
pub(crate) enum Change {
    Subscribe(Box<str>),
    Unsubscribe(Box<str>),
}

/// Work for the publisher.
pub(crate) enum Outbound {
    Publish {
        channel: String,
        payload: Vec<u8>,
        receipt: Option<Arc<Collector>>,
    },
    CountSubscribers {
        channel: String,
        receipt: Arc<Collector>,
    },
    /// A send with history: appended to the id's history and published by Redis, which
    /// assigns its position. `seq` is 0 until the publisher first puts it in a pipeline
    /// (then it keeps it for every retry).
    Append {
        id: Box<str>,
        binary: bool,
        body: Vec<u8>,
        seq: u64,
        receipt: Option<Arc<Collector>>,
    },
}

/// What an append holds besides its id and body, as counted against `redis_queue_bytes`
/// (the keys, channel and head it becomes are built when it is sent).
const APPEND_OVERHEAD: usize = 64;

impl Outbound {
    /// The bytes it holds, as counted against `redis_queue_bytes` from when it is queued
    /// until the publisher is done with it.
    pub(super) fn queued_bytes(&self) -> u64 {
        let held = match self {
            Outbound::Publish { channel, payload, .. } => channel.len() + payload.len(),
            Outbound::CountSubscribers { channel, .. } => channel.len(),
            Outbound::Append { id, body, .. } => id.len() + body.len() + APPEND_OVERHEAD,
        };
        held as u64
    }
}

/// The engine's and the workers' side of the backplane: enqueue publishes, report id
/// changes. Never blocks.
pub(crate) struct ClusterLink {
    node_id: Arc<str>,
    pub(super) channels: Channels,
    outbound: mpsc::Sender<Outbound>,
    changes: mpsc::UnboundedSender<Change>,
    pub(super) counters: Arc<ClusterCounters>,
    /// `redis_queue_bytes`: the bound on `counters.publish_queued_bytes`.
    queue_bytes: u64,
    /// The largest message delivered from Redis (`max_outbound_message_size`).
    pub(super) largest_message: usize,
    /// `history_size` (0: history off).
    pub(super) history_size: usize,
    /// `history_ttl` in milliseconds.
    pub(super) history_ttl_ms: u64,
    /// `p:<incarnation>`: the meta hash field of this link's last applied append seq. Random
    /// per link, even with a configured node id, so a restarted node never reuses the seqs
    /// of its previous life.
    pub(super) seq_field: String,
    /// History reads for the reader (bounded by count; ids are at most `MAX_ID_LEN` bytes).
    reads: mpsc::Sender<ReadRequest>,
    /// The workers, where the pages the workers asked for go (set once, at start).
    workers: OnceLock<Mailboxes>,
    /// Times the subscriber lost its connection (see `Backplane::subscription_losses`).
    subscription_losses: AtomicU64,
}

/// The receiving ends, handed to the backplane task.
pub(crate) struct LinkEnds {
    pub(super) outbound: mpsc::Receiver<Outbound>,
    pub(super) changes: mpsc::UnboundedReceiver<Change>,
    pub(super) reads: mpsc::Receiver<ReadRequest>,
}

impl ClusterLink {
    /// The link and its receiving ends, for a validated `config`; messages from Redis
    /// larger than `largest_message` are dropped.
    pub fn new(config: &ClusterConfig, largest_message: usize) -> (Arc<Self>, LinkEnds) {
        let node_id: Arc<str> = config.node_id.clone().unwrap_or_else(random_node_id).into();
        let (outbound, outbound_rx) = mpsc::channel(config.queue_limit);
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (reads, reads_rx) = mpsc::channel(MAX_QUEUED_READS);
        let link = Self {
            node_id,
            channels: Channels::new(config),
            outbound,
            changes,
            counters: Arc::default(),
            queue_bytes: config.queue_bytes as u64,
            largest_message,
            history_size: config.history_size,
            history_ttl_ms: config.history_ttl.as_millis().try_into().unwrap_or(u64::MAX),
            seq_field: format!("p:{}", random_node_id()),
            reads,
            workers: OnceLock::new(),
            subscription_losses: AtomicU64::new(0),
        };
        (Arc::new(link), LinkEnds { outbound: outbound_rx, changes: changes_rx, reads: reads_rx })
    }

    /// Gives the link the workers, so pages can be handed to them.
    pub fn attach(&self, workers: Mailboxes) {
        let _ = self.workers.set(workers);
    }

    /// The subscriber lost its connection: every worker learns it on its next pass.
    pub(super) fn subscription_lost(&self) {
        self.subscription_losses.fetch_add(1, Relaxed);
        if let Some(workers) = self.workers.get() {
            workers.wake_all();
        }
    }

    /// Whether this node keeps history (every send is an append).
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn is_connected(&self) -> bool {
        self.counters.publisher_up.load(Relaxed) && self.counters.subscriber_up.load(Relaxed)
    }

    /// Publishes a send for the other nodes (and, in a mixed fleet, the original format).
    pub fn publish_send(&self, id: &str, message: Message<'_>, receipt: Option<Arc<Collector>>) {
        let payload = envelope::encode(&self.node_id, message);
        let receipt = self.settle_if_disconnected(receipt);
        self.enqueue(Outbound::Publish { channel: self.channels.user(id), payload, receipt });
        if let (Some(channel), Message::Text(text)) = (&self.channels.compat_publish, message) {
            let payload = compat::encode(id, text, &self.node_id);
            self.enqueue(Outbound::Publish { channel: channel.clone(), payload, receipt: None });
        }
    }

    /// A send with history on (`history_size` > 0): queued for the publisher, which
    /// appends it to the id's history in Redis and publishes it positioned (every node,
    /// this one included, delivers it from the publish). The receipt gets Redis's receiver
    /// count and the position; while Redis is unreachable it is settled at once with
    /// neither, and the append waits in the queue (then applied once, in send order).
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when `redis_queue_limit` appends and publishes, or
    /// `redis_queue_bytes` bytes, are already waiting: nothing was queued and the receipt
    /// was not touched (the caller drops it).
    pub fn append(
        &self,
        id: &str,
        message: Message<'_>,
        receipt: Option<Arc<Collector>>,
    ) -> Result<(), Error> {
        debug_assert!(self.history_size > 0, "append needs history on");
        let connected = self.counters.publisher_up.load(Relaxed);
        let (queued, settle_now) = if connected { (receipt, None) } else { (None, receipt) };
        let append = Outbound::Append {
            id: id.into(),
            binary: !message.is_text(),
            body: message.as_bytes().to_vec(),
            seq: 0,
            receipt: queued,
        };
        if self.try_enqueue(append).is_err() {
            bump(&self.counters.publish_dropped, 1);
            return Err(Error::QueueFull);
        }
        if let Some(receipt) = settle_now {
            receipt.set_receivers(None);
        }
        if let (Some(channel), Message::Text(text)) = (&self.channels.compat_publish, message) {
            let payload = compat::encode(id, text, &self.node_id);
            self.enqueue(Outbound::Publish { channel: channel.clone(), payload, receipt: None });
        }
        Ok(())
    }

    /// Asks for `id`'s history from offset `from` (0: its position only), at most `count`
    /// entries (a page is at most 256). Never blocks: false when history is off or the
    /// reader's queue (16,384 reads) is full, and then `reply` is dropped uncalled (retry
    /// later). Otherwise `reply` is called once, in the backplane task, with the page or
    /// why there is none (Redis unreachable: the caller retries with backoff).
    pub fn read_history(&self, id: &str, from: u64, count: usize, reply: ReadReply) -> bool {
        if self.history_size == 0 {
            return false;
        }
        self.reads.try_send(ReadRequest { id: id.into(), from, count, reply }).is_ok()
    }

    /// [`Engine::history`](crate::Engine::history) in cluster mode: reads `id`'s history
    /// after `since` from Redis; when the history no longer reaches `since` (or none is
    /// given), from its oldest kept message (a second read). `done` is called once, in the
    /// backplane task, with the read or why Redis could not answer.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when the reader's queue is full (`done` is not called).
    pub fn history(
        &self,
        id: &str,
        since: Option<Position>,
        limit: usize,
        done: HistoryDone,
    ) -> Result<(), Error> {
        let count = limit.clamp(1, MAX_PAGE);
        let from = since.map_or(1, |since| since.offset + 1);
        let (owner, reader) = (Box::<str>::from(id), self.reads.clone());
        let reply: ReadReply = Box::new(move |page| match page {
            Ok(page) if since.is_some_and(|since| page.reaches(since)) => {
                done(Ok(HistoryRead { page, recovered: true }))
            }
            Ok(_) if from != 1 => {
                let again: ReadReply =
                    Box::new(move |page| done(page.map(|page| HistoryRead { page, recovered: false })));
                if let Err(refused) = reader.try_send(ReadRequest { id: owner, from: 1, count, reply: again })
                {
                    let (mpsc::error::TrySendError::Full(request)
                    | mpsc::error::TrySendError::Closed(request)) = refused;
                    (request.reply)(Err(ReadFailed::Unavailable));
                }
            }
            Ok(page) => done(Ok(HistoryRead { page, recovered: false })),
            Err(e) => done(Err(e)),
        });
        if self.reads.try_send(ReadRequest { id: id.into(), from, count, reply }).is_err() {
            return Err(Error::QueueFull);
        }
        Ok(())
    }

    pub fn publish_broadcast(&self, message: Message<'_>, receipt: Option<Arc<Collector>>) {
        let payload = envelope::encode(&self.node_id, message);
        let receipt = self.settle_if_disconnected(receipt);
        self.enqueue(Outbound::Publish { channel: self.channels.all.clone(), payload, receipt });
    }

    /// Publishes a client's message for backend services, if that is switched on.
    pub fn publish_inbound(&self, id: &str, message: Message<'_>) {
        let Some(channel) = &self.channels.inbound else { return };
        let data = match message {
            Message::Text(text) => serde_json::json!({ "id": id, "node": &*self.node_id, "data": text }),
            Message::Binary(data) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(data);
                serde_json::json!({ "id": id, "node": &*self.node_id, "data": encoded, "encoding": "base64" })
            }
        };
        let payload = data.to_string().into_bytes();
        self.enqueue(Outbound::Publish { channel: channel.clone(), payload, receipt: None });
    }

    pub fn count_subscribers(&self, id: &str, receipt: Arc<Collector>) {
        if let Some(receipt) = self.settle_if_disconnected(Some(receipt)) {
            self.enqueue(Outbound::CountSubscribers { channel: self.channels.user(id), receipt });
        }
    }

    pub fn subscribe(&self, id: &str) {
        let _ = self.changes.send(Change::Subscribe(id.into()));
    }

    pub fn unsubscribe(&self, id: &str) {
        let _ = self.changes.send(Change::Unsubscribe(id.into()));
    }

    /// While Redis is unreachable a publish waits in the queue, but its sender should not:
    /// the receipt is settled now, with no node count.
    fn settle_if_disconnected(&self, receipt: Option<Arc<Collector>>) -> Option<Arc<Collector>> {
        match receipt {
            Some(receipt) if !self.counters.publisher_up.load(Relaxed) => {
                receipt.set_receivers(None);
                None
            }
            receipt => receipt,
        }
    }

    /// Queues `outbound` for the publisher if the queue has room for it, by count and by
    /// bytes; else drops it and counts it.
    fn enqueue(&self, outbound: Outbound) {
        if let Err(outbound) = self.try_enqueue(outbound) {
            bump(&self.counters.publish_dropped, 1);
            match outbound {
                Outbound::Publish { receipt: Some(receipt), .. }
                | Outbound::Append { receipt: Some(receipt), .. }
                | Outbound::CountSubscribers { receipt, .. } => {
                    receipt.set_receivers(None);
                }
                Outbound::Publish { receipt: None, .. } | Outbound::Append { receipt: None, .. } => {}
            }
        }
    }

    /// Queues `outbound` if the queue has room for it, by count and by bytes; else gives
    /// it back.
    fn try_enqueue(&self, outbound: Outbound) -> Result<(), Outbound> {
        let bytes = outbound.queued_bytes();
        let queued = &self.counters.publish_queued_bytes;
        let reserved = queued
            .fetch_update(Relaxed, Relaxed, |held| {
                held.checked_add(bytes).filter(|&sum| sum <= self.queue_bytes)
            })
            .is_ok();
        let refused = if reserved {
            self.outbound.try_send(outbound).err().map(|refused| {
                queued.fetch_sub(bytes, Relaxed);
                let (mpsc::error::TrySendError::Full(outbound) | mpsc::error::TrySendError::Closed(outbound)) =
                    refused;
                outbound
            })
        } else {
            Some(outbound)
        };
        match refused {
            Some(outbound) => Err(outbound),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> ClusterStats {
        let mut stats = ClusterStats {
            node_id: self.node_id.to_string(),
            connected: self.is_connected(),
            ..ClusterStats::default()
        };
        self.counters.add_counts_to(&mut stats);
        stats
    }
}

impl worker::Backplane for ClusterLink {
    fn id_opened(&self, id: &str) {
        self.subscribe(id);
    }

    fn id_closed(&self, id: &str) {
        self.unsubscribe(id);
    }

    fn inbound(&self, id: &str, message: Message<'_>) {
        self.publish_inbound(id, message);
    }

    fn read_history(&self, id: &str, from: u64, count: usize, token: u64) -> bool {
        let Some(workers) = self.workers.get().cloned() else { return false };
        let owner: Box<str> = id.into();
        let reply: ReadReply = Box::new(move |page| {
            workers.history_page(&owner, token, page);
        });
        ClusterLink::read_history(self, id, from, count, reply)
    }

    fn subscription_losses(&self) -> u64 {
        self.subscription_losses.load(Relaxed)
    }

    fn is_subscribed(&self) -> bool {
        self.counters.subscriber_up.load(Relaxed)
    }
}

/// A node id unique enough for a fleet: 12 hex digits from the OS-seeded hasher, the
/// process id and the clock.
fn random_node_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}
