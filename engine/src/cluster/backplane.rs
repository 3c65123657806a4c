//! The backplane thread: a current-thread tokio runtime running the publisher (one
//! pipeline per batch of pending publishes) and the subscriber (batched SUBSCRIBE /
//! UNSUBSCRIBE, routing what arrives to the workers). Each keeps its own Redis connection
//! and reconnects on its own with jittered exponential backoff.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::{mpsc, watch};

use super::resp::Push;
use super::subscription::{Endpoint, Subscription};
use super::{compat, envelope, Change, ClusterConfig, ClusterCounters, ClusterLink, LinkEnds, Outbound};
use crate::frame::{self, OpCode};
use crate::stats::bump;
use crate::worker::{Mailboxes, Pending, Refused};
use crate::Error;

/// Most publishes in one pipeline.
const MAX_BATCH: usize = 4096;
/// Most channels in one SUBSCRIBE or UNSUBSCRIBE.
const MAX_CHANNELS_PER_COMMAND: usize = 2048;
/// The subscriber collects id changes while they keep arriving (checking every
/// `COALESCE_STEP`, for at most `COALESCE_MAX`), so a connect storm of any length becomes a
/// handful of commands while a lone connect is subscribed within milliseconds.
const COALESCE_STEP: Duration = Duration::from_millis(5);
const COALESCE_MAX: Duration = Duration::from_millis(50);
/// A Redis that answers nothing for this long is taken as gone.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The subscriber pings this often, to notice a silent broken connection.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long the subscriber waits for a full worker queue to take a delivery, and how
/// often it looks.
const MAX_WORKER_WAIT: Duration = Duration::from_secs(2);
const WORKER_WAIT_STEP: Duration = Duration::from_millis(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The running backplane thread.
pub(crate) struct Backplane {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// What the subscriber needs to route messages.
struct Router {
    link: Arc<ClusterLink>,
    mailboxes: Mailboxes,
    compat_channel: Option<String>,
    /// Malformed payload kinds already logged (each is logged once, then only counted).
    logged: HashSet<&'static str>,
    /// A delivery whose worker's queue was full, and since when. While it waits, nothing
    /// more is read from Redis.
    waiting: Option<(Pending, Instant)>,
}

impl Backplane {
    /// Starts the thread. Redis need not be reachable: the node runs degraded and retries.
    pub fn start(
        config: &ClusterConfig,
        link: Arc<ClusterLink>,
        ends: LinkEnds,
        mailboxes: Mailboxes,
    ) -> Result<Self, Error> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| Error::InvalidConfig { setting: "redis", reason: e.to_string() })?;
        let endpoint = Endpoint::of(&client)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the backplane runtime", e))?;
        let (stop, stopped) = watch::channel(false);
        let router = Router {
            link: link.clone(),
            mailboxes,
            compat_channel: config.compat_channel.clone(),
            logged: HashSet::new(),
            waiting: None,
        };
        tracing::info!(node_id = link.node_id(), redis = %config.redacted_url(), "cluster mode");
        let LinkEnds { outbound, changes } = ends;
        let thread = std::thread::Builder::new()
            .name("wspush-backplane".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // The subscriber reads all the time, so it sees a dropped connection first
                    // and tells the publisher, which may have nothing to send for a while.
                    let (lost, lost_seen) = watch::channel(0u64);
                    let publisher = publish_loop(
                        client.clone(),
                        outbound,
                        link.counters.clone(),
                        lost_seen,
                        stopped.clone(),
                    );
                    let subscriber = subscribe_loop(endpoint, changes, router, lost, stopped);
                    tokio::join!(publisher, subscriber);
                })
            })
            .map_err(|e| Error::io("starting the backplane thread", e))?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Flushes what is queued (briefly), closes both connections and joins the thread.
    pub fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the backplane thread panicked");
            }
        }
    }
}

