//! Staying connected to Redis: the timeouts every connection keeps, and the one
//! reconnect-with-backoff loop they all use. Where to connect is the
//! [`Endpoint`](super::endpoint::Endpoint)'s business.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::stats::ClusterCounters;
use crate::stats::bump;

/// A Redis that answers nothing for this long is taken as gone.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Both connections ping this often when idle, to notice a silent broken connection.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub(super) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "Redis did not answer in time")
}

/// Getting one of the backplane's connections up, again and again: jittered backoff between
/// attempts, an outage logged once, reconnections counted, every wait cut short when the
/// node stops.
pub(super) struct Reconnector {
    backoff: Backoff,
    stopped: watch::Receiver<bool>,
    counters: Arc<ClusterCounters>,
    /// Logged when an attempt fails, once per outage.
    unreachable: &'static str,
    ever_connected: bool,
    logged_down: bool,
}

impl Reconnector {
    pub fn new(
        unreachable: &'static str,
        counters: Arc<ClusterCounters>,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        Self {
            backoff: Backoff::new(),
            stopped,
            counters,
            unreachable,
            ever_connected: false,
            logged_down: false,
        }
    }

    /// Calls `connect` until it succeeds, backing off after each failure. `None` when the
    /// node stops first.
    ///
    /// A connection may need more than `connect` before it is of use (the subscriber's
    /// subscriptions): the caller says when with [`Reconnector::up`].
    pub async fn connect_until_up<C, E: Display, F: Future<Output = Result<C, E>>>(
        &mut self,
        mut connect: impl FnMut() -> F,
    ) -> Option<C> {
        loop {
            let attempt = tokio::select! {
                attempt = connect() => attempt,
                _ = self.stopped.changed() => return None,
            };
            match attempt {
                Ok(connection) => return Some(connection),
                Err(e) => {
                    if !self.logged_down {
                        tracing::warn!(error = %e, "{}", self.unreachable);
                        self.logged_down = true;
                    }
                    if self.pause().await {
                        return None;
                    }
                }
            }
        }
    }

    /// The connection is of use: a later one counts as a reconnection, and the next outage
    /// is logged and backs off from the shortest delay again.
    pub fn up(&mut self) {
        if self.ever_connected {
            bump(&self.counters.reconnects, 1);
        }
        self.ever_connected = true;
        self.logged_down = false;
        self.backoff.reset();
    }

    /// Waits the next backoff delay; true (at once) when the node is stopping.
    pub async fn pause(&mut self) -> bool {
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => *self.stopped.borrow(),
            _ = self.stopped.changed() => true,
        }
    }

    /// Changes when the node stops.
    pub fn stopped(&mut self) -> &mut watch::Receiver<bool> {
        &mut self.stopped
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let mut base = BACKOFF_MIN;
        let mut previous = Duration::ZERO;
        let mut jitters = HashSet::new();
        for _ in 0..20 {
            let delay = backoff.next_delay();
            // Jittered between half the base and the base itself.
            assert!(delay >= base / 2 && delay < base, "{delay:?} for a base of {base:?}");
            if base < BACKOFF_MAX {
                // The base doubles while jitter stays under 2x, so delays grow every time.
                assert!(delay > previous, "{delay:?} after {previous:?}");
            }
            jitters.insert(delay.as_nanos() * 1000 / base.as_nanos());
            previous = delay;
            base = (base * 2).min(BACKOFF_MAX);
        }
        assert!(previous < BACKOFF_MAX, "capped");
        assert!(jitters.len() > 5, "jittered: {jitters:?}");
        backoff.reset();
        let delay = backoff.next_delay();
        assert!(delay >= BACKOFF_MIN / 2 && delay < BACKOFF_MIN, "reset: {delay:?}");
    }

    fn block_on<T>(future: impl Future<Output = T>) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(future)
    }

    #[test]
    fn retries_until_up_and_counts_reconnections() {
        block_on(async {
            let counters = Arc::new(ClusterCounters::default());
            let (_stop, stopped) = watch::channel(false);
            let mut reconnect = Reconnector::new("unreachable", counters.clone(), stopped);
            let mut attempts = 0;
            let connected = reconnect
                .connect_until_up(|| {
                    attempts += 1;
                    let result = if attempts < 3 { Err("refused") } else { Ok(attempts) };
                    async move { result }
                })
                .await;
            assert_eq!(connected, Some(3));
            assert!(reconnect.backoff.next > BACKOFF_MIN);
            reconnect.up();
            assert_eq!(counters.reconnects.load(Relaxed), 0, "the first connection is no reconnection");
            assert_eq!(reconnect.backoff.next, BACKOFF_MIN, "backoff reset");

            assert!(reconnect.connect_until_up(|| async { Ok::<_, &str>(()) }).await.is_some());
            reconnect.up();
            assert_eq!(counters.reconnects.load(Relaxed), 1);
        });
    }

    #[test]
    fn stopping_ends_the_attempts() {
        block_on(async {
            let (stop, stopped) = watch::channel(false);
            let mut reconnect = Reconnector::new("unreachable", Arc::default(), stopped);
            stop.send(true).unwrap();
            let attempt = reconnect.connect_until_up(|| async { Err::<(), _>("refused") });
            assert_eq!(attempt.await, None);
            assert!(reconnect.pause().await);
        });
    }
}
