//! Where the backplane connects: one Redis (`redis://`, `rediss://`), or whichever server a
//! set of Sentinels names master at the time of each connection (`redis+sentinel://`,
//! `rediss+sentinel://`), checked with `ROLE` so that no connection is ever made to a demoted
//! master. Also what a failover changes for every connection: the master moved (reconnect),
//! or a replica is being promoted (writes wait).
//!
//! The master is found here rather than with the `redis` crate's Sentinel client: that client
//! takes no CA of the user's for its connections to the Sentinels and the master, and the
//! subscriber needs the master's address for a connection of its own.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, Value,
};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::connect::{timed_out, RESPONSE_TIMEOUT};
use super::redis_tls::RedisTls;
use super::redis_url::{self, ClusterTarget, RedisTarget, SentinelTarget};
use super::resp::Push;
use super::subscription::Subscription;
use super::ClusterConfig;
use crate::Error;

/// Where the backplane connects, from the configured URL.
pub(super) struct Endpoint {
    target: Target,
    /// `Some` for `rediss://` and `rediss+sentinel://`: every connection is encrypted.
    tls: Option<RedisTls>,
    /// Bumped when the master changed (a Sentinel failover): every connection to the old one
    /// is replaced. Never bumped for a single Redis.
    master_changes: watch::Sender<u64>,
    /// Until when writes wait: a Sentinel is promoting a replica, and what the old master
    /// takes from now on would not be on the new one. Cleared when the master changed.
    writes_paused: watch::Sender<Option<tokio::time::Instant>>,
}