impl Drop for Backplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Jittered exponential backoff, so a fleet does not reconnect in lockstep.
struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN, seed: std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15 }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    fn next_delay(&mut self) -> Duration {
        // xorshift: enough randomness for jitter, no dependency.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.5 + (self.seed % 1000) as f64 / 2000.0;
        let delay = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

/// Waits `delay`, or returns true early when stopping.
async fn sleep_or_stop(delay: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}

fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

async fn publish_loop(
    client: redis::Client,
    mut outbound: mpsc::Receiver<Outbound>,
    counters: Arc<ClusterCounters>,
    mut subscriber_lost: watch::Receiver<u64>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut ever_connected = false;
    let mut logged_down = false;
    loop {
        let config = connection_config();
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let attempt = tokio::select! {
            attempt = connect => attempt,
            _ = stopped.changed() => return,
        };
        let mut connection = match attempt {
            Ok(connection) => connection,
            Err(e) => {
                if !logged_down {
                    tracing::warn!(error = %e, "cannot reach Redis to publish; retrying with backoff");
                    logged_down = true;
                }
                if sleep_or_stop(backoff.next_delay(), &mut stopped).await {
                    return;
                }
                continue;
            }
        };
        if ever_connected {
            bump(&counters.reconnects, 1);
        }
        ever_connected = true;
        logged_down = false;
        backoff.reset();
        counters.publisher_up.store(true, Relaxed);
        tracing::info!("publisher connected to Redis");
        // Losses the subscriber saw before this connection are not this connection's.
        subscriber_lost.borrow_and_update();
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            if batch.is_empty() {
                // An idle publisher still notices an outage (the subscriber's word, or its own
                // ping), so a batch sent after Redis returns goes out on a fresh connection.
                let stopping = tokio::select! {
                    received = outbound.recv_many(&mut batch, MAX_BATCH) => received == 0,
                    Ok(()) = subscriber_lost.changed() => break,
                    _ = keepalive.tick() => {
                        let ping = redis::cmd("PING");
                        match tokio::time::timeout(RESPONSE_TIMEOUT, ping.query_async::<Value>(&mut connection)).await {
                            Ok(Ok(_)) => continue,
                            _ => break,
                        }
                    }
                    _ = stopped.changed() => true,
                };
                if stopping {
                    // Flush what was sent before the shutdown, then go.
                    while let Ok(item) = outbound.try_recv() {
                        batch.push(item);
                    }
                    if !batch.is_empty() {
                        send_batch(&mut connection, &mut batch, &counters).await;
                    }
                    counters.publisher_up.store(false, Relaxed);
                    return;
                }
            }
            if subscriber_lost.has_changed().unwrap_or(false) {
                break;
            }
            if !send_batch(&mut connection, &mut batch, &counters).await {
                break;
            }
        }
        counters.publisher_up.store(false, Relaxed);
        // Whoever waits on a receipt in the held batch hears now, not after the outage;
        // the publishes themselves wait for the next connection.
        batch.retain_mut(|item| match item {
            Outbound::Publish { receipt, .. } => {
                if let Some(receipt) = receipt.take() {
                    receipt.set_receivers(None);
                }
                true
            }
            Outbound::CountSubscribers { receipt, .. } => {
                receipt.set_receivers(None);
                false
            }
        });
        tracing::warn!("publisher lost its Redis connection; reconnecting");
    }
}

/// Sends the whole batch as one pipeline and settles every receipt. False when the
/// connection failed (the batch is then counted as lost: at-most-once, never duplicated).
async fn send_batch(
    connection: &mut MultiplexedConnection,
    batch: &mut Vec<Outbound>,
    counters: &ClusterCounters,
) -> bool {
    let mut pipe = redis::pipe();
    for item in batch.iter() {
        match item {
            Outbound::Publish { channel, payload, .. } => pipe.cmd("PUBLISH").arg(channel).arg(payload),
            Outbound::CountSubscribers { channel, .. } => pipe.cmd("PUBSUB").arg("NUMSUB").arg(channel),
        };
    }
    let result: redis::RedisResult<Vec<Value>> = pipe.query_async(connection).await;
    bump(&counters.publish_round_trips, 1);
    let ok = result.is_ok();
    let replies = result.unwrap_or_default();
    let mut replies = replies.into_iter();
    let mut published = 0;
    let mut failed = 0;
    for item in batch.drain(..) {
        let reply = replies.next();
        match item {
            Outbound::Publish { receipt, .. } => {
                let receivers = match reply {
                    Some(Value::Int(n)) => Some(n.max(0) as usize),
                    _ => None,
                };
                if receivers.is_some() {
                    published += 1;
                } else {
                    failed += 1;
                }
                if let Some(receipt) = receipt {
                    receipt.set_receivers(receivers);
                }
            }
            Outbound::CountSubscribers { receipt, .. } => {
                let count = match reply {
                    Some(Value::Array(items)) => match items.get(1) {
                        Some(Value::Int(n)) => Some((*n).max(0) as usize),
                        _ => None,
                    },
                    _ => None,
                };
                receipt.set_receivers(count);
            }
        }
    }
    bump(&counters.published, published);
    bump(&counters.publish_failed, failed);
    ok
}

