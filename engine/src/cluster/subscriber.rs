//! The subscriber: a connection in subscribed mode, kept in line with the ids this node
//! holds (batched SUBSCRIBE / UNSUBSCRIBE), whose messages go to the [`Router`].

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::connect::{timed_out, Reconnector, KEEPALIVE, RESPONSE_TIMEOUT};
use super::endpoint::Endpoint;
use super::link::{Change, ClusterLink};
use super::routing::{route_received, OneRedis, Router};
use super::stats::ClusterCounters;
use super::subscription::Subscription;
use crate::stats::bump;

/// Most channels in one SUBSCRIBE or UNSUBSCRIBE.
const MAX_CHANNELS_PER_COMMAND: usize = 2048;
/// The subscriber collects id changes while they keep arriving (checking every
/// `COALESCE_STEP`, for at most `COALESCE_MAX`), so a connect storm of any length becomes a
/// handful of commands while a lone connect is subscribed within milliseconds.
const COALESCE_STEP: Duration = Duration::from_millis(5);
const COALESCE_MAX: Duration = Duration::from_millis(50);

/// Keeps Redis subscribed to what this node holds until the node stops, handing what
/// arrives to `router`; tells the publisher of every lost connection through `lost`.
pub(super) async fn subscribe_loop(
    endpoint: &Endpoint,
    mut changes: mpsc::UnboundedReceiver<Change>,
    link: &ClusterLink,
    mut router: Router,
    lost: watch::Sender<u64>,
    stopped: watch::Receiver<bool>,
) {
    let counters = link.counters.clone();
    let unreachable = "cannot reach Redis to subscribe; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, counters.clone(), stopped);
    // The ids this node holds sockets of, as the workers reported them.
    let mut held: HashSet<Box<str>> = HashSet::new();
    let mut master_changes = endpoint.master_changes();
    loop {
        // A failover announced from here on replaces the connection about to be opened.
        master_changes.borrow_and_update();
        let connected = reconnect.connect_until_up(|| {
            // Each attempt subscribes to what is held by then, not when the outage began.
            while let Ok(change) = changes.try_recv() {
                apply(&mut held, change);
            }
            endpoint.subscriber()
        });
        let Some(mut conn) = connected.await else { return };
        let channels = link.channels.subscribed(held.iter().map(|id| &**id));
        let mut awaiting_pong = false;
        if let Err(e) =
            subscribe_initial(&mut conn, &channels, &mut router, &mut awaiting_pong, &counters).await
        {
            tracing::warn!(error = %e, "cannot subscribe; retrying with backoff");
            // Some ids may have been confirmed on this connection already.
            router.connection_lost();
            if reconnect.pause().await {
                return;
            }
            continue;
        }
        let mut subscribed: HashSet<Box<str>> = held.clone();
        reconnect.up();
        counters.subscriber_up.store(true, Relaxed);
        tracing::info!(channels = channels.len(), "subscriber connected to Redis");
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        let connection_lost = loop {
            if let Err(e) =
                route_received(&mut conn, &mut router, &mut awaiting_pong, &mut OneRedis(&counters))
            {
                tracing::warn!(error = %e, "the subscriber's connection is unusable");
                break true;
            }
            if router.is_waiting() {
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
                    let synced = sync_subscriptions(&mut conn, touched, &mut held, &mut subscribed, link, &counters).await;
                    match synced {
                        Ok(already_subscribed) => already_subscribed.into_iter().for_each(|id| router.confirm_subscribed(id)),
                        Err(_) => break true,
                    }
                }
                _ = keepalive.tick() => {
                    // A PING unanswered by the next tick means a silently broken connection.
                    if awaiting_pong || conn.send(&[b"PING"]).await.is_err() {
                        break true;
                    }
                    awaiting_pong = true;
                }
                Ok(()) = master_changes.changed() => break true,
                _ = reconnect.stopped().changed() => break false,
            }
        };
        counters.subscriber_up.store(false, Relaxed);
        counters.subscribed_channels.store(0, Relaxed);
        if !connection_lost {
            return;
        }
        router.connection_lost();
        lost.send_modify(|losses| *losses += 1);
        tracing::warn!("subscriber lost its Redis connection; reconnecting and resubscribing");
        if reconnect.pause().await {
            return;
        }
    }
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
/// confirmations arrive with the messages and update the subscription count. Returns the
/// ids opened again that were still subscribed (no SUBSCRIBE, so no confirmation from
/// Redis: the caller confirms them).
async fn sync_subscriptions(
    conn: &mut Subscription,
    touched: Vec<Change>,
    held: &mut HashSet<Box<str>>,
    subscribed: &mut HashSet<Box<str>>,
    link: &ClusterLink,
    counters: &ClusterCounters,
) -> std::io::Result<Vec<Box<str>>> {
    let mut to_subscribe = Vec::new();
    let mut to_unsubscribe = Vec::new();
    let mut already_subscribed = Vec::new();
    let mut seen = HashSet::new();
    let mut opened = HashSet::new();
    let touched: Vec<Box<str>> = touched
        .into_iter()
        .map(|change| {
            if let Change::Subscribe(id) = &change {
                opened.insert(id.clone());
            }
            apply(held, change)
        })
        .collect();
    for id in touched {
        if !seen.insert(id.clone()) {
            continue;
        }
        match (held.contains(&id), subscribed.contains(&id)) {
            (true, false) => to_subscribe.push(id),
            (false, true) => to_unsubscribe.push(id),
            (true, true) if opened.contains(&id) => already_subscribed.push(id),
            _ => {}
        }
    }
    for (command, ids, counter) in [
        (&b"SUBSCRIBE"[..], &to_subscribe, &counters.subscribe_commands),
        (&b"UNSUBSCRIBE"[..], &to_unsubscribe, &counters.unsubscribe_commands),
    ] {
        for chunk in ids.chunks(MAX_CHANNELS_PER_COMMAND) {
            let channels: Vec<String> = chunk.iter().map(|id| link.channels.user(id)).collect();
            conn.send_channels(command, &channels).await?;
            bump(counter, 1);
        }
    }
    subscribed.extend(to_subscribe);
    for id in &to_unsubscribe {
        subscribed.remove(id);
    }
    Ok(already_subscribed)
}

/// Subscribes to `channels` on a fresh connection and waits (routing whatever arrives
/// meanwhile) until Redis confirmed every one of them.
async fn subscribe_initial(
    conn: &mut Subscription,
    channels: &[String],
    router: &mut Router,
    awaiting_pong: &mut bool,
    counters: &ClusterCounters,
) -> std::io::Result<()> {
    for chunk in channels.chunks(MAX_CHANNELS_PER_COMMAND) {
        conn.send_channels(b"SUBSCRIBE", chunk).await?;
        bump(&counters.subscribe_commands, 1);
    }
    let confirmed = async {
        let mut confirmations = 0;
        loop {
            confirmations += route_received(conn, router, awaiting_pong, &mut OneRedis(counters))?;
            if confirmations >= channels.len() {
                return Ok(());
            }
            if router.is_waiting() {
                router.wait_for_worker().await;
            } else {
                conn.fill().await?;
            }
        }
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, confirmed).await.map_err(|_| timed_out())?
}