enum Target {
    Single {
        info: ConnectionInfo,
        host: String,
        port: u16,
        auth: Auth,
    },
    Sentinel(SentinelEndpoint),
    /// A Redis Cluster: connections go to the master of each slot (`topology`), not here.
    Cluster(ClusterTarget),
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
    /// The Sentinel asked first: the one that answered last.
    first: AtomicUsize,
    /// The master the Sentinels named when last asked by the watcher (or, before it first
    /// asked, by the first connection): the watcher alone moves it, so a connection that
    /// found the new master first does not hide the move from the others.
    announced: Mutex<Option<(String, u16)>>,
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
    /// [`Error::InvalidConfig`] for a URL that names no Redis, one reached other than over
    /// TCP (the subscriber speaks RESP over TCP itself), or a `redis_tls_ca` that cannot be
    /// read.
    pub fn of(config: &ClusterConfig) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidConfig { setting: "redis", reason };
        let (target, tls) = match redis_url::parse(&config.redis_url).map_err(invalid)? {
            RedisTarget::Single(url) => {
                let info = url.as_str().into_connection_info().map_err(|e| invalid(e.to_string()))?;
                let (host, port, tls) = match info.addr() {
                    ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
                    ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
                    _ => {
                        return Err(invalid(
                            "cluster mode connects to Redis over TCP: use a redis://host:port URL".into(),
                        ))
                    }
                };
                let settings = info.redis_settings();
                let auth = Auth {
                    username: settings.username().map(str::to_owned),
                    password: settings.password().map(str::to_owned),
                };
                (Target::Single { info, host, port, auth }, tls)
            }
            RedisTarget::Cluster(target) => {
                let tls = target.tls;
                (Target::Cluster(target), tls)
            }
            RedisTarget::Sentinel(target) => {
                let tls = target.tls;
                (
                    Target::Sentinel(SentinelEndpoint {
                        target,
                        first: AtomicUsize::new(0),
                        announced: Mutex::default(),
                    }),
                    tls,
                )
            }
        };
        let tls = match tls {
            true => Some(
                RedisTls::new(config.tls_ca.as_deref())
                    .map_err(|reason| Error::InvalidConfig { setting: "redis_tls_ca", reason })?,
            ),
            false => None,
        };
        Ok(Endpoint {
            target,
            tls,
            master_changes: watch::channel(0).0,
            writes_paused: watch::channel(None).0,
        })
    }

    /// The Sentinel set, if the master is found through one.
    pub fn sentinel(&self) -> Option<&SentinelEndpoint> {
        match &self.target {
            Target::Sentinel(sentinel) => Some(sentinel),
            Target::Single { .. } | Target::Cluster(_) => None,
        }
    }

    /// The Redis Cluster, if the URL names one.
    pub fn cluster(&self) -> Option<&ClusterTarget> {
        match &self.target {
            Target::Cluster(cluster) => Some(cluster),
            Target::Single { .. } | Target::Sentinel(_) => None,
        }
    }

    /// A cluster node's credentials (every node shares them).
    pub fn node_auth(&self) -> Auth {
        match &self.target {
            Target::Cluster(cluster) => {
                Auth { username: cluster.username.clone(), password: cluster.password.clone() }
            }
            Target::Single { auth, .. } => auth.clone(),
            Target::Sentinel(sentinel) => Auth {
                username: sentinel.target.username.clone(),
                password: sentinel.target.password.clone(),
            },
        }
    }

    /// A connection to the cluster node at `host:port` (authenticated, encrypted for
    /// `rediss+cluster`), with the same timeouts as every other.
    pub async fn node_connection(&self, host: &str, port: u16) -> redis::RedisResult<MultiplexedConnection> {
        let client = self.client(host, port, redis_settings(&self.node_auth(), 0))?;
        let config = timeouts();
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        tokio::time::timeout(RESPONSE_TIMEOUT, connect).await.map_err(|_| timed_out())?
    }

    /// Changes when the master changed: a connection opened before should be replaced.
    pub fn master_changes(&self) -> watch::Receiver<u64> {
        self.master_changes.subscribe()
    }

    /// A Sentinel is about to promote a replica of the master: writes wait (at most
    /// `for_at_most`) until the node follows the new master, so the old one takes none the
    /// new one lacks.
    pub fn pause_writes(&self, for_at_most: Duration) {
        let until = tokio::time::Instant::now() + for_at_most;
        self.writes_paused.send_modify(|paused| *paused = Some(until));
    }

    /// Until when writes wait, if they do.
    pub fn writes_paused_until(&self) -> Option<tokio::time::Instant> {
        (*self.writes_paused.borrow()).filter(|until| *until > tokio::time::Instant::now())
    }

    /// The Sentinels name `host:port` master now: if they named another before, every
    /// connection is told to reconnect. Returns whether they were.
    pub fn follow_master(&self, host: &str, port: u16) -> bool {
        let Some(sentinel) = self.sentinel() else { return false };
        let mut current = sentinel.announced.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*current {
            Some((h, p)) if (h.as_str(), *p) != (host, port) => {
                tracing::warn!(from = %format!("{h}:{p}"), to = %format!("{host}:{port}"), master = %sentinel.target.master,
                    "the Sentinels moved the master; reconnecting to the new one");
                *current = Some((host.to_owned(), port));
                self.writes_paused.send_modify(|paused| *paused = None);
                self.master_changes.send_modify(|changes| *changes += 1);
                true
            }
            Some(_) => false,
            None => {
                *current = Some((host.to_owned(), port));
                false
            }
        }
    }

    /// A connection for the publisher (the redis crate authenticates it).
    pub async fn publisher(&self) -> redis::RedisResult<MultiplexedConnection> {
        let master =
            tokio::time::timeout(RESPONSE_TIMEOUT, self.master()).await.map_err(|_| timed_out())??;
        master.client.get_multiplexed_async_connection_with_config(&timeouts()).await
    }

    /// A connection for the subscriber, authenticated when the URL has a password.
    pub async fn subscriber(&self) -> io::Result<Subscription> {
        let open = async {
            let master = self.master().await.map_err(io::Error::other)?;
            self.open_subscription(&master.host, master.port, &master.auth).await
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, open).await.map_err(|_| timed_out())?
    }

    /// A raw RESP connection to `host:port` (encrypted for `rediss`), authenticated with
    /// `auth`: a subscriber's, or a Sentinel listener's.
    pub async fn open_subscription(&self, host: &str, port: u16, auth: &Auth) -> io::Result<Subscription> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = match &self.tls {
            Some(tls) => Subscription::over_tls(tls.wrap(host, stream).await?),
            None => Subscription::new(stream),
        };
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

    /// A connection to the Sentinel at `host:port`, for questions.
    pub async fn ask_sentinel_connection(
        &self,
        host: &str,
        port: u16,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let auth = self.sentinel().map(SentinelEndpoint::sentinel_auth).unwrap_or_default();
        let client = self.client(host, port, redis_settings(&auth, 0))?;
        client.get_multiplexed_async_connection_with_config(&timeouts()).await
    }

    /// A `redis` crate client for `host:port`, encrypted for `rediss`.
    fn client(
        &self,
        host: &str,
        port: u16,
        settings: RedisConnectionInfo,
    ) -> redis::RedisResult<redis::Client> {
        let addr = match self.tls {
            Some(_) => {
                ConnectionAddr::TcpTls { host: host.to_owned(), port, insecure: false, tls_params: None }
            }
            None => ConnectionAddr::Tcp(host.to_owned(), port),
        };
        let info = addr.into_connection_info()?.set_redis_settings(settings);
        match &self.tls {
            Some(tls) => tls.client(info),
            None => redis::Client::open(info),
        }
    }

    async fn master(&self) -> redis::RedisResult<Master> {
        match &self.target {
            Target::Single { info, host, port, auth } => {
                let client = self.client(host, *port, info.redis_settings().clone())?;
                Ok(Master { client, host: host.clone(), port: *port, auth: auth.clone() })
            }
            Target::Sentinel(sentinel) => self.master_of(sentinel).await,
            Target::Cluster(_) => {
                Err(client_error("a Redis Cluster has a master per slot, not one master".into()))
            }
        }
    }

    /// Asks the Sentinels in turn (the last to answer first) for the master, and checks with
    /// `ROLE` that the server named is master.
    async fn master_of(&self, sentinel: &SentinelEndpoint) -> redis::RedisResult<Master> {
        let target = &sentinel.target;
        let first = sentinel.first.load(Relaxed);
        let mut failure = None;
        for i in 0..target.sentinels.len() {
            let k = (first + i) % target.sentinels.len();
            let (host, port) = &target.sentinels[k];
            let answer = match self.ask_sentinel_connection(host, *port).await {
                Ok(mut connection) => master_named(&mut connection, &target.master).await,
                Err(e) => Err(e),
            };
            let (master_host, master_port) = match answer {
                Ok(Some(address)) => address,
                Ok(None) => {
                    failure = Some(client_error(format!(
                        "the Sentinel {host}:{port} knows no master named `{}`",
                        target.master
                    )));
                    continue;
                }
                Err(e) => {
                    failure = Some(e);
                    continue;
                }
            };
            sentinel.first.store(k, Relaxed);
            let auth = Auth { username: target.username.clone(), password: target.password.clone() };
            let client = self.client(&master_host, master_port, redis_settings(&auth, target.db))?;
            let mut connection = client.get_multiplexed_async_connection_with_config(&timeouts()).await?;
            let role: Value = redis::cmd("ROLE").query_async(&mut connection).await?;
            if !is_master(&role) {
                return Err(client_error(format!(
                    "the Sentinels name {master_host}:{master_port} master, but it is not (a failover is under way)"
                )));
            }
            sentinel
                .announced
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get_or_insert_with(|| (master_host.clone(), master_port));
            return Ok(Master { client, host: master_host, port: master_port, auth });
        }
        Err(failure.unwrap_or_else(|| client_error("no Sentinel to ask".into())))
    }
}