async fn subscribe_loop(
    endpoint: Endpoint,
    mut changes: mpsc::UnboundedReceiver<Change>,
    mut router: Router,
    lost: watch::Sender<u64>,
    mut stopped: watch::Receiver<bool>,
) {
    let counters = router.link.counters.clone();
    let mut backoff = Backoff::new();
    // The ids this node holds sockets of, as the workers reported them.
    let mut held: HashSet<Box<str>> = HashSet::new();
    let mut ever_connected = false;
    let mut logged_down = false;
    loop {
        while let Ok(change) = changes.try_recv() {
            apply(&mut held, change);
        }
        let connect = tokio::time::timeout(RESPONSE_TIMEOUT, Subscription::connect(&endpoint));
        let attempt = tokio::select! {
            attempt = connect => attempt.map_err(|_| timed_out()).and_then(|connected| connected),
            _ = stopped.changed() => return,
        };
        let mut conn = match attempt {
            Ok(conn) => conn,
            Err(e) => {
                if !logged_down {
                    tracing::warn!(error = %e, "cannot reach Redis to subscribe; retrying with backoff");
                    logged_down = true;
                }
                if sleep_or_stop(backoff.next_delay(), &mut stopped).await {
                    return;
                }
                continue;
            }
        };
        let mut channels = vec![router.link.all_channel.clone()];
        channels.extend(router.compat_channel.clone());
        channels.extend(held.iter().map(|id| router.link.user_channel(id)));
        let mut awaiting_pong = false;
        if let Err(e) = subscribe_initial(&mut conn, &channels, &mut router, &mut awaiting_pong).await {
            tracing::warn!(error = %e, "cannot subscribe; retrying with backoff");
            if sleep_or_stop(backoff.next_delay(), &mut stopped).await {
                return;
            }
            continue;
        }
        let mut subscribed: HashSet<Box<str>> = held.clone();
        if ever_connected {
            bump(&counters.reconnects, 1);
        }
        ever_connected = true;
        logged_down = false;
        backoff.reset();
        counters.subscriber_up.store(true, Relaxed);
        tracing::info!(channels = channels.len(), "subscriber connected to Redis");
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let connection_lost = loop {
            if let Err(e) = route_received(&mut conn, &mut router, &mut awaiting_pong) {
                tracing::warn!(error = %e, "the subscriber's connection is unusable");
                break true;
            }
            if router.waiting.is_some() {
                router.wait_for_worker().await;
                continue;
            }
            tokio::select! {
                read = conn.fill() => if read.is_err() {
                    break true;
                },
                change = changes.recv() => {
                    let Some(change) = change else { break false };
                    let mut touched = vec![change];
                    let started = tokio::time::Instant::now();
                    loop {
                        tokio::time::sleep(COALESCE_STEP).await;
                        let before = touched.len();
                        while let Ok(change) = changes.try_recv() {
                            touched.push(change);
                        }
                        let quiet = touched.len() == before;
                        if quiet || started.elapsed() >= COALESCE_MAX || touched.len() >= MAX_CHANNELS_PER_COMMAND {
                            break;
                        }
                    }
                    if sync_subscriptions(&mut conn, touched, &mut held, &mut subscribed, &router.link, &counters).await.is_err() {
                        break true;
                    }
                }
                _ = keepalive.tick() => {
                    // A PING unanswered by the next tick means a silently broken connection.
                    if awaiting_pong || conn.send(&[b"PING"]).await.is_err() {
                        break true;
                    }
                    awaiting_pong = true;
                }
                _ = stopped.changed() => break false,
            }
        };
        counters.subscriber_up.store(false, Relaxed);
        counters.subscribed_channels.store(0, Relaxed);
        if !connection_lost {
            return;
        }
        lost.send_modify(|losses| *losses += 1);
        tracing::warn!("subscriber lost its Redis connection; reconnecting and resubscribing");
        if sleep_or_stop(backoff.next_delay(), &mut stopped).await {
            return;
        }
    }
}

