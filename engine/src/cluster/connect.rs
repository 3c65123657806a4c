//! Reaching Redis: where it is (one server, or the master a set of Sentinels names), opening
//! the publisher's and the subscriber's connections (with AUTH), and the reconnect loop they
//! share.

use std::fmt::Display;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::redis_url::{self, RedisTarget, SentinelTarget};
use super::resp::Push;
use super::stats::ClusterCounters;
use super::subscription::Subscription;
use super::ClusterConfig;
use crate::stats::bump;
use crate::Error;

/// A Redis that answers nothing for this long is taken as gone.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Both connections ping this often when idle, to notice a silent broken connection.
pub(super) const KEEPALIVE: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the backplane connects, from the configured URL: one Redis, or whichever server a
/// set of Sentinels names master at the time of each connection.
pub(super) struct Endpoint {
    target: Target,
    /// Bumped when the master changed (a Sentinel failover): every connection to the old one
    /// is replaced. Never bumped for a single Redis.
    master_changes: watch::Sender<u64>,
    /// Until when writes wait: a Sentinel is promoting a replica, and what the old master
    /// takes from now on would not be on the new one. Cleared when the master changed.
    writes_paused: watch::Sender<Option<tokio::time::Instant>>,
}

// One per node, built once: the size of the larger variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single { client: redis::Client, host: String, port: u16, auth: Auth },
    Sentinel(SentinelEndpoint),
}

/// The credentials a connection authenticates with, if any.
#[derive(Clone, Default)]
pub(super) struct Auth {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A master found through Sentinels.
pub(super) struct SentinelEndpoint {
    pub target: SentinelTarget,
    /// The `redis` crate's Sentinel client: it asks the Sentinels for the master and checks
    /// with `ROLE` that the server named really is master, so no connection is ever made to
    /// a demoted one. Locked across its awaits: the backplane's connections resolve in turn.
    resolver: tokio::sync::Mutex<Sentinel>,
    node: SentinelNodeConnectionInfo,
    /// The master the node's connections were last opened to.
    current: std::sync::Mutex<Option<(String, u16)>>,
}

/// The server to connect to now.
struct Master {
    client: redis::Client,
    host: String,
    port: u16,
    auth: Auth,
}

impl Endpoint {
    /// The Redis (or Sentinel set) of `config`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a URL that names no Redis, or one reached other than over
    /// plain TCP: the subscriber speaks RESP over TCP itself.
    pub fn of(config: &ClusterConfig) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidConfig { setting: "redis", reason };
        let target = match redis_url::parse(&config.redis_url).map_err(invalid)? {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| invalid(e.to_string()))?;
                let info = client.get_connection_info();
                let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
                    return Err(invalid(
                        "cluster mode connects to Redis over TCP: use a redis://host:port URL".into(),
                    ));
                };
                let (host, port) = (host.clone(), *port);
                let settings = info.redis_settings();
                let auth = Auth {
                    username: settings.username().map(str::to_owned),
                    password: settings.password().map(str::to_owned),
                };
                Target::Single { client, host, port, auth }
            }
            RedisTarget::Sentinel(target) => {
                Target::Sentinel(SentinelEndpoint::new(target).map_err(invalid)?)
            }
        };
        Ok(Endpoint { target, master_changes: watch::channel(0).0, writes_paused: watch::channel(None).0 })
    }

    /// The Sentinel set, if the master is found through one.
    pub fn sentinel(&self) -> Option<&SentinelEndpoint> {
        match &self.target {
            Target::Sentinel(sentinel) => Some(sentinel),
            Target::Single { .. } => None,
        }
    }

    /// Changes when the master changed: a connection opened before should be replaced.
    pub fn master_changes(&self) -> watch::Receiver<u64> {
        self.master_changes.subscribe()
    }

    /// A Sentinel is about to promote a replica of the master: writes wait (at most `for_at_most`)
    /// until the node follows the new master, so the old one takes none the new one lacks.
    pub fn pause_writes(&self, for_at_most: Duration) {
        let until = tokio::time::Instant::now() + for_at_most;
        self.writes_paused.send_modify(|paused| *paused = Some(until));
    }

    /// Until when writes wait, if they do.
    pub fn writes_paused_until(&self) -> Option<tokio::time::Instant> {
        (*self.writes_paused.borrow()).filter(|until| *until > tokio::time::Instant::now())
    }

    /// The Sentinels name `host:port` master now: if the node's connections use another,
    /// they are told to reconnect. Returns whether they were.
    pub fn follow_master(&self, host: &str, port: u16) -> bool {
        let Some(sentinel) = self.sentinel() else { return false };
        let mut current = sentinel.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*current {
            Some((h, p)) if (h.as_str(), *p) != (host, port) => {
                tracing::warn!(from = %format!("{h}:{p}"), to = %format!("{host}:{port}"), master = %sentinel.target.master,
                    "the Sentinels moved the master; reconnecting to the new one");
                *current = Some((host.to_owned(), port));
                self.writes_paused.send_modify(|paused| *paused = None);
                self.master_changes.send_modify(|changes| *changes += 1);
                true
            }
            _ => false,
        }
    }

    async fn master(&self) -> redis::RedisResult<Master> {
        match &self.target {
            Target::Single { client, host, port, auth } => {
                Ok(Master { client: client.clone(), host: host.clone(), port: *port, auth: auth.clone() })
            }
            Target::Sentinel(sentinel) => sentinel.master().await,
        }
    }

    /// A connection for the publisher (the redis crate authenticates it).
    pub async fn publisher(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let master =
            tokio::time::timeout(RESPONSE_TIMEOUT, self.master()).await.map_err(|_| timed_out())??;
        master.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// A connection for the subscriber, authenticated when the URL has a password.
    pub async fn subscriber(&self) -> io::Result<Subscription> {
        tokio::time::timeout(RESPONSE_TIMEOUT, self.open_subscriber()).await.map_err(|_| timed_out())?
    }

    async fn open_subscriber(&self) -> io::Result<Subscription> {
        let master = self.master().await.map_err(io::Error::other)?;
        open_subscription(&master.host, master.port, &master.auth).await
    }
}

