//! Engine settings and their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::origin::AllowedOrigins;
use crate::tls::CertificateFiles;
use crate::{ClusterConfig, Error, JwtAuth};

/// What to do with a socket whose queued output would exceed [`Config::max_buffered_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Close the socket with code 1008 (policy violation) and count it. The default: a
    /// client that cannot keep up learns it, instead of silently missing messages.
    #[default]
    Disconnect,
    /// Drop the newest message for that socket and count it; the socket stays open.
    Drop,
}

impl std::str::FromStr for SlowConsumerPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disconnect" => Ok(Self::Disconnect),
            "drop" => Ok(Self::Drop),
            other => Err(format!("expected `disconnect` or `drop`, got `{other}`")),
        }
    }
}

/// Everything [`Engine::start`](crate::Engine::start) needs. Start from
/// [`Config::default()`] and change what you need.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to accept WebSocket connections. `None` runs no listener: sockets arrive only
    /// through [`Engine::register`](crate::Engine::register). Port 0 picks a free port;
    /// [`Engine::local_addr`](crate::Engine::local_addr) tells which.
    pub ws_listen: Option<SocketAddr>,
    /// Number of worker threads; 0 means one per CPU.
    pub workers: usize,
    /// Path prefix of the upgrade URL; a client connects to `{path_prefix}{id}`.
    /// Must start and end with `/`.
    pub path_prefix: String,
    /// Largest inbound message (after reassembling fragments); larger ones close the
    /// socket with 1009.
    pub max_message_size: usize,
    /// Largest message the node pushes: through [`Engine::send`](crate::Engine::send) and
    /// the other sends (larger: [`Error::MessageTooLarge`]), and from Redis in cluster mode
    /// (larger: dropped and counted in
    /// [`ClusterStats::oversized_dropped`](crate::ClusterStats::oversized_dropped)), so that
    /// no client is closed for a message it did not ask for. `None` (the default): the same
    /// as [`Config::max_message_size`]; set it apart when pushes are larger than what
    /// clients may send.
    pub max_outbound_message_size: Option<usize>,
    /// Largest amount of output queued for one socket before [`Config::slow_consumer`]
    /// applies.
    pub max_buffered_bytes: usize,
    /// What happens to a socket over [`Config::max_buffered_bytes`].
    pub slow_consumer: SlowConsumerPolicy,
    /// Largest amount of output queued for all sockets of the node together. Over it, the
    /// sockets that have been unable to take output the longest (write-blocked since the
    /// earliest time) are closed with 1008 first, until the rest fits. Must be at least
    /// [`Config::max_buffered_bytes`]. `None` (the default): unlimited.
    pub max_node_buffered_bytes: Option<usize>,
    /// Most frames one socket may send per second, as a token bucket holding one second's
    /// worth (a burst of this many frames is allowed, then this many per second). Every data
    /// frame counts (a fragmented message once per fragment), and so do pings and pongs; the
    /// close frame does not. Over it the socket is closed with 1008. `None` (the default):
    /// unlimited.
    pub max_inbound_messages_per_second: Option<u32>,
    /// Most bytes one socket may send per second (as received: frame headers included), as
    /// a token bucket holding one second's worth. Over it the socket is closed with 1008.
    /// A single message larger than this can never be sent. `None` (the default): unlimited.
    pub max_inbound_bytes_per_second: Option<u64>,
    /// How often each socket is pinged. `Duration::ZERO` disables pings.
    pub ping_interval: Duration,
    /// A socket that sent nothing (not even a pong) for this long is closed with 1001.
    /// `Duration::ZERO` disables the check.
    pub idle_timeout: Duration,
    /// Most simultaneous connections; further upgrades get 503. `None`: unlimited.
    pub max_connections: Option<usize>,
    /// Time a client has to complete its upgrade request (defends against slowloris).
    pub handshake_timeout: Duration,
    /// Largest upgrade request head, in bytes; larger requests get 431.
    pub max_header_bytes: usize,
    /// Most header lines in an upgrade request; more get 431.
    pub max_headers: usize,
    /// Capacity of each worker's command queue. When full, `send` fails with
    /// [`Error::QueueFull`] rather than block or grow without bound.
    pub command_queue_capacity: usize,
    /// Send every inbound message back to the socket that sent it (conformance testing).
    pub echo: bool,
    /// Accept permessage-deflate (RFC 7692) from clients that offer it (every browser
    /// does): a message of at least [`Config::compression_threshold`] bytes is then sent
    /// compressed, compressed once for all the sockets that negotiated the same window, and
    /// compressed client messages are inflated up to [`Config::max_message_size`] (beyond:
    /// 1009, counted in `inflated_too_big`). Off by default: it costs CPU per message, and
    /// compressing a secret together with text an attacker chooses can leak the secret
    /// through the compressed size (CRIME, BREACH); turn it on where pushes are large text
    /// and bandwidth matters more. No socket keeps a compression context between messages
    /// (both `no_context_takeover` parameters are always answered), so a compressing
    /// connection costs no more memory than a plain one.
    pub compression: bool,
    /// With [`Config::compression`]: messages smaller than this many bytes go uncompressed
    /// (deflating a short message costs more CPU than the bytes it saves, and often makes
    /// it longer).
    pub compression_threshold: usize,
    /// With [`Config::compression`]: the deflate level, 1 (fastest) to 9 (smallest).
    /// Level 1 is zlib-rs's quick deflate, with fixed Huffman codes only: on a 1 KiB JSON
    /// message it saves about a fifth where level 2 saves over a third (see BENCHMARKS.md);
    /// higher levels cost more CPU per message. A message is deflated once per worker for
    /// all its sockets, so the level's cost matters most for messages to one socket.
    pub compression_level: u32,
    /// Cluster mode over Redis; `None` runs a single node, with no backplane.
    pub cluster: Option<ClusterConfig>,

    // Who may connect (see SECURITY.md). The checks run in this order, each answering
    // before the upgrade: `allowed_origins` (403), `auth` (401), the host's authorizer
    // (403), `max_connections_per_ip` (429), `max_connections` (503).
    /// Require a valid JSON Web Token whose `sub` is the id connected as; `None` (the
    /// default) lets anyone who reaches the port connect as any id, which suits only a
    /// private network or development.
    pub auth: Option<JwtAuth>,
    /// Browser pages allowed to connect, as origins `scheme://host[:port]` (e.g.
    /// `https://app.example.com`); an upgrade with another `Origin` gets 403. Requests
    /// without an `Origin` header (non-browser clients) are allowed: they could send any
    /// Origin they like, so this protects browser users from other sites, not the server
    /// from clients. `None` (the default) allows every origin.
    pub allowed_origins: Option<Vec<String>>,
    /// Most simultaneous connections from one client address (IPv6: one /64 network);
    /// further upgrades get 429. `None` (the default): unlimited.
    pub max_connections_per_ip: Option<usize>,
    /// Messages kept per id for resume (`?since=EPOCH:OFFSET`), at most
    /// [`MAX_HISTORY_SIZE`]; 0 (the default) turns history off, and the engine behaves
    /// exactly as without it. On a single node the history is kept in memory; in cluster
    /// mode, in Redis (a stream per id).
    pub history_size: usize,
    /// How long an id's history lives after its last message (1 s to 30 days). Then it is
    /// dropped, and the id's next message starts a new epoch.
    pub history_ttl: Duration,
    /// Most memory the node's histories may hold, split evenly between the workers; over
    /// it, whole histories are dropped, the soonest to expire first. Single node only (in
    /// cluster mode Redis holds the history; changing this with `cluster` is refused).
    pub history_max_bytes: usize,
    /// `wss://` on [`Config::ws_listen`]: a PEM file of the server's certificate followed
    /// by its intermediates. Needs [`Config::tls_key`]. Read at start and again by
    /// [`Engine::reload_tls`](crate::Engine::reload_tls) (the server: on SIGHUP). `None`
    /// (the default): plain `ws://`. Sockets a host registers are never touched: the host
    /// does their TLS.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of [`Config::tls_cert`]'s first
    /// certificate.
    pub tls_key: Option<PathBuf>,
}