/// Routes every reply already received (until a delivery has to wait for its worker):
/// messages to the workers, confirmations into the subscription count, a pong into
/// `awaiting_pong`. Returns how many (un)subscribe confirmations it saw.
fn route_received(
    conn: &mut Subscription,
    router: &mut Router,
    awaiting_pong: &mut bool,
) -> std::io::Result<usize> {
    let mut confirmations = 0;
    while router.waiting.is_none() {
        let push = conn.next().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        match push {
            None => return Ok(confirmations),
            Some(Push::Message { channel, payload }) => match std::str::from_utf8(channel) {
                Ok(channel) => router.route(channel, payload),
                Err(_) => bump(&router.link.counters.received, 1),
            },
            Some(Push::Subscriptions(count)) => {
                confirmations += 1;
                router.link.counters.subscribed_channels.store(count.max(0) as u64, Relaxed);
            }
            Some(Push::Pong) => *awaiting_pong = false,
            Some(Push::Ok) => {}
            Some(Push::Error(e)) => {
                return Err(std::io::Error::other(format!("Redis refused: {}", String::from_utf8_lossy(e))));
            }
        }
    }
    Ok(confirmations)
}

fn apply(held: &mut HashSet<Box<str>>, change: Change) -> Box<str> {
    match change {
        Change::Subscribe(id) => {
            held.insert(id.clone());
            id
        }
        Change::Unsubscribe(id) => {
            held.remove(&id);
            id
        }
    }
}

/// Brings Redis in line with `held` for the ids in `touched`: an id that came and went
/// within the batch costs nothing. The commands are written, not awaited: their
/// confirmations arrive with the messages and update the subscription count.
async fn sync_subscriptions(
    conn: &mut Subscription,
    touched: Vec<Change>,
    held: &mut HashSet<Box<str>>,
    subscribed: &mut HashSet<Box<str>>,
    link: &ClusterLink,
    counters: &ClusterCounters,
) -> std::io::Result<()> {
    let mut to_subscribe = Vec::new();
    let mut to_unsubscribe = Vec::new();
    let mut seen = HashSet::new();
    let touched: Vec<Box<str>> = touched.into_iter().map(|change| apply(held, change)).collect();
    for id in touched {
        if !seen.insert(id.clone()) {
            continue;
        }
        match (held.contains(&id), subscribed.contains(&id)) {
            (true, false) => to_subscribe.push(id),
            (false, true) => to_unsubscribe.push(id),
            _ => {}
        }
    }
    for (command, ids, counter) in [
        (&b"SUBSCRIBE"[..], &to_subscribe, &counters.subscribe_commands),
        (&b"UNSUBSCRIBE"[..], &to_unsubscribe, &counters.unsubscribe_commands),
    ] {
        for chunk in ids.chunks(MAX_CHANNELS_PER_COMMAND) {
            let channels: Vec<String> = chunk.iter().map(|id| link.user_channel(id)).collect();
            conn.send_channels(command, &channels).await?;
            bump(counter, 1);
        }
    }
    subscribed.extend(to_subscribe);
    for id in &to_unsubscribe {
        subscribed.remove(id);
    }
    Ok(())
}

