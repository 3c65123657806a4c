//! Following a Sentinel failover: a connection to one of the Sentinels (the next one in the
//! URL's list after each failure) subscribed to `+switch-master`, and asked every
//! [`POLL`] which server is master, in case an announcement was missed (the node was
//! disconnected from the Sentinel when it was published). When the master moved, every
//! backplane connection is replaced ([`Endpoint::follow_master`]): the subscriber resubscribes
//! on the new master and, with history on, every id catches up from its stream.

use std::sync::Arc;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::sync::watch;

use super::connect::{open_subscription, Endpoint, Reconnector, RESPONSE_TIMEOUT};
use super::resp::Push;
use super::stats::ClusterCounters;
use super::subscription::Subscription;
use crate::stats::bump;

/// How often the Sentinels are asked for the master, announcements or not.
const POLL: Duration = Duration::from_secs(1);
const SWITCH_MASTER: &[u8] = b"+switch-master";

/// Follows the master the Sentinels name until the node stops; returns at once for a single
/// Redis.
pub(super) async fn follow_failovers(
    endpoint: &Endpoint,
    counters: Arc<ClusterCounters>,
    stopped: watch::Receiver<bool>,
) {
    let Some(sentinel) = endpoint.sentinel() else { return };
    let sentinels = &sentinel.target.sentinels;
    let master = sentinel.target.master.as_str();
    let auth = sentinel.sentinel_auth();
    // Not the Redis connections' counters: a Sentinel reconnection is no Redis reconnection.
    let unreachable = "cannot reach any Sentinel to follow failovers; retrying with backoff";
    let mut reconnect = Reconnector::new(unreachable, Arc::default(), stopped);
    let mut next = 0;
    loop {
        let connected = reconnect
            .connect_until_up(|| {
                let (host, port) = sentinels[next % sentinels.len()].clone();
                next += 1;
                let auth = auth.clone();
                async move {
                    let mut announcements = open_subscription(&host, port, &auth).await?;
                    announcements.send(&[b"SUBSCRIBE", SWITCH_MASTER]).await?;
                    let info = ConnectionAddr::Tcp(host.clone(), port)
                        .into_connection_info()?
                        .set_redis_settings(super::connect::redis_settings(&auth, 0));
                    let questions = redis::Client::open(info)?.get_multiplexed_async_connection().await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
                        announcements,
                        questions,
                        format!("{host}:{port}"),
                    ))
                }
            })
            .await;
        let Some((mut announcements, mut questions, address)) = connected else { return };
        reconnect.up();
        tracing::info!(sentinel = %address, master, "following the master through a Sentinel");
        let mut poll = tokio::time::interval(POLL);
        let broken = loop {
            match switched_to(&mut announcements, master) {
                Ok(Some((host, port))) => follow(endpoint, &counters, &host, port),
                Ok(None) => {}
                Err(e) => break e.to_string(),
            }
            tokio::select! {
                read = announcements.fill() => if let Err(e) = read {
                    break e.to_string();
                },
                _ = poll.tick() => {
                    let question = redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).clone();
                    let answer = tokio::time::timeout(RESPONSE_TIMEOUT, question.query_async::<Option<(String, String)>>(&mut questions)).await;
                    match answer {
                        Ok(Ok(Some((host, port)))) => match port.parse() {
                            Ok(port) => follow(endpoint, &counters, &host, port),
                            Err(_) => break format!("the Sentinel named the port `{port}`"),
                        },
                        Ok(Ok(None)) => break format!("the Sentinel knows no master named `{master}`"),
                        Ok(Err(e)) => break e.to_string(),
                        Err(_) => break "the Sentinel did not answer in time".into(),
                    }
                }
                _ = reconnect.stopped().changed() => return,
            }
        };
        tracing::warn!(sentinel = %address, error = %broken, "lost the Sentinel; trying the next one");
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

/// The newest `+switch-master` of `master` among the announcements received so far, as the
/// new master's address.
fn switched_to(announcements: &mut Subscription, master: &str) -> std::io::Result<Option<(String, u16)>> {
    let mut newest = None;
    loop {
        let push =
            announcements.next().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        match push {
            None => return Ok(newest),
            Some(Push::Message { channel: SWITCH_MASTER, payload }) => {
                if let Some(address) = parse_switch(payload, master) {
                    newest = Some(address);
                }
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
    fn a_switch_names_the_new_master_of_the_right_name() {
        let payload = b"mymaster 10.0.0.1 6379 10.0.0.2 6380";
        assert_eq!(parse_switch(payload, "mymaster"), Some(("10.0.0.2".into(), 6380)));
        assert_eq!(parse_switch(payload, "other"), None);
        assert_eq!(parse_switch(b"mymaster 10.0.0.1 6379 10.0.0.2 port", "mymaster"), None);
        assert_eq!(parse_switch(b"mymaster 10.0.0.2 6380", "mymaster"), None);
        assert_eq!(parse_switch(b"\xff", "mymaster"), None);
    }
}