/// The default [`Config::history_max_bytes`]: 256 MiB.
pub const DEFAULT_HISTORY_MAX_BYTES: usize = 256 << 20;

/// The default [`Config::compression_threshold`], in bytes.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 256;

/// The default [`Config::compression_level`].
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 2;

/// The largest [`Config::history_size`].
pub const MAX_HISTORY_SIZE: usize = 1_000_000;

/// The longest [`Config::history_ttl`]: 30 days.
pub const MAX_HISTORY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for Config {
    fn default() -> Self {
        Self {
            ws_listen: None,
            workers: 0,
            path_prefix: "/websocket/".to_owned(),
            max_message_size: 1 << 20,
            max_outbound_message_size: None,
            max_buffered_bytes: 4 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            max_node_buffered_bytes: None,
            max_inbound_messages_per_second: None,
            max_inbound_bytes_per_second: None,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            max_connections: None,
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 8 * 1024,
            max_headers: 32,
            command_queue_capacity: 1 << 16,
            echo: false,
            compression: false,
            compression_threshold: DEFAULT_COMPRESSION_THRESHOLD,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            cluster: None,
            auth: None,
            allowed_origins: None,
            max_connections_per_ip: None,
            history_size: 0,
            history_ttl: Duration::from_secs(600),
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Config {
    /// Checks every setting, naming the first bad one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] with the setting's name and what is wrong with it.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |setting: &'static str, reason: String| Err(Error::InvalidConfig { setting, reason });
        if self.workers > 256 {
            return bad("workers", format!("at most 256, got {}", self.workers));
        }
        if !self.path_prefix.starts_with('/') || !self.path_prefix.ends_with('/') {
            return bad("path_prefix", format!("must start and end with `/`, got `{}`", self.path_prefix));
        }
        if !(1..=9).contains(&self.compression_level) {
            return bad("compression_level", format!("must be 1 to 9, got {}", self.compression_level));
        }
        if self.max_message_size == 0 {
            return bad("max_message_size", "must be at least 1".into());
        }
        if self.max_outbound_message_size == Some(0) {
            return bad(
                "max_outbound_message_size",
                "must be at least 1 (omit it for max_message_size)".into(),
            );
        }
        if self.max_buffered_bytes == 0 {
            return bad("max_buffered_bytes", "must be at least 1".into());
        }
        if let Some(node) = self.max_node_buffered_bytes {
            if node < self.max_buffered_bytes {
                return bad(
                    "max_node_buffered_bytes",
                    format!("must be at least max_buffered_bytes ({}), got {node}", self.max_buffered_bytes),
                );
            }
        }
        if self.max_inbound_messages_per_second == Some(0) {
            return bad(
                "max_inbound_messages_per_second",
                "must be at least 1 (omit it for unlimited)".into(),
            );
        }
        if self.max_inbound_bytes_per_second == Some(0) {
            return bad("max_inbound_bytes_per_second", "must be at least 1 (omit it for unlimited)".into());
        }
        if self.max_connections == Some(0) {
            return bad("max_connections", "must be at least 1 (omit it for unlimited)".into());
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout", "must be greater than zero".into());
        }
        if self.max_header_bytes < 256 {
            return bad("max_header_bytes", format!("at least 256, got {}", self.max_header_bytes));
        }
        if self.max_headers < 8 {
            return bad("max_headers", format!("at least 8, got {}", self.max_headers));
        }
        if self.command_queue_capacity == 0 {
            return bad("command_queue_capacity", "must be at least 1".into());
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
        }
        if let Some(origins) = &self.allowed_origins {
            if origins.is_empty() {
                return bad("allowed_origins", "must list at least one origin (omit it to allow any)".into());
            }
            if let Err(reason) = AllowedOrigins::new(origins) {
                return bad("allowed_origins", reason);
            }
        }
        if self.max_connections_per_ip == Some(0) {
            return bad("max_connections_per_ip", "must be at least 1 (omit it for unlimited)".into());
        }
        if self.history_size > MAX_HISTORY_SIZE {
            return bad("history_size", format!("at most {MAX_HISTORY_SIZE}, got {}", self.history_size));
        }
        if self.history_ttl < Duration::from_secs(1) || self.history_ttl > MAX_HISTORY_TTL {
            return bad("history_ttl", format!("must be 1s to 30 days, got {:?}", self.history_ttl));
        }
        if self.history_max_bytes == 0 {
            return bad("history_max_bytes", "must be at least 1".into());
        }
        if self.cluster.is_some() && self.history_max_bytes != DEFAULT_HISTORY_MAX_BYTES {
            return bad(
                "history_max_bytes",
                "history_max_bytes with redis: in cluster mode the history is kept in Redis (bound it \
                 with history_size and Redis's maxmemory); history_max_bytes bounds a single node's"
                    .into(),
            );
        }
        if let Some(files) = self.certificate_files()? {
            if self.ws_listen.is_none() {
                return bad(
                    "tls_cert",
                    "needs ws_listen: TLS is for the engine's own listener (a host that registers its \
                     sockets does their TLS)"
                        .into(),
                );
            }
            if let Err(e) = files.load(&crate::tls::provider()) {
                return bad(e.setting, e.reason);
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
            // A publish carries one message, grown by its encoding (an envelope, JSON, base64
            // for a client's binary message: 4/3): a queue that cannot hold one of the
            // largest would drop every such message.
            let largest = self.max_message_size.max(self.effective_max_outbound_message_size());
            if cluster.queue_bytes / 2 < largest {
                return bad(
                    "redis_queue_bytes",
                    format!(
                        "must be at least twice the largest message (max_message_size, \
                         max_outbound_message_size: {largest} bytes), got {}",
                        cluster.queue_bytes
                    ),
                );
            }
        }
        Ok(())
    }

    /// The largest message the node pushes: [`Config::max_outbound_message_size`], or
    /// [`Config::max_message_size`] when that is not set.
    pub fn effective_max_outbound_message_size(&self) -> usize {
        self.max_outbound_message_size.unwrap_or(self.max_message_size)
    }

    /// The certificate and key files, when both are set; an error when only one is.
    pub(crate) fn certificate_files(&self) -> Result<Option<CertificateFiles>, Error> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(CertificateFiles { cert: cert.clone(), key: key.clone() })),
            (Some(_), None) => {
                Err(Error::InvalidConfig { setting: "tls_key", reason: "tls_cert needs tls_key too".into() })
            }
            (None, Some(_)) => {
                Err(Error::InvalidConfig { setting: "tls_cert", reason: "tls_key needs tls_cert too".into() })
            }
        }
    }

    /// Whether history (and resume) is on: [`Config::history_size`] above 0.
    pub fn history_enabled(&self) -> bool {
        self.history_size > 0
    }

    /// The number of workers this config starts: [`Config::workers`], or the CPU count.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(config: Config) -> &'static str {
        match config.validate() {
            Err(Error::InvalidConfig { setting, .. }) => setting,
            other => panic!("expected an invalid setting, got {other:?}"),
        }
    }

    #[test]
    fn the_outbound_limit_is_max_message_size_unless_set() {
        let config = Config { max_message_size: 1000, ..Config::default() };
        assert_eq!(config.effective_max_outbound_message_size(), 1000);
        let config = Config { max_outbound_message_size: Some(5000), ..config };
        assert_eq!(config.effective_max_outbound_message_size(), 5000);
        assert!(config.validate().is_ok());
        assert_eq!(
            setting(Config { max_outbound_message_size: Some(0), ..Config::default() }),
            "max_outbound_message_size"
        );
    }

    #[test]
    fn the_compression_level_is_one_to_nine() {
        for level in [1, 2, 9] {
            assert!(Config { compression_level: level, ..Config::default() }.validate().is_ok(), "{level}");
        }
        for level in [0, 10] {
            match (Config { compression_level: level, ..Config::default() }).validate() {
                Err(Error::InvalidConfig { setting: "compression_level", reason }) => {
                    assert_eq!(reason, format!("must be 1 to 9, got {level}"))
                }
                other => panic!("{level}: {other:?}"),
            }
        }
    }

    #[test]
    fn history_settings_are_checked() {
        assert!(!Config::default().history_enabled());
        let on = Config { history_size: 100, ..Config::default() };
        assert!(on.validate().is_ok() && on.history_enabled());
        assert_eq!(
            setting(Config { history_size: MAX_HISTORY_SIZE + 1, ..Config::default() }),
            "history_size"
        );
        assert_eq!(setting(Config { history_ttl: Duration::from_millis(999), ..on.clone() }), "history_ttl");
        assert_eq!(setting(Config { history_ttl: MAX_HISTORY_TTL * 2, ..on.clone() }), "history_ttl");
        assert_eq!(setting(Config { history_max_bytes: 0, ..on.clone() }), "history_max_bytes");
        let cluster = Config { cluster: Some(ClusterConfig::new("redis://h")), ..on };
        assert!(cluster.validate().is_ok(), "history in cluster mode");
        match (Config { history_max_bytes: 1 << 20, ..cluster }).validate() {
            Err(Error::InvalidConfig { setting: "history_max_bytes", reason }) => {
                assert!(reason.starts_with(
                    "history_max_bytes with redis: in cluster mode the history is kept in Redis"
                ))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_redis_queue_holds_two_of_the_largest_messages() {
        let cluster = |queue_bytes| Some(ClusterConfig { queue_bytes, ..ClusterConfig::new("redis://h") });
        let config = Config { max_message_size: 1000, cluster: cluster(2000), ..Config::default() };
        assert!(config.validate().is_ok());
        assert_eq!(setting(Config { cluster: cluster(1999), ..config.clone() }), "redis_queue_bytes");
        let larger_pushes = Config { max_outbound_message_size: Some(1500), ..config };
        assert_eq!(setting(larger_pushes), "redis_queue_bytes");
    }
}