/// Subscribes to `channels` on a fresh connection and waits (routing whatever arrives
/// meanwhile) until Redis confirmed every one of them.
async fn subscribe_initial(
    conn: &mut Subscription,
    channels: &[String],
    router: &mut Router,
    awaiting_pong: &mut bool,
) -> std::io::Result<()> {
    let counters = router.link.counters.clone();
    for chunk in channels.chunks(MAX_CHANNELS_PER_COMMAND) {
        conn.send_channels(b"SUBSCRIBE", chunk).await?;
        bump(&counters.subscribe_commands, 1);
    }
    let confirmed = async {
        let mut confirmations = 0;
        loop {
            confirmations += route_received(conn, router, awaiting_pong)?;
            if confirmations >= channels.len() {
                return Ok(());
            }
            if router.waiting.is_some() {
                router.wait_for_worker().await;
            } else {
                conn.fill().await?;
            }
        }
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, confirmed).await.map_err(|_| timed_out())?
}

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "Redis did not answer in time")
}

impl Router {
    /// Delivers one message from Redis to the local workers. Never blocks: a delivery to a
    /// full worker queue waits in `waiting` (see [`Router::wait_for_worker`]); a broadcast a
    /// full worker cannot take is dropped for that worker and counted.
    fn route(&mut self, channel: &str, payload: &[u8]) {
        let counters = self.link.counters.clone();
        bump(&counters.received, 1);
        if self.compat_channel.as_deref() == Some(channel) {
            return self.route_compat(payload);
        }
        let id = if channel == self.link.all_channel {
            None
        } else if let Some(id) = channel.strip_prefix(self.link.user_prefix.as_str()) {
            Some(id)
        } else {
            return;
        };
        let envelope = match envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => return malformed(&mut self.logged, &counters.malformed_envelopes, "envelope", &e),
        };
        if envelope.origin == self.link.node_id() {
            bump(&counters.own_skipped, 1);
            return;
        }
        let frame = frame::encode_message(envelope.message);
        match id {
            Some(id) => self.deliver(id, frame),
            None => {
                let refused = self.mailboxes.broadcast(frame, None).count();
                bump(&self.link.counters.delivery_dropped, refused as u64);
            }
        }
    }

    fn route_compat(&mut self, payload: &[u8]) {
        match compat::decode(payload) {
            // Published by a wspush node, which also published the envelope we act on.
            Ok(message) if message.origin.is_some() => {}
            Ok(message) => self.deliver(&message.key, frame::encode(OpCode::Text, message.value.as_bytes())),
            Err(e) => malformed(&mut self.logged, &self.link.counters.malformed_compat, e.kind(), &e),
        }
    }

    fn deliver(&mut self, id: &str, frame: bytes::Bytes) {
        match self.mailboxes.try_deliver(id, frame) {
            Ok(()) => {}
            Err(Refused::Full(pending)) => self.waiting = Some((pending, Instant::now())),
            Err(Refused::ShutDown) => bump(&self.link.counters.delivery_dropped, 1),
        }
    }

    /// Hands the waiting delivery to its worker as soon as the worker's queue has room,
    /// reading nothing from Redis meanwhile (Redis buffers for us, and TCP pushes back on
    /// it), so a burst is delivered late rather than not at all. A worker that takes nothing
    /// for [`MAX_WORKER_WAIT`] loses the delivery (counted in `delivery_dropped`).
    async fn wait_for_worker(&mut self) {
        while let Some((pending, since)) = self.waiting.take() {
            match self.mailboxes.retry(pending) {
                Ok(()) => return,
                Err(Refused::Full(pending)) if since.elapsed() < MAX_WORKER_WAIT => {
                    self.waiting = Some((pending, since));
                    tokio::time::sleep(WORKER_WAIT_STEP).await;
                }
                Err(_) => {
                    bump(&self.link.counters.delivery_dropped, 1);
                    if self.logged.insert("worker_full") {
                        tracing::warn!(
                            "a worker's queue stayed full: dropped a delivery from Redis (counted)"
                        );
                    }
                }
            }
        }
    }
}

/// Counts a malformed payload; logs the first of each kind.
fn malformed(
    logged: &mut HashSet<&'static str>,
    counter: &std::sync::atomic::AtomicU64,
    kind: &'static str,
    error: &dyn std::fmt::Display,
) {
    bump(counter, 1);
    if logged.insert(kind) {
        tracing::warn!(kind, %error, "skipping a malformed payload from Redis (further ones of this kind are only counted)");
    }
}
