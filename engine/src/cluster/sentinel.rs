//! Following a Sentinel failover. Every Sentinel's announcements are listened to (only the
//! one leading a failover announces its steps): when one is about to promote a replica, the
//! writes wait ([`Endpoint::pause_writes`], at most [`WRITES_PAUSE`]), so the old master takes
//! nothing the new one will lack; on `+switch-master` every backplane connection is replaced
//! ([`Endpoint::follow_master`]): the subscriber resubscribes on the new master and, with
//! history on, every id catches up from its stream. The Sentinels are also asked every
//! [`POLL`] which server is master, in case an announcement was missed.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::watch;

use super::connect::{timed_out, Reconnector, RESPONSE_TIMEOUT};
use super::endpoint::{master_named, Endpoint};
use super::resp::Push;
use super::stats::ClusterCounters;
use super::subscription::Subscription;
use crate::stats::bump;

/// How often the Sentinels are asked for the master, announcements or not.
const POLL: Duration = Duration::from_secs(1);
/// Announced by the Sentinel that leads a failover, just before it promotes the replica.
const PROMOTING: &[u8] = b"+failover-state-send-slaveof-noone";
const SWITCH_MASTER: &[u8] = b"+switch-master";
/// Longest wait of the writes for a failover's end (announced: the master moved; or not:
/// the failover failed, and writes go on to the old master).
const WRITES_PAUSE: Duration = Duration::from_secs(5);

/// Follows the master the Sentinels name until the node stops; returns at once for a single
/// Redis.
pub(super) async fn follow_failovers(
    endpoint: &Endpoint,
    counters: Arc<ClusterCounters>,
    stopped: watch::Receiver<bool>,
) {
    let Some(sentinel) = endpoint.sentinel() else { return };
    // Every Sentinel's announcements: only the one that leads a failover announces its steps.
    let listeners = sentinel
        .target
        .sentinels
        .iter()
        .map(|(host, port)| listen(endpoint, &counters, host, *port, stopped.clone()));
    tokio::join!(join_all(listeners), ask_every_second(endpoint, &counters, stopped));
}

/// Listens to one Sentinel's announcements: a replica about to be promoted pauses the writes
/// (what the old master took from then on would not be on the new one), a switch has the
/// node follow the new master.
async fn listen(
    endpoint: &Endpoint,
    counters: &ClusterCounters,
    host: &str,
    port: u16,
    stopped: watch::Receiver<bool>,
) {
    let master = endpoint.sentinel().map_or("", |sentinel| sentinel.target.master.as_str());
    let auth = endpoint.sentinel().map(|sentinel| sentinel.sentinel_auth()).unwrap_or_default();
    // Not the Redis connections' counters: a Sentinel reconnection is no Redis reconnection.
    let unreachable = "cannot reach a Sentinel to hear of failovers; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, Arc::default(), stopped);
    let sentinel = format!("{host}:{port}");
    loop {
        let connected = reconnect
            .connect_until_up(|| async {
                let subscribe = async {
                    let mut announcements = endpoint.open_subscription(host, port, &auth).await?;
                    announcements.send(&[b"SUBSCRIBE", SWITCH_MASTER, PROMOTING]).await?;
                    Ok::<_, std::io::Error>(announcements)
                };
                // A Sentinel that accepts and never answers must not hold the listener.
                tokio::time::timeout(RESPONSE_TIMEOUT, subscribe).await.map_err(|_| timed_out())?
            })
            .await;
        let Some(mut announcements) = connected else { return };
        let mut heard = false;
        let broken = loop {
            match announced(&mut announcements, master) {
                Ok(Announced { subscribed, promoting, switched_to }) => {
                    if subscribed && !heard {
                        // Up once the Sentinel confirmed: one that refuses the subscription
                        // keeps backing off instead of being retried at once.
                        heard = true;
                        reconnect.up();
                    }
                    if promoting {
                        tracing::warn!(%sentinel, master, "a Sentinel is promoting a replica; writes wait for the new master");
                        endpoint.pause_writes(WRITES_PAUSE);
                    }
                    if let Some((new_host, new_port)) = switched_to {
                        follow(endpoint, counters, &new_host, new_port);
                    }
                }
                Err(e) => break e,
            }
            tokio::select! {
                read = announcements.fill() => if let Err(e) = read {
                    break e;
                },
                _ = reconnect.stopped().changed() => return,
            }
        };
        if heard {
            tracing::warn!(%sentinel, error = %broken, "lost a Sentinel's announcements; reconnecting");
        }
        if reconnect.pause().await {
            return;
        }
    }
}

