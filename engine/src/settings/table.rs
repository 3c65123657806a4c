//! Every setting, declared once. The server's flags, `WSPUSH_*` variables, TOML keys and
//! `--help`, the C ABI's JSON keys (and so Java's) and README's settings table all come from
//! [`SETTINGS`]; adding a setting is one entry here (plus the engine field it sets).

use super::builder::Draft;
use super::value::{Given, RawValue};
use crate::SlowConsumerPolicy;

/// Sets a setting in the draft from its value; the error is the reason, without the name.
pub(crate) type Apply = fn(&mut Draft, &Given<'_>) -> Result<(), String>;

/// One setting: its names, its documentation and what it sets.
pub struct Setting {
    /// The key: the TOML and JSON key; the flag is `--key-with-dashes`, the variable
    /// `WSPUSH_KEY`.
    pub key: &'static str,
    /// The placeholder in `--help`: `BYTES`, `SECONDS`, `N`, `BOOL`, ...
    pub value_name: &'static str,
    /// The default, as documented (`25`, `unlimited`, `one per CPU`).
    pub default: &'static str,
    /// What the server uses when the setting is not given, where it differs from the
    /// engine's own default (the server listens on 0.0.0.0:8081, an embedded engine
    /// listens nowhere unless told).
    pub server_default: Option<&'static str>,
    /// One or two sentences for `--help` and the docs.
    pub help: &'static str,
    /// Where it belongs in `--help`.
    pub group: Group,
    /// Which front ends have it.
    pub scope: Scope,
    /// What must also be given for it to mean anything.
    pub needs: Needs,
    /// A value never shown (in errors, or `--help`'s environment values).
    pub secret: bool,
    /// Older names still accepted, in every front end.
    pub aliases: &'static [Alias],
    pub(crate) apply: Apply,
}

/// A section of `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Listeners, workers, limits.
    General,
    /// Client authentication (JWT).
    Auth,
    /// Cluster mode (Redis).
    Cluster,
}

impl Group {
    /// The heading in `--help` (`None` for the general options).
    pub fn heading(self) -> Option<&'static str> {
        match self {
            Group::General => None,
            Group::Auth => Some("Client authentication"),
            Group::Cluster => Some("Cluster mode"),
        }
    }
}

/// Which front ends have a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The server and an embedded engine (C ABI, Java).
    Everywhere,
    /// Only the standalone server (its HTTP API and logging).
    ServerOnly,
}

/// What else a setting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing.
    Nothing,
    /// `redis`: a cluster setting.
    Redis,
    /// `auth_jwt_secret` or `auth_jwt_public_key`: a refinement of the token checks.
    AuthKey,
}

/// An older name of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alias {
    /// The old name.
    pub name: &'static str,
    /// How its value relates to the setting's.
    pub meaning: AliasMeaning,
}

/// How an alias's value relates to its setting's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasMeaning {
    /// A duration in whole milliseconds (the C ABI's former `*_ms` keys).
    Millis,
    /// The opposite boolean (`no_inbound` for `publish_inbound`).
    Negated,
}

impl Setting {
    /// The flag: `--max-message-size`.
    pub fn flag(&self) -> String {
        flag_of(self.key)
    }

    /// The environment variable: `WSPUSH_MAX_MESSAGE_SIZE`.
    pub fn env(&self) -> String {
        env_of(self.key)
    }

    /// Whether `value_name` is a boolean switch (`--echo` alone means `--echo=true`).
    pub fn is_switch(&self) -> bool {
        self.value_name == "BOOL"
    }
}