impl SentinelEndpoint {
    /// The Sentinels' credentials.
    pub fn sentinel_auth(&self) -> Auth {
        Auth {
            username: self.target.sentinel_username.clone(),
            password: self.target.sentinel_password.clone(),
        }
    }
}

/// `SENTINEL get-master-addr-by-name`: the master's address, `None` if the Sentinel knows no
/// master of that name.
pub(super) async fn master_named(
    connection: &mut MultiplexedConnection,
    master: &str,
) -> redis::RedisResult<Option<(String, u16)>> {
    let question = redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).clone();
    let answer: Option<(String, String)> = question.query_async(connection).await?;
    answer
        .map(|(host, port)| match port.parse() {
            Ok(port) => Ok((host, port)),
            Err(_) => Err(client_error(format!("the Sentinel named the port `{port}`"))),
        })
        .transpose()
}

/// Whether a `ROLE` answer says master.
fn is_master(role: &Value) -> bool {
    match role {
        Value::Array(items) => match items.first() {
            Some(Value::BulkString(role)) => role == b"master",
            Some(Value::SimpleString(role)) => role == "master",
            _ => false,
        },
        _ => false,
    }
}

fn client_error(reason: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, "Sentinel", reason))
}

fn timeouts() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

fn redis_settings(auth: &Auth, db: i64) -> RedisConnectionInfo {
    let mut settings = RedisConnectionInfo::default().set_db(db);
    if let Some(username) = &auth.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &auth.password {
        settings = settings.set_password(password);
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_master_role_is_master() {
        let role = |first: Value| Value::Array(vec![first, Value::Int(0)]);
        assert!(is_master(&role(Value::BulkString(b"master".to_vec()))));
        assert!(is_master(&role(Value::SimpleString("master".into()))));
        assert!(!is_master(&role(Value::BulkString(b"slave".to_vec()))));
        assert!(!is_master(&role(Value::BulkString(b"sentinel".to_vec()))));
        assert!(!is_master(&Value::Nil));
        assert!(!is_master(&Value::Array(vec![])));
    }
}