/// Asks the Sentinels (one at a time, the next after a failure) every [`POLL`] which server
/// is master: an announcement made while the node was disconnected is not missed.
async fn ask_every_second(endpoint: &Endpoint, counters: &ClusterCounters, stopped: watch::Receiver<bool>) {
    let Some(sentinel) = endpoint.sentinel() else { return };
    let (sentinels, master) = (&sentinel.target.sentinels, sentinel.target.master.as_str());
    let unreachable = "cannot reach any Sentinel to ask for the master; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, Arc::default(), stopped);
    let mut next = 0;
    // Logged once per run of failures, as the Reconnector logs an outage.
    let mut logged = false;
    loop {
        let connected = reconnect
            .connect_until_up(|| {
                let (host, port) = sentinels[next % sentinels.len()].clone();
                next += 1;
                async move { endpoint.ask_sentinel_connection(&host, port).await }
            })
            .await;
        let Some(mut questions) = connected else { return };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let broken = loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = reconnect.stopped().changed() => return,
            }
            let answer = tokio::time::timeout(RESPONSE_TIMEOUT, master_named(&mut questions, master)).await;
            match answer {
                Ok(Ok(Some((host, port)))) => {
                    // Up only once a question was answered: a Sentinel that answers none keeps
                    // backing off instead of being asked again at once.
                    reconnect.up();
                    logged = false;
                    follow(endpoint, counters, &host, port);
                }
                Ok(Ok(None)) => break format!("the Sentinel knows no master named `{master}`"),
                Ok(Err(e)) => break e.to_string(),
                Err(_) => break "the Sentinel did not answer in time".into(),
            }
        };
        if !logged {
            tracing::warn!(error = %broken, "could not ask a Sentinel for the master; trying the next one");
            logged = true;
        }
        if reconnect.pause().await {
            return;
        }
    }
}

fn follow(endpoint: &Endpoint, counters: &ClusterCounters, host: &str, port: u16) {
    if endpoint.follow_master(host, port) {
        bump(&counters.master_switches, 1);
    }
}

/// What a Sentinel announced about `master` since last asked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Announced {
    /// The Sentinel confirmed the subscription.
    subscribed: bool,
    /// A replica is about to be promoted.
    promoting: bool,
    /// The newest switch: the new master's address.
    switched_to: Option<(String, u16)>,
}

fn announced(announcements: &mut Subscription, master: &str) -> std::io::Result<Announced> {
    let mut seen = Announced::default();
    loop {
        let push =
            announcements.next().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        match push {
            None => return Ok(seen),
            Some(Push::Message { channel: SWITCH_MASTER, payload }) => {
                if let Some(address) = parse_switch(payload, master) {
                    // A switch after a promotion ends that promotion's pause.
                    seen = Announced { promoting: false, switched_to: Some(address), ..seen };
                }
            }
            Some(Push::Message { channel: PROMOTING, payload }) => {
                seen.promoting |= is_promoting(payload, master)
            }
            Some(Push::Error(e)) => {
                return Err(std::io::Error::other(format!(
                    "the Sentinel refused: {}",
                    String::from_utf8_lossy(e)
                )))
            }
            Some(_) => {}
        }
    }
}

/// A failover step's payload is `slave NAME IP PORT @ MASTER_NAME MASTER_IP MASTER_PORT`:
/// whether it is about `master`.
fn is_promoting(payload: &[u8], master: &str) -> bool {
    std::str::from_utf8(payload)
        .ok()
        .and_then(|text| text.split_once(" @ "))
        .is_some_and(|(_, about)| about.split(' ').next() == Some(master))
}

/// `+switch-master`'s payload is `NAME OLD_IP OLD_PORT NEW_IP NEW_PORT`: the new address, if
/// it is about `master`.
fn parse_switch(payload: &[u8], master: &str) -> Option<(String, u16)> {
    let text = std::str::from_utf8(payload).ok()?;
    let fields: Vec<&str> = text.split(' ').collect();
    match fields.as_slice() {
        [name, _, _, host, port] if *name == master => Some(((*host).to_owned(), port.parse().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_promotion_is_recognised_for_the_right_master() {
        let payload = b"slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6380";
        assert!(is_promoting(payload, "mymaster"));
        assert!(!is_promoting(payload, "other"));
        assert!(!is_promoting(b"slave 127.0.0.1:6381 127.0.0.1 6381", "mymaster"));
        assert!(!is_promoting(b"\xff @ mymaster", "mymaster"));
    }

    #[test]
    fn a_switch_names_the_new_master_of_the_right_name() {
        let payload = b"mymaster 10.0.0.1 6379 10.0.0.2 6380";
        assert_eq!(parse_switch(payload, "mymaster"), Some(("10.0.0.2".into(), 6380)));
        assert_eq!(parse_switch(payload, "other"), None);
        assert_eq!(parse_switch(b"mymaster 10.0.0.1 6379 10.0.0.2 port", "mymaster"), None);
        assert_eq!(parse_switch(b"mymaster 10.0.0.2 6380", "mymaster"), None);
        assert_eq!(parse_switch(b"\xff", "mymaster"), None);
    }
}