/// `max_message_size` -> `--max-message-size`.
pub fn flag_of(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// `max_message_size` -> `WSPUSH_MAX_MESSAGE_SIZE`.
pub fn env_of(key: &str) -> String {
    format!("WSPUSH_{}", key.to_ascii_uppercase())
}

/// A setting with no alias, no prerequisite, in every front end, not secret.
const fn setting(
    key: &'static str,
    value_name: &'static str,
    default: &'static str,
    help: &'static str,
    apply: Apply,
) -> Setting {
    Setting {
        key,
        value_name,
        default,
        server_default: None,
        help,
        group: Group::General,
        scope: Scope::Everywhere,
        needs: Needs::Nothing,
        secret: false,
        aliases: &[],
        apply,
    }
}

impl Setting {
    const fn in_group(mut self, group: Group, needs: Needs) -> Setting {
        self.group = group;
        self.needs = needs;
        self
    }

    const fn server_only(mut self, server_default: Option<&'static str>) -> Setting {
        self.scope = Scope::ServerOnly;
        self.server_default = server_default;
        self
    }

    const fn secret(mut self) -> Setting {
        self.secret = true;
        self
    }

    const fn aliases(mut self, aliases: &'static [Alias]) -> Setting {
        self.aliases = aliases;
        self
    }
}

const fn millis(name: &'static str) -> Alias {
    Alias { name, meaning: AliasMeaning::Millis }
}

/// Every setting, in the order of `--help` and README.
pub const SETTINGS: &[Setting] = &[
    Setting {
        server_default: Some("0.0.0.0:8081"),
        ..setting(
            "ws_listen",
            "ADDR",
            "0.0.0.0:8081 (embedded: none)",
            "Address of the WebSocket listener; port 0 picks a free port. An embedded engine without it \
             listens nowhere and takes sockets only from its host",
            |d, v| v.nullable(Given::addr).map(|x| d.config.ws_listen = x),
        )
    },
    setting(
        "api_listen",
        "ADDR",
        "127.0.0.1:8080",
        "Address of the HTTP API. It can push to anyone: keep it private, or set --api-token",
        |d, v| v.addr().map(|x| d.server.api_listen = Some(x)),
    )
    .server_only(Some("127.0.0.1:8080")),
    setting(
        "tls_cert",
        "FILE",
        "none (plain ws://)",
        "wss:// on ws_listen: a PEM file with the server's certificate followed by its intermediates. \
         Needs tls_key. Read again on SIGHUP (the server) or Engine::reload_tls: new connections get the new \
         certificate; a bad file is refused and the old one kept",
        |d, v| v.nullable(Given::string).map(|x| d.config.tls_cert = x.map(std::path::PathBuf::from)),
    ),
    setting(
        "tls_key",
        "FILE",
        "none",
        "The PEM private key (PKCS#8, PKCS#1 or SEC1) of tls_cert's first certificate",
        |d, v| v.nullable(Given::string).map(|x| d.config.tls_key = x.map(std::path::PathBuf::from)),
    ),
    setting(
        "workers",
        "N",
        "one per CPU",
        "Worker threads, 1 to 256; each owns the sockets of the ids hashed to it (null in JSON: one per CPU)",
        |d, v| v.nullable(workers).map(|n| d.config.workers = n.unwrap_or(0)),
    ),
    setting(
        "path_prefix",
        "PATH",
        "/websocket/",
        "Path prefix of the WebSocket URL; clients connect to {prefix}{id}. Must start and end with /",
        |d, v| v.string().map(|x| d.config.path_prefix = x),
    ),
    setting(
        "max_message_size",
        "BYTES",
        "1048576",
        "Largest message a client may send (larger: close 1009); also the largest the node pushes, unless \
         max_outbound_message_size is set",
        |d, v| v.size().map(|x| d.config.max_message_size = x),
    ),
    setting(
        "max_outbound_message_size",
        "BYTES",
        "max_message_size",
        "Largest message the node pushes: an HTTP API body (larger: 413), a send or broadcast of the host \
         (larger: an error), a message from Redis (larger: dropped, counted in oversized_dropped)",
        |d, v| v.nullable(Given::size).map(|x| d.config.max_outbound_message_size = x),
    ),
    setting(
        "max_buffered_bytes",
        "BYTES",
        "4194304",
        "Unread output of one socket at which it is a slow consumer: a message is queued while less than \
         this waits for the socket, whatever its own size; at or over it, slow_consumer applies",
        |d, v| v.size().map(|x| d.config.max_buffered_bytes = x),
    ),
    setting(
        "slow_consumer",
        "POLICY",
        "disconnect",
        "What to do with a socket at or over max_buffered_bytes when a message (or a pong) comes: \
         `disconnect` (close it with 1008) or `drop` (drop the new message)",
        |d, v| v.parsed::<SlowConsumerPolicy>().map(|x| d.config.slow_consumer = x),
    ),
    setting(
        "max_node_buffered_bytes",
        "BYTES",
        "unlimited",
        "Most output queued for all sockets together; over it, the sockets write-blocked the longest are \
         closed with 1008 first. At least max_buffered_bytes",
        |d, v| v.nullable(Given::size).map(|x| d.config.max_node_buffered_bytes = x),
    ),
    setting(
        "max_inbound_messages_per_second",
        "N",
        "unlimited",
        "Most frames (messages, fragments, pings, pongs) one socket may send per second, with a burst of \
         one second's worth; over it the socket is closed with 1008",
        |d, v| v.nullable(Given::rate).map(|x| d.config.max_inbound_messages_per_second = x),
    ),
    setting(
        "max_inbound_bytes_per_second",
        "BYTES",
        "unlimited",
        "Most bytes one socket may send per second, with a burst of one second's worth; over it the \
         socket is closed with 1008",
        |d, v| v.nullable(Given::size_u64).map(|x| d.config.max_inbound_bytes_per_second = x),
    ),
    setting(
        "ping_interval",
        "DURATION",
        "25s",
        "Time between pings to each socket (seconds, or with a unit: 500ms, 2m); 0 disables pings",
        |d, v| v.duration().map(|x| d.config.ping_interval = x),
    )
    .aliases(&[millis("ping_interval_ms")]),
    setting(
        "idle_timeout",
        "DURATION",
        "60s",
        "Close a socket (1001) that sent nothing, not even a pong, for this long; 0 disables",
        |d, v| v.duration().map(|x| d.config.idle_timeout = x),
    )
    .aliases(&[millis("idle_timeout_ms")]),
    setting(
        "max_connections",
        "N",
        "unlimited",
        "Most simultaneous WebSocket connections; further upgrades get 503",
        |d, v| v.nullable(Given::count).map(|x| d.config.max_connections = x),
    ),
    setting(
        "handshake_timeout",
        "DURATION",
        "10s",
        "Time a client has to complete its upgrade request",
        |d, v| v.duration().map(|x| d.config.handshake_timeout = x),
    )
    .aliases(&[millis("handshake_timeout_ms")]),
    setting(
        "max_header_bytes",
        "BYTES",
        "8192",
        "Largest upgrade request head; larger ones get 431",
        |d, v| v.size().map(|x| d.config.max_header_bytes = x),
    ),
    setting("max_headers", "N", "32", "Most header lines in an upgrade request; more get 431", |d, v| {
        v.count().map(|x| d.config.max_headers = x)
    }),
    setting(
        "command_queue_capacity",
        "N",
        "65536",
        "Capacity of each worker's command queue; when full, sends are refused (the API answers 503)",
        |d, v| v.count().map(|x| d.config.command_queue_capacity = x),
    ),
    setting(
        "api_token",
        "TOKEN",
        "none",
        "Require `Authorization: Bearer TOKEN` on POST /socket/{id}, POST /broadcast, GET /presence/{id} \
         and GET /stats (/, /healthz and /metrics stay open). Required when api_listen is not a loopback \
         address. Prefer the environment variable: flags are visible to other users in the process list",
        |d, v| v.string().and_then(|x| parse_token(&x)).map(|x| d.server.api_token = Some(x)),
    )
    .server_only(None)
    .secret(),
    setting(
        "api_header_timeout",
        "DURATION",
        "10s",
        "Time an HTTP API connection has to send a complete request head, from its accept or from the \
         first byte of its next request; then it is closed. 0 disables",
        |d, v| v.duration().map(|x| d.server.api_header_timeout = Some(x)),
    )
    .server_only(Some("10s")),
    setting(
        "api_body_timeout",
        "DURATION",
        "30s",
        "Time a push to the HTTP API has to send its whole body once its head is read; then it gets 408 \
         and the connection is closed. 0 disables",
        |d, v| v.duration().map(|x| d.server.api_body_timeout = Some(x)),
    )
    .server_only(Some("30s")),
    setting(
        "api_idle_timeout",
        "DURATION",
        "60s",
        "Close a kept-alive HTTP API connection that waits this long for its next request. 0 disables",
        |d, v| v.duration().map(|x| d.server.api_idle_timeout = Some(x)),
    )
    .server_only(Some("60s")),
    setting(
        "api_max_connections",
        "N",
        "1024",
        "Most simultaneous HTTP API connections, at least 1; over it new connections wait in the listen \
         backlog, and are served in order as others close",
        |d, v| v.count().and_then(at_least_one).map(|x| d.server.api_max_connections = Some(x)),
    )
    .server_only(Some("1024")),
    setting(
        "api_tls_cert",
        "FILE",
        "none (plain http://)",
        "https:// on the HTTP API: a PEM file with the certificate followed by its intermediates. Needs \
         api_tls_key; re-read on SIGHUP like tls_cert",
        |d, v| v.string().map(|x| d.server.api_tls_cert = Some(x.into())),
    )
    .server_only(None),
    setting(
        "api_tls_key",
        "FILE",
        "none",
        "The PEM private key of api_tls_cert's first certificate",
        |d, v| v.string().map(|x| d.server.api_tls_key = Some(x.into())),
    )
    .server_only(None),
    setting(
        "api_tls_client_ca",
        "FILE",
        "none (no client certificates)",
        "With api_tls_cert: every API client must present a certificate issued by one of the CA \
         certificates in this PEM file (service-to-service authentication; read at start)",
        |d, v| v.string().map(|x| d.server.api_tls_client_ca = Some(x.into())),
    )
    .server_only(None),
    setting(
        "max_connections_per_ip",
        "N",
        "unlimited",
        "Most simultaneous WebSocket connections from one client address (IPv6: one /64); further \
         upgrades get 429",
        |d, v| v.nullable(Given::count).map(|x| d.config.max_connections_per_ip = x),
    ),
    setting(
        "allowed_origins",
        "LIST",
        "any origin",
        "Origins (scheme://host[:port]; comma-separated, or a JSON array) whose pages may connect; a \
         browser upgrade from another Origin gets 403. Requests without an Origin header (non-browser \
         clients) are allowed",
        |d, v| v.nullable(Given::list).map(|x| d.config.allowed_origins = x),
    ),
    setting(
        "auth_jwt_secret",
        "SECRET",
        "none",
        "Require a JSON Web Token signed with this HS256 secret (at least 32 bytes) whose `sub` is the id \
         connected as; 401 otherwise. Prefer the environment variable: flags are visible to other users \
         in the process list",
        |d, v| v.nullable(Given::string).map(|x| d.auth.secret = x),
    )
    .in_group(Group::Auth, Needs::Nothing)
    .secret(),
    setting(
        "auth_jwt_public_key",
        "PEM",
        "none",
        "Require a JSON Web Token signed by the private key of this public key (RSA: RS256, EC P-256: \
         ES256) whose `sub` is the id connected as: PEM text, or the path of a PEM file",
        |d, v| v.nullable(Given::string).map(|x| d.auth.public_key = x),
    )
    .in_group(Group::Auth, Needs::Nothing),
    setting(
        "auth_leeway",
        "DURATION",
        "30s",
        "Clock skew allowed when checking a token's exp and nbf (at most 1h)",
        |d, v| v.duration().map(|x| d.auth.leeway = Some(x)),
    )
    .in_group(Group::Auth, Needs::AuthKey)
    .aliases(&[millis("auth_leeway_ms")]),
    setting(
        "auth_audience",
        "AUD",
        "none",
        "Require the token's aud claim to name this audience (without it, a token with an aud claim is \
         refused)",
        |d, v| v.nullable(Given::string).map(|x| d.auth.audience = x),
    )
    .in_group(Group::Auth, Needs::AuthKey),
    setting("auth_issuer", "ISS", "none", "Require the token's iss claim to be this issuer", |d, v| {
        v.nullable(Given::string).map(|x| d.auth.issuer = x)
    })
    .in_group(Group::Auth, Needs::AuthKey),
    setting(
        "auth_close_on_expiry",
        "BOOL",
        "true",
        "Close a socket (1008) when its token expires; false checks the token only at the upgrade",
        |d, v| v.bool().map(|x| d.auth.close_on_expiry = Some(x)),
    )
    .in_group(Group::Auth, Needs::AuthKey),
    setting(
        "history_size",
        "N",
        "0",
        "Messages kept per id, so a client reconnecting with ?since=EPOCH:OFFSET gets exactly what it \
         missed (and wspush.v1 clients get positions); 0 turns history off. At most 1000000. On a single \
         node kept in memory, with redis in Redis",
        |d, v| v.count().map(|x| d.config.history_size = x),
    ),
    setting(
        "history_ttl",
        "DURATION",
        "600s",
        "How long an id's history lives after its last message (1s to 30 days); then the id starts a new \
         epoch",
        |d, v| v.duration().map(|x| d.config.history_ttl = x),
    ),
    setting(
        "history_max_bytes",
        "BYTES",
        "268435456",
        "Most memory all histories may hold together (split evenly between the workers); over it, whole \
         histories are dropped, the soonest to expire first (counted in history_evicted). Single node only: \
         with redis the history is kept in Redis",
        |d, v| v.size().map(|x| d.config.history_max_bytes = x),
    ),
    setting(
        "echo",
        "BOOL",
        "false",
        "Send every message a client sends back to it (for conformance testing)",
        |d, v| v.bool().map(|x| d.config.echo = x),
    ),
    setting(
        "compression",
        "BOOL",
        "false",
        "Accept permessage-deflate from clients that offer it (browsers do): messages of compression_threshold \
         bytes or more are sent compressed, once for all sockets with the same window; compressed client \
         messages inflate up to max_message_size (beyond: 1009). Off by default: CPU per message, and \
         compressing secrets with attacker-chosen text can leak them (CRIME/BREACH)",
        |d, v| v.bool().map(|x| d.config.compression = x),
    ),
    setting(
        "compression_threshold",
        "BYTES",
        "256",
        "With compression: messages shorter than this go uncompressed (deflate costs more than it saves on them)",
        |d, v| v.size().map(|x| d.config.compression_threshold = x),
    ),
    setting(
        "compression_level",
        "1-9",
        "2",
        "With compression: the deflate level, 1 (fastest) to 9. Level 1 uses fixed Huffman codes only, which \
         saves far less on short JSON (a 1 KiB message: 21% against 36% at 2); higher levels cost more CPU per \
         message, paid once per worker for a broadcast and once per delivery for a unicast",
        |d, v| v.count().map(|x| d.config.compression_level = u32::try_from(x).unwrap_or(u32::MAX)),
    ),
    setting(
        "log",
        "LEVEL",
        "info",
        "Log filter (error, warn, info, debug, trace, or tracing-subscriber directives); RUST_LOG is used \
         when this is not set on the command line or in the environment",
        |d, v| v.string().map(|x| d.server.log = Some(x)),
    )
    .server_only(None),
    setting(
        "redis",
        "URL",
        "none (a single node)",
        "Cluster mode: share sockets with every node using this Redis server, e.g. redis://127.0.0.1:6379, \
         the master of a Sentinel set, e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster \
         (followed through failovers), or a Redis Cluster by some of its nodes, e.g. \
         redis+cluster://10.0.0.1:7000,10.0.0.2:7000 (sharded pub/sub); a push on any node reaches the \
         sockets on all of them. The settings below need it",
        |d, v| v.string().map(|x| d.cluster.redis_url = x),
    )
    .in_group(Group::Cluster, Needs::Nothing),
    setting(
        "redis_tls_ca",
        "FILE",
        "none (the system's CA certificates)",
        "With a rediss://, rediss+sentinel:// or rediss+cluster:// redis URL: a PEM file of the CA \
         certificates to trust for Redis's (the Sentinels', the cluster nodes') certificates, instead of the \
         system's",
        |d, v| v.nullable(Given::string).map(|x| d.cluster.tls_ca = x.map(std::path::PathBuf::from)),
    )
    .in_group(Group::Cluster, Needs::Redis),
    setting("redis_prefix", "PREFIX", "wspush:", "Prefix of every Redis channel wspush uses", |d, v| {
        v.string().map(|x| d.cluster.prefix = x)
    })
    .in_group(Group::Cluster, Needs::Redis),
    setting(
        "node_id",
        "ID",
        "random per start",
        "This node's id in the messages it publishes, 1 to 64 bytes (logged at start)",
        |d, v| v.nullable(Given::string).map(|x| d.cluster.node_id = x),
    )
    .in_group(Group::Cluster, Needs::Redis),
    setting(
        "compat_channel",
        "NAME",
        "none",
        "Also deliver messages in the original JSON format {\"KEY\": id, \"VALUE\": \"text\"} published on \
         this Redis channel",
        |d, v| v.nullable(Given::string).map(|x| d.cluster.compat_channel = x),
    )
    .in_group(Group::Cluster, Needs::Redis),
    setting(
        "compat_publish",
        "BOOL",
        "false",
        "Also publish every text push in the original format on compat_channel, for nodes of the original \
         design in a mixed fleet",
        |d, v| v.bool().map(|x| d.cluster.compat_publish = x),
    )
    .in_group(Group::Cluster, Needs::Redis),
    setting(
        "redis_queue_limit",
        "N",
        "100000",
        "Most publishes waiting for Redis (e.g. while it is unreachable); more are dropped and counted",
        |d, v| v.count().map(|x| d.cluster.queue_limit = x),
    )
    .in_group(Group::Cluster, Needs::Redis),
    setting(
        "redis_queue_bytes",
        "BYTES",
        "67108864",
        "Most bytes of publishes waiting for Redis (e.g. while it is unreachable); a publish that would go \
         over is dropped and counted. At least twice the largest message (max_message_size, \
         max_outbound_message_size)",
        |d, v| v.size().map(|x| d.cluster.queue_bytes = x),
    )
    .in_group(Group::Cluster, Needs::Redis),
    setting(
        "inbound_channel",
        "NAME",
        "{prefix}inbound",
        "Redis channel on which every message a client sends is published as JSON {\"id\", \"node\", \
         \"data\"}",
        |d, v| v.nullable(Given::string).map(|x| d.cluster.inbound_channel = x),
    )
    .in_group(Group::Cluster, Needs::Redis),
    setting(
        "publish_inbound",
        "BOOL",
        "true",
        "Publish the messages clients send on inbound_channel",
        |d, v| v.bool().map(|x| d.cluster.publish_inbound = x),
    )
    .in_group(Group::Cluster, Needs::Redis)
    .aliases(&[Alias { name: "no_inbound", meaning: AliasMeaning::Negated }]),
];

/// A number of workers: 1 to 256 (left out: one per CPU).
fn workers(value: &Given<'_>) -> Result<usize, String> {
    let count = match value.raw {
        RawValue::Text(text) => {
            text.trim().parse().map_err(|_| format!("`{text}` is not a number of workers (1 to 256)"))?
        }
        RawValue::Json(_) => value.count()?,
    };
    match count {
        1..=256 => Ok(count),
        n => Err(format!("must be between 1 and 256, got {n}")),
    }
}

/// A count that must not be zero (a cap of zero would serve nobody).
fn at_least_one(count: usize) -> Result<usize, String> {
    if count == 0 {
        return Err("must be at least 1".into());
    }
    Ok(count)
}

/// A bearer token: visible ASCII, no spaces, not empty.
fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the token is empty".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII characters without spaces".into());
    }
    Ok(s.to_owned())
}

/// The setting named `name`, and the alias it was named by, if any.
pub fn find(name: &str) -> Option<(&'static Setting, Option<&'static Alias>)> {
    SETTINGS.iter().find_map(|setting| {
        if setting.key == name {
            Some((setting, None))
        } else {
            setting.aliases.iter().find(|alias| alias.name == name).map(|alias| (setting, Some(alias)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<&str> = SETTINGS
            .iter()
            .flat_map(|s| std::iter::once(s.key).chain(s.aliases.iter().map(|a| a.name)))
            .collect();
        for name in &names {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{name}");
        }
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a name is used twice");
    }

    #[test]
    fn derived_names() {
        let (setting, alias) = find("ping_interval_ms").unwrap();
        assert_eq!(setting.key, "ping_interval");
        assert_eq!(alias.unwrap().meaning, AliasMeaning::Millis);
        assert_eq!(setting.flag(), "--ping-interval");
        assert_eq!(setting.env(), "WSPUSH_PING_INTERVAL");
        assert!(find("colour").is_none());
    }
}