impl SentinelEndpoint {
    fn new(target: SentinelTarget) -> Result<Self, String> {
        let sentinel_auth =
            Auth { username: target.sentinel_username.clone(), password: target.sentinel_password.clone() };
        let sentinels: Vec<ConnectionInfo> = target
            .sentinels
            .iter()
            .map(|(host, port)| {
                ConnectionAddr::Tcp(host.clone(), *port)
                    .into_connection_info()
                    .map(|info| info.set_redis_settings(redis_settings(&sentinel_auth, 0)))
            })
            .collect::<redis::RedisResult<_>>()
            .map_err(|e| e.to_string())?;
        let resolver = Sentinel::build(sentinels).map_err(|e| e.to_string())?;
        let auth = Auth { username: target.username.clone(), password: target.password.clone() };
        let node =
            SentinelNodeConnectionInfo::default().set_redis_connection_info(redis_settings(&auth, target.db));
        Ok(SentinelEndpoint {
            target,
            resolver: tokio::sync::Mutex::new(resolver),
            node,
            current: Default::default(),
        })
    }

    /// The Sentinels' credentials.
    pub fn sentinel_auth(&self) -> Auth {
        Auth {
            username: self.target.sentinel_username.clone(),
            password: self.target.sentinel_password.clone(),
        }
    }

    async fn master(&self) -> redis::RedisResult<Master> {
        let client =
            self.resolver.lock().await.async_master_for(&self.target.master, Some(&self.node)).await?;
        let info = client.get_connection_info();
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the Sentinels named a master not reached over TCP",
            )));
        };
        let (host, port) = (host.clone(), *port);
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((host.clone(), port));
        let auth = Auth { username: self.target.username.clone(), password: self.target.password.clone() };
        Ok(Master { client, host, port, auth })
    }
}

pub(super) fn redis_settings(auth: &Auth, db: i64) -> RedisConnectionInfo {
    let mut settings = RedisConnectionInfo::default().set_db(db);
    if let Some(username) = &auth.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &auth.password {
        settings = settings.set_password(password);
    }
    settings
}

/// A raw RESP connection to `host:port`, authenticated with `auth` (a subscriber's, or the
/// Sentinel watcher's).
pub(super) async fn open_subscription(host: &str, port: u16, auth: &Auth) -> io::Result<Subscription> {
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let mut conn = Subscription::new(stream);
    if let Some(password) = &auth.password {
        match &auth.username {
            Some(user) => conn.send(&[b"AUTH", user.as_bytes(), password.as_bytes()]).await?,
            None => conn.send(&[b"AUTH", password.as_bytes()]).await?,
        }
        loop {
            match conn.next().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
                Some(Push::Ok) => break,
                Some(Push::Error(e)) => {
                    let reason = String::from_utf8_lossy(e).into_owned();
                    return Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
                }
                Some(_) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected answer to AUTH"))
                }
                None => conn.fill().await?,
            }
        }
    }
    Ok(conn)
}

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
