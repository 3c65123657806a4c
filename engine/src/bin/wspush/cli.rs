//! The server's settings: command-line flags, `WSPUSH_*` environment variables and an
//! optional TOML file (`--config`), merged with the precedence flag > environment > file >
//! default, then checked. Every error names the setting and where its value came from
//! (`--workers`, `WSPUSH_WORKERS`, or `workers in FILE`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use wspush::{ClusterConfig, Config, JwtAuth, JwtKey, SlowConsumerPolicy};

/// Where the WebSocket listener binds unless told otherwise.
pub const DEFAULT_WS_LISTEN: &str = "0.0.0.0:8081";
/// Where the HTTP API binds unless told otherwise: loopback, since it can push to anyone.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8080";
/// The settings that only mean something in cluster mode: giving one without `redis` is an
/// error rather than silently ignored.
const REDIS_ONLY: [&str; 7] = [
    "redis_prefix",
    "node_id",
    "compat_channel",
    "compat_publish",
    "redis_queue_limit",
    "inbound_channel",
    "no_inbound",
];
/// The settings that only mean something with token checks on: giving one without a key is
/// an error rather than silently ignored.
const AUTH_ONLY: [&str; 4] = ["auth_leeway", "auth_audience", "auth_issuer", "auth_close_on_expiry"];
/// The log filter when neither `--log`, `WSPUSH_LOG`, `RUST_LOG` nor the file set one.
pub const DEFAULT_LOG: &str = "info";

/// The command line. Every setting is optional here, so that a value missing from the
/// command line and the environment can still come from the file; the defaults are
/// applied by [`load_from`], and shown in `--help`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "wspush",
    version,
    about = "wspush: a WebSocket delivery engine. Runs one node: WebSocket clients connect to \
             ws://HOST:8081/websocket/{id}, and the HTTP API pushes messages to every socket of an id. \
             With --redis, any number of nodes share their sockets through Redis.",
    after_help = "Every setting can also be given as a WSPUSH_* environment variable (shown above) or \
                  as a key of the TOML file given with --config (the flag name with underscores, e.g. \
                  ws_listen = \"0.0.0.0:9000\"). Precedence: flag > environment > file > default.\n\
                  Sizes are bytes, optionally with a suffix: KiB, MiB, GiB (x1024) or kB, MB, GB (x1000)."
)]
pub struct Cli {
    /// Read settings from this TOML file; keys are the flag names with underscores
    #[arg(long, env = "WSPUSH_CONFIG", value_name = "FILE")]
    pub config: Option<String>,

    /// Address of the WebSocket listener; port 0 picks a free port [default: 0.0.0.0:8081]
    #[arg(long, env = "WSPUSH_WS_LISTEN", value_name = "ADDR")]
    pub ws_listen: Option<String>,

    /// Address of the HTTP API. It can push to anyone: keep it private, or set --api-token
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "WSPUSH_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<String>,

    /// Worker threads, 1 to 256; each owns the sockets of the ids hashed to it
    /// [default: one per CPU]
    #[arg(long, env = "WSPUSH_WORKERS", value_name = "N")]
    pub workers: Option<String>,

    /// Path prefix of the WebSocket URL; clients connect to {prefix}{id}. Must start and end
    /// with / [default: /websocket/]
    #[arg(long, env = "WSPUSH_PATH_PREFIX", value_name = "PATH")]
    pub path_prefix: Option<String>,

    /// Largest message a client may send, and largest HTTP API body [default: 1048576]
    #[arg(long, env = "WSPUSH_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<String>,

    /// Most output queued for one socket before --slow-consumer applies [default: 4194304]
    #[arg(long, env = "WSPUSH_MAX_BUFFERED_BYTES", value_name = "BYTES")]
    pub max_buffered_bytes: Option<String>,

    /// What to do with a socket over --max-buffered-bytes: `disconnect` (close it with
    /// 1008) or `drop` (drop the new message) [default: disconnect]
    #[arg(long, env = "WSPUSH_SLOW_CONSUMER", value_name = "POLICY")]
    pub slow_consumer: Option<String>,

    /// Most output queued for all sockets together; over it, the sockets write-blocked the
    /// longest are closed with 1008 first. At least --max-buffered-bytes [default: unlimited]
    #[arg(long, env = "WSPUSH_MAX_NODE_BUFFERED_BYTES", value_name = "BYTES")]
    pub max_node_buffered_bytes: Option<String>,

    /// Most frames (messages, fragments, pings, pongs) one socket may send per second, with
    /// a burst of one second's worth; over it the socket is closed with 1008
    /// [default: unlimited]
    #[arg(long, env = "WSPUSH_MAX_INBOUND_MESSAGES_PER_SECOND", value_name = "N")]
    pub max_inbound_messages_per_second: Option<String>,

    /// Most bytes one socket may send per second, with a burst of one second's worth; over
    /// it the socket is closed with 1008 [default: unlimited]
    #[arg(long, env = "WSPUSH_MAX_INBOUND_BYTES_PER_SECOND", value_name = "BYTES")]
    pub max_inbound_bytes_per_second: Option<String>,

    /// Seconds between pings to each socket; 0 disables pings [default: 25]
    #[arg(long, env = "WSPUSH_PING_INTERVAL", value_name = "SECONDS")]
    pub ping_interval: Option<String>,

    /// Close a socket (1001) that sent nothing, not even a pong, for this many seconds;
    /// 0 disables [default: 60]
    #[arg(long, env = "WSPUSH_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout: Option<String>,

    /// Most simultaneous WebSocket connections; further upgrades get 503 [default: unlimited]
    #[arg(long, env = "WSPUSH_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<String>,

    /// Seconds a client has to complete its upgrade request [default: 10]
    #[arg(long, env = "WSPUSH_HANDSHAKE_TIMEOUT", value_name = "SECONDS")]
    pub handshake_timeout: Option<String>,

    /// Largest upgrade request head; larger ones get 431 [default: 8192]
    #[arg(long, env = "WSPUSH_MAX_HEADER_BYTES", value_name = "BYTES")]
    pub max_header_bytes: Option<String>,

    /// Most header lines in an upgrade request; more get 431 [default: 32]
    #[arg(long, env = "WSPUSH_MAX_HEADERS", value_name = "N")]
    pub max_headers: Option<String>,

    /// Capacity of each worker's command queue; when full, the API answers 503
    /// [default: 65536]
    #[arg(long, env = "WSPUSH_COMMAND_QUEUE_CAPACITY", value_name = "N")]
    pub command_queue_capacity: Option<String>,

    /// Require `Authorization: Bearer TOKEN` on POST /socket/{id}, POST /broadcast and
    /// GET /stats (/, /healthz and /metrics stay open). Required when --api-listen is not a
    /// loopback address. Prefer the environment variable: flags are visible to other users
    /// in the process list [default: none]
    #[arg(long, env = "WSPUSH_API_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Most simultaneous WebSocket connections from one client address (IPv6: one /64);
    /// further upgrades get 429 [default: unlimited]
    #[arg(long, env = "WSPUSH_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<String>,

    /// Comma-separated origins (scheme://host[:port]) whose pages may connect; a browser
    /// upgrade from another Origin gets 403. Requests without an Origin header (non-browser
    /// clients) are allowed [default: any origin]
    #[arg(long, env = "WSPUSH_ALLOWED_ORIGINS", value_name = "LIST")]
    pub allowed_origins: Option<String>,

    /// Require a JSON Web Token signed with this HS256 secret (at least 32 bytes) whose `sub`
    /// is the id connected as; 401 otherwise. Prefer the environment variable: flags are
    /// visible to other users in the process list [default: none, anyone connects as any id]
    #[arg(
        long,
        env = "WSPUSH_AUTH_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        help_heading = "Client authentication"
    )]
    pub auth_jwt_secret: Option<String>,

    /// Require a JSON Web Token signed with the private key of this PEM public key (RSA:
    /// RS256, EC P-256: ES256) whose `sub` is the id connected as; 401 otherwise
    /// [default: none]
    #[arg(
        long,
        env = "WSPUSH_AUTH_JWT_PUBLIC_KEY",
        value_name = "FILE",
        help_heading = "Client authentication"
    )]
    pub auth_jwt_public_key: Option<String>,

    /// Seconds of clock skew allowed when checking a token's exp and nbf [default: 30]
    #[arg(long, env = "WSPUSH_AUTH_LEEWAY", value_name = "SECONDS", help_heading = "Client authentication")]
    pub auth_leeway: Option<String>,

    /// Require the token's aud claim to name this audience [default: none, and a token
    /// with an aud claim is refused]
    #[arg(long, env = "WSPUSH_AUTH_AUDIENCE", value_name = "AUD", help_heading = "Client authentication")]
    pub auth_audience: Option<String>,

    /// Require the token's iss claim to be this issuer [default: none]
    #[arg(long, env = "WSPUSH_AUTH_ISSUER", value_name = "ISS", help_heading = "Client authentication")]
    pub auth_issuer: Option<String>,

    /// Close a socket (1008) when its token expires; false checks the token only at the
    /// upgrade [default: true]
    #[arg(
        long,
        env = "WSPUSH_AUTH_CLOSE_ON_EXPIRY",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = "Client authentication"
    )]
    pub auth_close_on_expiry: Option<String>,

    /// Send every message a client sends back to it (for conformance testing)
    /// [default: false]
    #[arg(
        long,
        env = "WSPUSH_ECHO",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub echo: Option<String>,

    /// Log filter (error, warn, info, debug, trace, or tracing-subscriber directives);
    /// RUST_LOG is used when this is not set [default: info]
    #[arg(long, env = "WSPUSH_LOG", value_name = "LEVEL")]
    pub log: Option<String>,

    /// Cluster mode: share sockets with every node using this Redis server, e.g.
    /// redis://127.0.0.1:6379; a push on any node reaches the sockets on all of them. The
    /// settings below need it [default: none, a single node]
    #[arg(long, env = "WSPUSH_REDIS", value_name = "URL", help_heading = "Cluster mode")]
    pub redis: Option<String>,

    /// Prefix of every Redis channel wspush uses [default: wspush:]
    #[arg(long, env = "WSPUSH_REDIS_PREFIX", value_name = "PREFIX", help_heading = "Cluster mode")]
    pub redis_prefix: Option<String>,

    /// This node's id in the messages it publishes, 1 to 64 bytes [default: random per start,
    /// logged]
    #[arg(long, env = "WSPUSH_NODE_ID", value_name = "ID", help_heading = "Cluster mode")]
    pub node_id: Option<String>,

    /// Also deliver messages in the original JSON format {"KEY": id, "VALUE": "text"}
    /// published on this Redis channel [default: none]
    #[arg(long, env = "WSPUSH_COMPAT_CHANNEL", value_name = "NAME", help_heading = "Cluster mode")]
    pub compat_channel: Option<String>,

    /// Also publish every text push in the original format on --compat-channel, for nodes
    /// of the original design in a mixed fleet [default: false]
    #[arg(
        long,
        env = "WSPUSH_COMPAT_PUBLISH",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = "Cluster mode"
    )]
    pub compat_publish: Option<String>,

    /// Most publishes waiting for Redis (e.g. while it is unreachable); more are dropped and
    /// counted [default: 100000]
    #[arg(long, env = "WSPUSH_REDIS_QUEUE_LIMIT", value_name = "N", help_heading = "Cluster mode")]
    pub redis_queue_limit: Option<String>,

    /// Redis channel on which every message a client sends is published as JSON
    /// {"id", "node", "data"} [default: {prefix}inbound, e.g. wspush:inbound]
    #[arg(long, env = "WSPUSH_INBOUND_CHANNEL", value_name = "NAME", help_heading = "Cluster mode")]
    pub inbound_channel: Option<String>,

    /// Do not publish the messages clients send [default: false]
    #[arg(
        long,
        env = "WSPUSH_NO_INBOUND",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = "Cluster mode"
    )]
    pub no_inbound: Option<String>,
}

impl Cli {
    /// Every setting's key (the TOML key, and the flag and variable names derived from it)
    /// with its raw value from the command line or the environment. `config` is not a
    /// setting of its own: it says where the others may come from.
    fn raw_settings(&self) -> [(&'static str, Option<&str>); 36] {
        [
            ("ws_listen", self.ws_listen.as_deref()),
            ("api_listen", self.api_listen.as_deref()),
            ("workers", self.workers.as_deref()),
            ("path_prefix", self.path_prefix.as_deref()),
            ("max_message_size", self.max_message_size.as_deref()),
            ("max_buffered_bytes", self.max_buffered_bytes.as_deref()),
            ("slow_consumer", self.slow_consumer.as_deref()),
            ("max_node_buffered_bytes", self.max_node_buffered_bytes.as_deref()),
            ("max_inbound_messages_per_second", self.max_inbound_messages_per_second.as_deref()),
            ("max_inbound_bytes_per_second", self.max_inbound_bytes_per_second.as_deref()),
            ("ping_interval", self.ping_interval.as_deref()),
            ("idle_timeout", self.idle_timeout.as_deref()),
            ("max_connections", self.max_connections.as_deref()),
            ("handshake_timeout", self.handshake_timeout.as_deref()),
            ("max_header_bytes", self.max_header_bytes.as_deref()),
            ("max_headers", self.max_headers.as_deref()),
            ("command_queue_capacity", self.command_queue_capacity.as_deref()),
            ("api_token", self.api_token.as_deref()),
            ("max_connections_per_ip", self.max_connections_per_ip.as_deref()),
            ("allowed_origins", self.allowed_origins.as_deref()),
            ("auth_jwt_secret", self.auth_jwt_secret.as_deref()),
            ("auth_jwt_public_key", self.auth_jwt_public_key.as_deref()),
            ("auth_leeway", self.auth_leeway.as_deref()),
            ("auth_audience", self.auth_audience.as_deref()),
            ("auth_issuer", self.auth_issuer.as_deref()),
            ("auth_close_on_expiry", self.auth_close_on_expiry.as_deref()),
            ("echo", self.echo.as_deref()),
            ("log", self.log.as_deref()),
            ("redis", self.redis.as_deref()),
            ("redis_prefix", self.redis_prefix.as_deref()),
            ("node_id", self.node_id.as_deref()),
            ("compat_channel", self.compat_channel.as_deref()),
            ("compat_publish", self.compat_publish.as_deref()),
            ("redis_queue_limit", self.redis_queue_limit.as_deref()),
            ("inbound_channel", self.inbound_channel.as_deref()),
            ("no_inbound", self.no_inbound.as_deref()),
        ]
    }

    /// The keys a TOML file may have.
    fn keys() -> Vec<&'static str> {
        Cli::default().raw_settings().iter().map(|(key, _)| *key).collect()
    }
}

/// Everything the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine's settings (its WebSocket listener included).
    pub engine: Config,
    /// Where the HTTP API listens.
    pub api_listen: SocketAddr,
    /// The bearer token the API requires, if any.
    pub api_token: Option<String>,
    /// The log filter directive.
    pub log: String,
}

/// A bad setting. Displays as `invalid SETTING: REASON`, where SETTING says where the value
/// came from: `--workers`, `WSPUSH_WORKERS` or `workers in FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The setting and where its value came from.
    pub setting: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for SettingError {}

/// Why the settings could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// clap's own outcome: `--help`, `--version`, an unknown flag. `exit()` prints it and
    /// exits (0 for help and version, 2 for errors).
    Clap(clap::Error),
    /// A value is invalid; the server prints `wspush: {error}` and exits with 2.
    Setting(SettingError),
}

impl From<SettingError> for LoadError {
    fn from(error: SettingError) -> Self {
        LoadError::Setting(error)
    }
}

/// Loads the settings from the process's arguments, environment and `--config` file.
pub fn load() -> Result<Settings, LoadError> {
    load_from(std::env::args_os())
}

/// Loads the settings from `args` (the program name first), the environment and the
/// `--config` file.
pub fn load_from<I, T>(args: I) -> Result<Settings, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Cli::command().try_get_matches_from(args).map_err(LoadError::Clap)?;
    let cli = Cli::from_arg_matches(&matches).map_err(LoadError::Clap)?;
    let mut sources = Sources::default();
    if let Some(path) = &cli.config {
        let origin = origin_of(&matches, "config").to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SettingError {
            setting: origin.clone(),
            reason: format!("cannot read {path}: {e}"),
        })?;
        sources.add_file(path, &text).map_err(|reason| SettingError { setting: origin, reason })?;
    }
    for (key, value) in cli.raw_settings() {
        if let Some(value) = value {
            sources.values.insert(key, (value.to_owned(), origin_of(&matches, key)));
        }
    }
    Ok(sources.resolve()?)
}

/// Where a value given to clap came from: its flag or its environment variable.
fn origin_of(matches: &clap::ArgMatches, key: &'static str) -> Origin {
    match matches.value_source(key) {
        Some(ValueSource::EnvVariable) => Origin::Env(key),
        _ => Origin::Flag(key),
    }
}

/// Where a setting's value came from; displays as the name a user would look for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    /// `--max-message-size`.
    Flag(&'static str),
    /// `WSPUSH_MAX_MESSAGE_SIZE`.
    Env(&'static str),
    /// `max_message_size in FILE`.
    File(&'static str, String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(key) => f.write_str(&flag_name(key)),
            Origin::Env(key) => f.write_str(&env_name(key)),
            Origin::File(key, path) => write!(f, "{key} in {path}"),
        }
    }
}

/// `max_message_size` -> `--max-message-size`.
fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// `max_message_size` -> `WSPUSH_MAX_MESSAGE_SIZE`.
fn env_name(key: &str) -> String {
    format!("WSPUSH_{}", key.to_ascii_uppercase())
}

/// The raw value of each setting that was given, with where it came from; later sources
/// replace earlier ones, so the file is added before the command line and environment.
#[derive(Debug, Default)]
struct Sources {
    values: HashMap<&'static str, (String, Origin)>,
}

impl Sources {
    /// Adds the settings of a TOML file. Unknown keys, TOML syntax errors and values that
    /// are not scalars are errors (the message names the file).
    fn add_file(&mut self, path: &str, text: &str) -> Result<(), String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(String::new(), |span| {
                format!(" (line {})", text[..span.start].matches('\n').count() + 1)
            });
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{path} is not valid TOML{line}: {message}")
        })?;
        let keys = Cli::keys();
        for (key, value) in table {
            let Some(key) = keys.iter().copied().find(|known| *known == key) else {
                return Err(format!("unknown key `{key}` in {path} (known keys: {})", keys.join(", ")));
            };
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "`{key}` in {path} is a {}; expected a string, an integer or a boolean",
                        other.type_str()
                    ))
                }
            };
            self.values.insert(key, (value, Origin::File(key, path.to_owned())));
        }
        Ok(())
    }

    /// The parsed value of `key`, if it was given.
    fn get<T>(
        &self,
        key: &'static str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, SettingError> {
        match self.values.get(key) {
            None => Ok(None),
            Some((raw, origin)) => {
                parse(raw).map(Some).map_err(|reason| SettingError { setting: origin.to_string(), reason })
            }
        }
    }

    /// Where the value of `key` came from (its flag when it was not given).
    fn origin(&self, key: &str) -> String {
        self.values.get(key).map_or_else(|| flag_name(key), |(_, origin)| origin.to_string())
    }

    /// Cluster mode's settings: `None` without `redis`, when none of the others may be given.
    fn cluster(&self) -> Result<Option<ClusterConfig>, SettingError> {
        let Some(url) = self.get("redis", parse_string)? else {
            return match REDIS_ONLY.iter().find(|key| self.values.contains_key(*key)) {
                Some(key) => Err(SettingError { setting: self.origin(key), reason: "needs --redis".into() }),
                None => Ok(None),
            };
        };
        let mut cluster = ClusterConfig::new(url);
        if let Some(prefix) = self.get("redis_prefix", parse_string)? {
            cluster.prefix = prefix;
        }
        cluster.node_id = self.get("node_id", parse_string)?;
        cluster.compat_channel = self.get("compat_channel", parse_string)?;
        cluster.compat_publish = self.get("compat_publish", parse_bool)?.unwrap_or(cluster.compat_publish);
        if cluster.compat_publish && cluster.compat_channel.is_none() {
            return Err(SettingError {
                setting: self.origin("compat_publish"),
                reason: "needs --compat-channel to publish on".into(),
            });
        }
        if let Some(limit) = self.get("redis_queue_limit", parse_count)? {
            cluster.queue_limit = limit;
        }
        cluster.inbound_channel = self.get("inbound_channel", parse_string)?;
        if self.get("no_inbound", parse_bool)? == Some(true) {
            cluster.publish_inbound = false;
        }
        Ok(Some(cluster))
    }

    /// Client token checks: `None` without a secret or a public key, when none of the
    /// other `auth_*` settings may be given.
    fn auth(&self) -> Result<Option<JwtAuth>, SettingError> {
        let secret = self.get("auth_jwt_secret", parse_string)?;
        let key_file = self.get("auth_jwt_public_key", parse_string)?;
        let (key, key_setting) = match (secret, key_file) {
            (Some(_), Some(_)) => {
                return Err(SettingError {
                    setting: self.origin("auth_jwt_public_key"),
                    reason: format!(
                        "give either {} or {}, not both",
                        flag_name("auth_jwt_secret"),
                        flag_name("auth_jwt_public_key")
                    ),
                });
            }
            (Some(secret), None) => (JwtKey::Hs256Secret(secret.into_bytes()), "auth_jwt_secret"),
            (None, Some(path)) => {
                let pem = std::fs::read(&path).map_err(|e| SettingError {
                    setting: self.origin("auth_jwt_public_key"),
                    reason: format!("cannot read {path}: {e}"),
                })?;
                (JwtKey::PublicKeyPem(pem), "auth_jwt_public_key")
            }
            (None, None) => {
                return match AUTH_ONLY.iter().find(|key| self.values.contains_key(*key)) {
                    Some(key) => Err(SettingError {
                        setting: self.origin(key),
                        reason: format!(
                            "needs {} or {}",
                            flag_name("auth_jwt_secret"),
                            flag_name("auth_jwt_public_key")
                        ),
                    }),
                    None => Ok(None),
                };
            }
        };
        let mut auth = JwtAuth::new(key).map_err(|error| SettingError {
            setting: self.origin(key_setting),
            reason: match error {
                wspush::Error::InvalidConfig { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        if let Some(leeway) = self.get("auth_leeway", parse_seconds)? {
            auth = auth.with_leeway(leeway);
        }
        if let Some(audience) = self.get("auth_audience", parse_string)? {
            auth = auth.with_audience(audience);
        }
        if let Some(issuer) = self.get("auth_issuer", parse_string)? {
            auth = auth.with_issuer(issuer);
        }
        if let Some(close) = self.get("auth_close_on_expiry", parse_bool)? {
            auth = auth.with_close_on_expiry(close);
        }
        Ok(Some(auth))
    }

    /// The settings key (as in the TOML file) of an engine setting named in an error.
    fn key_of_engine_setting(&self, setting: &'static str) -> &'static str {
        match setting {
            "auth.leeway" => "auth_leeway",
            "auth.audience" => "auth_audience",
            "auth.issuer" => "auth_issuer",
            "auth.key" if self.values.contains_key("auth_jwt_public_key") => "auth_jwt_public_key",
            "auth.key" => "auth_jwt_secret",
            other => other,
        }
    }

    /// Applies the defaults and checks the result as the engine will.
    fn resolve(&self) -> Result<Settings, SettingError> {
        let defaults = Config::default();
        let seconds = |key, default: Duration| -> Result<Duration, SettingError> {
            Ok(self.get(key, parse_seconds)?.unwrap_or(default))
        };
        let engine = Config {
            ws_listen: Some(
                self.get("ws_listen", parse_addr)?.unwrap_or_else(|| default_addr(DEFAULT_WS_LISTEN)),
            ),
            workers: self.get("workers", parse_workers)?.unwrap_or(defaults.workers),
            path_prefix: self.get("path_prefix", parse_string)?.unwrap_or(defaults.path_prefix),
            max_message_size: self.get("max_message_size", parse_size)?.unwrap_or(defaults.max_message_size),
            max_buffered_bytes: self
                .get("max_buffered_bytes", parse_size)?
                .unwrap_or(defaults.max_buffered_bytes),
            slow_consumer: self.get("slow_consumer", parse_policy)?.unwrap_or(defaults.slow_consumer),
            max_node_buffered_bytes: self
                .get("max_node_buffered_bytes", parse_size)?
                .or(defaults.max_node_buffered_bytes),
            max_inbound_messages_per_second: self
                .get("max_inbound_messages_per_second", parse_rate)?
                .or(defaults.max_inbound_messages_per_second),
            max_inbound_bytes_per_second: self
                .get("max_inbound_bytes_per_second", parse_size)?
                .map(|bytes| bytes as u64)
                .or(defaults.max_inbound_bytes_per_second),
            ping_interval: seconds("ping_interval", defaults.ping_interval)?,
            idle_timeout: seconds("idle_timeout", defaults.idle_timeout)?,
            max_connections: self.get("max_connections", parse_count)?.or(defaults.max_connections),
            handshake_timeout: seconds("handshake_timeout", defaults.handshake_timeout)?,
            max_header_bytes: self.get("max_header_bytes", parse_size)?.unwrap_or(defaults.max_header_bytes),
            max_headers: self.get("max_headers", parse_count)?.unwrap_or(defaults.max_headers),
            command_queue_capacity: self
                .get("command_queue_capacity", parse_count)?
                .unwrap_or(defaults.command_queue_capacity),
            echo: self.get("echo", parse_bool)?.unwrap_or(defaults.echo),
            cluster: self.cluster()?,
            auth: self.auth()?,
            allowed_origins: self.get("allowed_origins", parse_list)?,
            max_connections_per_ip: self
                .get("max_connections_per_ip", parse_count)?
                .or(defaults.max_connections_per_ip),
        };
        if let Err(error) = engine.validate() {
            return Err(match error {
                wspush::Error::InvalidConfig { setting, reason } => {
                    SettingError { setting: self.origin(self.key_of_engine_setting(setting)), reason }
                }
                other => SettingError { setting: "configuration".into(), reason: other.to_string() },
            });
        }
        let log = match self.values.get("log") {
            // The command line and WSPUSH_LOG come first, then RUST_LOG, then the file.
            Some((_, Origin::Flag(_) | Origin::Env(_))) => self.get("log", parse_log)?,
            _ => match std::env::var("RUST_LOG") {
                Ok(filter) if !filter.trim().is_empty() => Some(
                    parse_log(&filter)
                        .map_err(|reason| SettingError { setting: "RUST_LOG".into(), reason })?,
                ),
                _ => self.get("log", parse_log)?,
            },
        };
        let api_listen =
            self.get("api_listen", parse_addr)?.unwrap_or_else(|| default_addr(DEFAULT_API_LISTEN));
        let api_token = self.get("api_token", parse_token)?;
        if !api_listen.ip().is_loopback() && api_token.is_none() {
            return Err(SettingError {
                setting: self.origin("api_listen"),
                reason: format!(
                    "refusing to serve the HTTP API on {api_listen} without --api-token: anyone who can \
                     reach it could push to every socket (keep it on 127.0.0.1, or set --api-token)"
                ),
            });
        }
        Ok(Settings { engine, api_listen, api_token, log: log.unwrap_or_else(|| DEFAULT_LOG.to_owned()) })
    }
}

fn default_addr(addr: &str) -> SocketAddr {
    addr.parse().expect("the default addresses parse")
}

/// An `IP:PORT` address (IPv6 in brackets).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an address like 0.0.0.0:8081, 127.0.0.1:0 or [::1]:8081"))
}

/// A number of workers: 1 to 256.
pub fn parse_workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        Ok(n) => Err(format!("must be between 1 and 256, got {n}")),
        Err(_) => Err(format!("`{s}` is not a number of workers (1 to 256)")),
    }
}

/// A count (connections, header lines, queue slots).
pub fn parse_count(s: &str) -> Result<usize, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))
}

/// A number per second (messages), at most 4294967295.
pub fn parse_rate(s: &str) -> Result<u32, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not a whole number up to 4294967295"))
}

/// A size in bytes: `1048576`, or with a suffix: `KiB`, `MiB`, `GiB` (x1024), `kB`, `MB`,
/// `GB` (x1000), `B`. Suffixes are case-insensitive.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_size: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("`{s}` is not a size: expected bytes like 1048576, or 1MiB, 64KiB, 1MB")),
    };
    let count: u64 =
        digits.parse().map_err(|_| format!("`{s}` is not a size: expected bytes like 1048576 or 1MiB"))?;
    count
        .checked_mul(unit_size)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A number of seconds (0 allowed; the engine decides what 0 means for each setting).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.trim().parse().map(Duration::from_secs).map_err(|_| format!("`{s}` is not a whole number of seconds"))
}

/// `disconnect` or `drop`.
pub fn parse_policy(s: &str) -> Result<SlowConsumerPolicy, String> {
    s.trim().parse()
}

/// true/false, also yes/no, on/off, 1/0.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got `{s}`")),
    }
}

fn parse_string(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

/// A comma-separated list; blanks around entries are dropped, and it must not be empty.
pub fn parse_list(s: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> =
        s.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_owned).collect();
    if items.is_empty() {
        return Err("the list is empty".into());
    }
    Ok(items)
}

/// A bearer token: visible ASCII, no spaces, not empty.
pub fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the token is empty".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be visible ASCII characters without spaces".into());
    }
    Ok(s.to_owned())
}

/// A tracing-subscriber filter such as `info` or `wspush=debug,info`.
pub fn parse_log(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("`{s}` is not a log filter: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard};

    use super::*;

    /// The environment is shared by the threads of the test harness: every test that
    /// reads it holds this lock, after clearing every `WSPUSH_*` variable.
    static ENV: Mutex<()> = Mutex::new(());

    fn clean_env() -> MutexGuard<'static, ()> {
        let guard = ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("WSPUSH_") || name == "RUST_LOG" {
                std::env::remove_var(name);
            }
        }
        guard
    }

    fn load(args: &[&str]) -> Result<Settings, String> {
        let args = std::iter::once("wspush").chain(args.iter().copied());
        load_from(args).map_err(|e| match e {
            LoadError::Clap(e) => format!("clap: {e}"),
            LoadError::Setting(e) => e.to_string(),
        })
    }

    fn temp_file(name: &str, text: &str) -> String {
        let path = std::env::temp_dir().join(format!("wspush-cli-test-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn defaults() {
        let _env = clean_env();
        let s = load(&[]).unwrap();
        assert_eq!(s.engine.ws_listen, Some("0.0.0.0:8081".parse().unwrap()));
        assert_eq!(s.api_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.engine.workers, 0);
        assert_eq!(s.engine.path_prefix, "/websocket/");
        assert_eq!(s.engine.max_message_size, 1_048_576);
        assert_eq!(s.engine.max_buffered_bytes, 4_194_304);
        assert_eq!(s.engine.slow_consumer, SlowConsumerPolicy::Disconnect);
        assert_eq!(s.engine.ping_interval, Duration::from_secs(25));
        assert_eq!(s.engine.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.engine.max_connections, None);
        assert_eq!(s.engine.handshake_timeout, Duration::from_secs(10));
        assert!(!s.engine.echo);
        assert_eq!(s.api_token, None);
        assert_eq!(s.log, "info");
        assert!(s.engine.cluster.is_none());
    }

    #[test]
    fn redis_turns_on_cluster_mode_with_the_engine_defaults() {
        let _env = clean_env();
        let s = load(&["--redis", "redis://127.0.0.1:6390"]).unwrap();
        let c = s.engine.cluster.expect("cluster mode");
        let defaults = ClusterConfig::new("redis://127.0.0.1:6390");
        assert_eq!(c.redis_url, "redis://127.0.0.1:6390");
        assert_eq!(c.prefix, defaults.prefix);
        assert_eq!(c.node_id, None);
        assert_eq!((c.compat_channel, c.compat_publish), (None, false));
        assert_eq!(c.queue_limit, defaults.queue_limit);
        assert_eq!((c.publish_inbound, c.inbound_channel), (true, None));
    }

    #[test]
    fn every_cluster_flag_reaches_the_cluster_config() {
        let _env = clean_env();
        let s = load(&[
            "--redis",
            "redis://10.0.0.5:6379/2",
            "--redis-prefix",
            "app:",
            "--node-id",
            "node-a",
            "--compat-channel",
            "legacy",
            "--compat-publish",
            "--redis-queue-limit",
            "500",
            "--inbound-channel",
            "from-clients",
        ])
        .unwrap();
        let c = s.engine.cluster.unwrap();
        assert_eq!(c.redis_url, "redis://10.0.0.5:6379/2");
        assert_eq!(c.prefix, "app:");
        assert_eq!(c.node_id.as_deref(), Some("node-a"));
        assert_eq!(c.compat_channel.as_deref(), Some("legacy"));
        assert!(c.compat_publish);
        assert_eq!(c.queue_limit, 500);
        assert_eq!(c.inbound_channel.as_deref(), Some("from-clients"));
        assert!(c.publish_inbound);
        let c = load(&["--redis", "redis://h", "--no-inbound"]).unwrap().engine.cluster.unwrap();
        assert!(!c.publish_inbound);
        let c = load(&["--redis", "redis://h", "--no-inbound=false"]).unwrap().engine.cluster.unwrap();
        assert!(c.publish_inbound);
        let c = load(&["--redis", "redis://h", "--compat-channel", "x", "--compat-publish=no"]).unwrap();
        assert!(!c.engine.cluster.unwrap().compat_publish);
    }

    #[test]
    fn redis_flag_beats_env_beats_file() {
        let _env = clean_env();
        let file = temp_file("redis", "redis = \"redis://file:1\"\nnode_id = \"from-file\"\n");
        let url = |s: Settings| s.engine.cluster.unwrap().redis_url;
        assert_eq!(url(load(&["--config", &file]).unwrap()), "redis://file:1", "file");
        std::env::set_var("WSPUSH_REDIS", "redis://env:2");
        assert_eq!(url(load(&["--config", &file]).unwrap()), "redis://env:2", "env over file");
        let s = load(&["--config", &file, "--redis", "redis://flag:3"]).unwrap();
        assert_eq!(s.engine.cluster.as_ref().unwrap().node_id.as_deref(), Some("from-file"));
        assert_eq!(url(s), "redis://flag:3", "flag over env");
        std::env::set_var("WSPUSH_NODE_ID", "from-env");
        let c = load(&["--config", &file]).unwrap().engine.cluster.unwrap();
        assert_eq!(c.node_id.as_deref(), Some("from-env"));
        std::env::remove_var("WSPUSH_REDIS");
        std::env::remove_var("WSPUSH_NODE_ID");
        std::fs::write(
            &file,
            "redis = \"redis://file:1\"\nredis_prefix = \"p:\"\ncompat_channel = \"c\"\n\
             compat_publish = true\nredis_queue_limit = 7\ninbound_channel = \"i\"\nno_inbound = true\n",
        )
        .unwrap();
        let c = load(&["--config", &file]).unwrap().engine.cluster.unwrap();
        std::fs::remove_file(file).unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.compat_channel.as_deref(), c.compat_publish),
            ("p:", Some("c"), true)
        );
        assert_eq!((c.queue_limit, c.inbound_channel.as_deref(), c.publish_inbound), (7, Some("i"), false));
    }

    #[test]
    fn cluster_settings_without_redis_are_refused() {
        let _env = clean_env();
        for (args, flag) in [
            (&["--compat-channel", "legacy"][..], "--compat-channel"),
            (&["--redis-prefix", "p:"], "--redis-prefix"),
            (&["--node-id", "a"], "--node-id"),
            (&["--compat-publish"], "--compat-publish"),
            (&["--redis-queue-limit", "5"], "--redis-queue-limit"),
            (&["--inbound-channel", "i"], "--inbound-channel"),
            (&["--no-inbound"], "--no-inbound"),
        ] {
            assert_eq!(load(args).unwrap_err(), format!("invalid {flag}: needs --redis"), "{args:?}");
        }
        std::env::set_var("WSPUSH_NODE_ID", "a");
        assert_eq!(load(&[]).unwrap_err(), "invalid WSPUSH_NODE_ID: needs --redis");
        assert!(load(&["--redis", "redis://h"]).is_ok());
        std::env::remove_var("WSPUSH_NODE_ID");
        let file = temp_file("needs-redis", "compat_channel = \"legacy\"\n");
        assert_eq!(
            load(&["--config", &file]).unwrap_err(),
            format!("invalid compat_channel in {file}: needs --redis")
        );
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn invalid_cluster_settings_are_named() {
        let _env = clean_env();
        let error = load(&["--redis", "notaurl"]).unwrap_err();
        assert!(error.starts_with("invalid --redis: `notaurl` is not a Redis URL"), "{error}");
        std::env::set_var("WSPUSH_REDIS", "notaurl");
        let error = load(&[]).unwrap_err();
        assert!(error.starts_with("invalid WSPUSH_REDIS: `notaurl` is not a Redis URL"), "{error}");
        std::env::remove_var("WSPUSH_REDIS");
        let long = "n".repeat(65);
        assert_eq!(
            load(&["--redis", "redis://h", "--node-id", &long]).unwrap_err(),
            "invalid --node-id: must be 1 to 64 bytes"
        );
        assert!(load(&["--redis", "redis://h", "--node-id", &long[..64]]).is_ok());
        assert_eq!(
            load(&["--redis", "redis://h", "--compat-publish"]).unwrap_err(),
            "invalid --compat-publish: needs --compat-channel to publish on"
        );
        assert_eq!(
            load(&["--redis", "redis://h", "--redis-queue-limit", "0"]).unwrap_err(),
            "invalid --redis-queue-limit: must be at least 1"
        );
        assert_eq!(
            load(&["--redis", "redis://h", "--redis-queue-limit", "many"]).unwrap_err(),
            "invalid --redis-queue-limit: `many` is not a whole number"
        );
        assert_eq!(
            load(&["--redis", "redis://h", "--redis-prefix", ""]).unwrap_err(),
            "invalid --redis-prefix: must not be empty"
        );
        assert_eq!(
            load(&["--redis", "redis://h", "--compat-channel", ""]).unwrap_err(),
            "invalid --compat-channel: must not be empty"
        );
        assert_eq!(
            load(&["--redis", "redis://h", "--inbound-channel", ""]).unwrap_err(),
            "invalid --inbound-channel: must not be empty"
        );
        assert_eq!(
            load(&["--redis", "redis://h", "--no-inbound=perhaps"]).unwrap_err(),
            "invalid --no-inbound: expected true or false, got `perhaps`"
        );
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let _env = clean_env();
        let file = temp_file("precedence", "workers = 3\nslow_consumer = \"drop\"\nping_interval = 7\n");
        std::env::set_var("WSPUSH_WORKERS", "2");
        std::env::set_var("WSPUSH_PING_INTERVAL", "8");
        let s = load(&["--config", &file, "--workers", "1"]).unwrap();
        assert_eq!(s.engine.workers, 1, "flag");
        assert_eq!(s.engine.ping_interval, Duration::from_secs(8), "env over file");
        assert_eq!(s.engine.slow_consumer, SlowConsumerPolicy::Drop, "file over default");
        assert_eq!(s.engine.idle_timeout, Duration::from_secs(60), "default");
        let s = load(&["--config", &file]).unwrap();
        assert_eq!(s.engine.workers, 2, "env");
        std::env::remove_var("WSPUSH_WORKERS");
        let s = load(&["--config", &file]).unwrap();
        assert_eq!(s.engine.workers, 3, "file");
        let s = load(&[]).unwrap();
        assert_eq!(s.engine.workers, 0, "default");
        // The file itself may be named by the environment.
        std::env::set_var("WSPUSH_CONFIG", &file);
        assert_eq!(load(&[]).unwrap().engine.workers, 3);
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn every_setting_from_a_file() {
        let _env = clean_env();
        let file = temp_file(
            "all",
            r#"
            ws_listen = "127.0.0.1:9000"
            api_listen = "[::1]:9001"
            workers = 4
            path_prefix = "/ws/"
            max_message_size = "64KiB"
            max_buffered_bytes = 1000
            slow_consumer = "drop"
            max_node_buffered_bytes = "1MiB"
            max_inbound_messages_per_second = 50
            max_inbound_bytes_per_second = "64KiB"
            ping_interval = 0
            idle_timeout = 0
            max_connections = 10
            handshake_timeout = 3
            max_header_bytes = "4KiB"
            max_headers = 16
            command_queue_capacity = 128
            api_token = "s3cret"
            echo = true
            log = "debug"
            max_connections_per_ip = 7
            allowed_origins = "https://a.example, http://localhost:3000"
            auth_jwt_secret = "0123456789abcdef0123456789abcdef"
            auth_leeway = 5
            auth_audience = "aud"
            auth_issuer = "iss"
            auth_close_on_expiry = false
            "#,
        );
        let s = load(&["--config", &file]).unwrap();
        std::fs::remove_file(file).unwrap();
        let c = &s.engine;
        assert_eq!(c.ws_listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(s.api_listen, "[::1]:9001".parse().unwrap());
        assert_eq!((c.workers, c.path_prefix.as_str()), (4, "/ws/"));
        assert_eq!((c.max_message_size, c.max_buffered_bytes), (65_536, 1000));
        assert_eq!(c.slow_consumer, SlowConsumerPolicy::Drop);
        assert_eq!(c.max_node_buffered_bytes, Some(1 << 20));
        assert_eq!(c.max_inbound_messages_per_second, Some(50));
        assert_eq!(c.max_inbound_bytes_per_second, Some(65_536));
        assert_eq!((c.ping_interval, c.idle_timeout), (Duration::ZERO, Duration::ZERO));
        assert_eq!(c.max_connections, Some(10));
        assert_eq!(c.handshake_timeout, Duration::from_secs(3));
        assert_eq!((c.max_header_bytes, c.max_headers, c.command_queue_capacity), (4096, 16, 128));
        assert_eq!(s.api_token.as_deref(), Some("s3cret"));
        assert!(c.echo);
        assert_eq!(s.log, "debug");
        assert_eq!(c.max_connections_per_ip, Some(7));
        assert_eq!(
            c.allowed_origins.as_deref(),
            Some(&["https://a.example".to_owned(), "http://localhost:3000".to_owned()][..])
        );
        let auth = c.auth.as_ref().expect("auth");
        assert_eq!(auth.algorithm(), wspush::JwtAlgorithm::Hs256);
        assert_eq!(auth.leeway(), Duration::from_secs(5));
        assert_eq!((auth.audience(), auth.issuer()), (Some("aud"), Some("iss")));
        assert!(!auth.close_on_expiry());
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn auth_flags_reach_the_engine() {
        let _env = clean_env();
        let s = load(&[]).unwrap();
        assert!(s.engine.auth.is_none() && s.engine.allowed_origins.is_none());
        assert_eq!(s.engine.max_connections_per_ip, None);
        let auth = load(&["--auth-jwt-secret", SECRET]).unwrap().engine.auth.unwrap();
        assert_eq!(auth.leeway(), Duration::from_secs(30));
        assert_eq!((auth.audience(), auth.issuer(), auth.close_on_expiry()), (None, None, true));
        let auth = load(&[
            "--auth-jwt-secret",
            SECRET,
            "--auth-leeway",
            "0",
            "--auth-audience",
            "a",
            "--auth-issuer",
            "i",
            "--auth-close-on-expiry=no",
        ])
        .unwrap()
        .engine
        .auth
        .unwrap();
        assert_eq!(auth.leeway(), Duration::ZERO);
        assert_eq!((auth.audience(), auth.issuer(), auth.close_on_expiry()), (Some("a"), Some("i"), false));
        std::env::set_var("WSPUSH_AUTH_JWT_SECRET", SECRET);
        assert!(load(&[]).unwrap().engine.auth.is_some());
    }

    #[test]
    fn auth_errors_name_the_setting() {
        let _env = clean_env();
        assert_eq!(
            load(&["--auth-jwt-secret", "short"]).unwrap_err(),
            "invalid --auth-jwt-secret: the HS256 secret must be at least 32 bytes (RFC 7518 3.2), got 5"
        );
        let missing = std::env::temp_dir().join("wspush-cli-test-no-such-key.pem");
        let missing = missing.to_str().unwrap();
        let error = load(&["--auth-jwt-public-key", missing]).unwrap_err();
        assert!(
            error.starts_with(&format!("invalid --auth-jwt-public-key: cannot read {missing}: ")),
            "{error}"
        );
        let file = temp_file("not-a-key", "hello\n");
        let error = load(&["--auth-jwt-public-key", &file]).unwrap_err();
        assert!(error.starts_with("invalid --auth-jwt-public-key: the public key is not PEM"), "{error}");
        std::fs::write(&file, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let error = load(&["--auth-jwt-public-key", &file]).unwrap_err();
        assert!(error.contains("never the private one"), "{error}");
        assert_eq!(
            load(&["--auth-jwt-secret", SECRET, "--auth-jwt-public-key", &file]).unwrap_err(),
            "invalid --auth-jwt-public-key: give either --auth-jwt-secret or --auth-jwt-public-key, not both"
        );
        std::fs::remove_file(file).unwrap();
        for (args, flag) in [
            (&["--auth-leeway", "5"][..], "--auth-leeway"),
            (&["--auth-audience", "a"], "--auth-audience"),
            (&["--auth-issuer", "i"], "--auth-issuer"),
            (&["--auth-close-on-expiry=false"], "--auth-close-on-expiry"),
        ] {
            assert_eq!(
                load(args).unwrap_err(),
                format!("invalid {flag}: needs --auth-jwt-secret or --auth-jwt-public-key"),
                "{args:?}"
            );
        }
        assert_eq!(
            load(&["--auth-jwt-secret", SECRET, "--auth-leeway", "3601"]).unwrap_err(),
            "invalid --auth-leeway: at most 3600 seconds, got 3601"
        );
        assert_eq!(
            load(&["--auth-jwt-secret", SECRET, "--auth-audience", ""]).unwrap_err(),
            "invalid --auth-audience: must not be empty"
        );
        std::env::set_var("WSPUSH_AUTH_JWT_SECRET", "short");
        assert!(load(&[]).unwrap_err().starts_with("invalid WSPUSH_AUTH_JWT_SECRET: "));
    }

    #[test]
    fn origins_and_per_ip_limit() {
        let _env = clean_env();
        let s = load(&["--allowed-origins", " https://a.example ,, http://b.example:8080 "]).unwrap();
        assert_eq!(
            s.engine.allowed_origins,
            Some(vec!["https://a.example".to_owned(), "http://b.example:8080".to_owned()])
        );
        assert_eq!(
            load(&["--allowed-origins", " , "]).unwrap_err(),
            "invalid --allowed-origins: the list is empty"
        );
        assert_eq!(
            load(&["--allowed-origins", "https://a.example/app"]).unwrap_err(),
            "invalid --allowed-origins: `https://a.example/app` must be scheme://host[:port], without a path or user"
        );
        assert_eq!(load(&["--max-connections-per-ip", "3"]).unwrap().engine.max_connections_per_ip, Some(3));
        assert_eq!(
            load(&["--max-connections-per-ip", "0"]).unwrap_err(),
            "invalid --max-connections-per-ip: must be at least 1 (omit it for unlimited)"
        );
    }

    #[test]
    fn abuse_limits() {
        let _env = clean_env();
        let c = load(&[]).unwrap().engine;
        assert_eq!(
            (c.max_node_buffered_bytes, c.max_inbound_messages_per_second, c.max_inbound_bytes_per_second),
            (None, None, None),
            "unlimited by default"
        );
        let c = load(&[
            "--max-node-buffered-bytes",
            "64MiB",
            "--max-inbound-messages-per-second",
            "100",
            "--max-inbound-bytes-per-second",
            "1MB",
        ])
        .unwrap()
        .engine;
        assert_eq!(c.max_node_buffered_bytes, Some(64 << 20));
        assert_eq!(c.max_inbound_messages_per_second, Some(100));
        assert_eq!(c.max_inbound_bytes_per_second, Some(1_000_000));
        assert_eq!(
            load(&["--max-node-buffered-bytes", "1MiB"]).unwrap_err(),
            "invalid --max-node-buffered-bytes: must be at least max_buffered_bytes (4194304), got 1048576"
        );
        assert!(load(&["--max-node-buffered-bytes", "1MiB", "--max-buffered-bytes", "1MiB"]).is_ok());
        assert_eq!(
            load(&["--max-node-buffered-bytes", "0"]).unwrap_err(),
            "invalid --max-node-buffered-bytes: must be at least max_buffered_bytes (4194304), got 0"
        );
        assert_eq!(
            load(&["--max-inbound-messages-per-second", "0"]).unwrap_err(),
            "invalid --max-inbound-messages-per-second: must be at least 1 (omit it for unlimited)"
        );
        assert_eq!(
            load(&["--max-inbound-messages-per-second", "4294967296"]).unwrap_err(),
            "invalid --max-inbound-messages-per-second: `4294967296` is not a whole number up to 4294967295"
        );
        assert_eq!(
            load(&["--max-inbound-bytes-per-second", "0"]).unwrap_err(),
            "invalid --max-inbound-bytes-per-second: must be at least 1 (omit it for unlimited)"
        );
        std::env::set_var("WSPUSH_MAX_INBOUND_BYTES_PER_SECOND", "8KiB");
        std::env::set_var("WSPUSH_MAX_NODE_BUFFERED_BYTES", "2MiB");
        let s = load(&["--max-buffered-bytes", "3MiB"]);
        assert_eq!(
            s.unwrap_err(),
            "invalid WSPUSH_MAX_NODE_BUFFERED_BYTES: must be at least max_buffered_bytes (3145728), got 2097152"
        );
        let c = load(&["--max-buffered-bytes", "2MiB"]).unwrap().engine;
        assert_eq!((c.max_node_buffered_bytes, c.max_inbound_bytes_per_second), (Some(2 << 20), Some(8192)));
    }

    #[test]
    fn a_public_api_needs_a_token() {
        let _env = clean_env();
        let error = load(&["--api-listen", "0.0.0.0:8080"]).unwrap_err();
        assert_eq!(
            error,
            "invalid --api-listen: refusing to serve the HTTP API on 0.0.0.0:8080 without --api-token: anyone \
             who can reach it could push to every socket (keep it on 127.0.0.1, or set --api-token)"
        );
        assert!(load(&["--api-listen", "0.0.0.0:8080", "--api-token", "t"]).is_ok());
        assert!(load(&["--api-listen", "[::1]:8080"]).is_ok());
        assert!(load(&["--api-listen", "127.0.0.2:8080"]).is_ok());
        std::env::set_var("WSPUSH_API_LISTEN", "10.0.0.1:8080");
        assert!(load(&[]).unwrap_err().starts_with("invalid WSPUSH_API_LISTEN: refusing to serve"));
    }

    #[test]
    fn echo_is_a_flag_or_a_boolean() {
        let _env = clean_env();
        assert!(load(&["--echo"]).unwrap().engine.echo);
        assert!(!load(&["--echo=false"]).unwrap().engine.echo);
        std::env::set_var("WSPUSH_ECHO", "1");
        assert!(load(&[]).unwrap().engine.echo);
        assert_eq!(
            load(&["--echo=maybe"]).unwrap_err(),
            "invalid --echo: expected true or false, got `maybe`"
        );
    }

    #[test]
    fn errors_name_the_setting_and_its_source() {
        let _env = clean_env();
        assert_eq!(
            load(&["--workers", "0"]).unwrap_err(),
            "invalid --workers: must be between 1 and 256, got 0"
        );
        assert_eq!(
            load(&["--workers", "257"]).unwrap_err(),
            "invalid --workers: must be between 1 and 256, got 257"
        );
        assert_eq!(
            load(&["--slow-consumer", "maybe"]).unwrap_err(),
            "invalid --slow-consumer: expected `disconnect` or `drop`, got `maybe`"
        );
        assert_eq!(
            load(&["--ws-listen", "localhost"]).unwrap_err(),
            "invalid --ws-listen: `localhost` is not an address like 0.0.0.0:8081, 127.0.0.1:0 or [::1]:8081"
        );
        // What the engine's own check rejects is named the same way.
        assert_eq!(
            load(&["--max-message-size", "0"]).unwrap_err(),
            "invalid --max-message-size: must be at least 1"
        );
        assert!(load(&["--path-prefix", "ws"])
            .unwrap_err()
            .starts_with("invalid --path-prefix: must start and end"));
        assert_eq!(
            load(&["--max-connections", "0"]).unwrap_err(),
            "invalid --max-connections: must be at least 1 (omit it for unlimited)"
        );
        assert_eq!(
            load(&["--handshake-timeout", "0"]).unwrap_err(),
            "invalid --handshake-timeout: must be greater than zero"
        );
        assert!(load(&["--log", "info,,=[x"]).unwrap_err().starts_with("invalid --log: "));
        assert_eq!(load(&["--api-token", "a b"]).unwrap_err().split(':').next(), Some("invalid --api-token"));

        std::env::set_var("WSPUSH_MAX_BUFFERED_BYTES", "lots");
        assert!(load(&[])
            .unwrap_err()
            .starts_with("invalid WSPUSH_MAX_BUFFERED_BYTES: `lots` is not a size"));
        std::env::remove_var("WSPUSH_MAX_BUFFERED_BYTES");
        std::env::set_var("WSPUSH_MAX_MESSAGE_SIZE", "0");
        assert_eq!(load(&[]).unwrap_err(), "invalid WSPUSH_MAX_MESSAGE_SIZE: must be at least 1");
    }

    #[test]
    fn file_errors() {
        let _env = clean_env();
        let file = temp_file("unknown", "ws_listen = \"127.0.0.1:1\"\nworker = 2\n");
        let error = load(&["--config", &file]).unwrap_err();
        assert!(
            error.starts_with(&format!("invalid --config: unknown key `worker` in {file} (known keys: ")),
            "{error}"
        );
        std::fs::write(&file, "workers = 0\n").unwrap();
        assert_eq!(
            load(&["--config", &file]).unwrap_err(),
            format!("invalid workers in {file}: must be between 1 and 256, got 0")
        );
        std::fs::write(&file, "max_message_size = 0\n").unwrap();
        assert_eq!(
            load(&["--config", &file]).unwrap_err(),
            format!("invalid max_message_size in {file}: must be at least 1")
        );
        std::fs::write(&file, "workers = [1]\n").unwrap();
        assert_eq!(
            load(&["--config", &file]).unwrap_err(),
            format!("invalid --config: `workers` in {file} is a array; expected a string, an integer or a boolean")
        );
        std::fs::write(&file, "\nworkers = \n").unwrap();
        let error = load(&["--config", &file]).unwrap_err();
        assert!(
            error.starts_with(&format!("invalid --config: {file} is not valid TOML (line 2): ")),
            "{error}"
        );
        assert!(!error.contains('\n'), "{error}");
        std::fs::remove_file(&file).unwrap();
        let error = load(&["--config", &file]).unwrap_err();
        assert!(error.starts_with(&format!("invalid --config: cannot read {file}: ")), "{error}");
        // A valid flag still wins over a file value.
        std::fs::write(&file, "workers = 5\n").unwrap();
        std::env::set_var("WSPUSH_CONFIG", &file);
        std::env::set_var("WSPUSH_WORKERS", "x");
        assert_eq!(
            load(&[]).unwrap_err(),
            "invalid WSPUSH_WORKERS: `x` is not a number of workers (1 to 256)"
        );
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn log_precedence() {
        let _env = clean_env();
        let file = temp_file("log", "log = \"warn\"\n");
        assert_eq!(load(&["--config", &file]).unwrap().log, "warn");
        std::env::set_var("RUST_LOG", "debug");
        assert_eq!(load(&["--config", &file]).unwrap().log, "debug");
        std::env::set_var("WSPUSH_LOG", "trace");
        assert_eq!(load(&["--config", &file]).unwrap().log, "trace");
        assert_eq!(load(&["--config", &file, "--log", "error"]).unwrap().log, "error");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("64 kib"), Ok(65_536));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2kB"), Ok(2000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("10B"), Ok(10));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn clap_errors_stay_clap_errors() {
        let _env = clean_env();
        assert!(load(&["--no-such-flag"]).unwrap_err().starts_with("clap: "));
        match load_from(["wspush", "--help"]) {
            Err(LoadError::Clap(e)) => assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_setting_is_a_flag_with_its_variable_and_default_in_the_help() {
        let command = Cli::command();
        let help = command.clone().render_long_help().to_string();
        for key in Cli::keys() {
            let arg = command.get_arguments().find(|a| a.get_id() == key).unwrap_or_else(|| panic!("{key}"));
            assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()));
            assert_eq!(arg.get_env().map(|v| v.to_string_lossy().into_owned()), Some(env_name(key)));
            assert!(help.contains(&flag_name(key)), "{key}");
        }
        // One more argument: --config (plus help and version, which clap adds later).
        assert_eq!(command.get_arguments().count(), Cli::keys().len() + 1);
        let defaults = Config::default();
        for default in [
            "[default: 0.0.0.0:8081]".to_owned(),
            "[default: 127.0.0.1:8080]".to_owned(),
            format!("[default: {}]", defaults.max_message_size),
            format!("[default: {}]", defaults.max_buffered_bytes),
            format!("[default: {}]", defaults.ping_interval.as_secs()),
            format!("[default: {}]", defaults.idle_timeout.as_secs()),
            format!("[default: {}]", defaults.handshake_timeout.as_secs()),
            format!("[default: {}]", defaults.max_header_bytes),
            format!("[default: {}]", defaults.max_headers),
            format!("[default: {}]", defaults.command_queue_capacity),
            format!("[default: {}]", defaults.path_prefix),
            format!("[default: {}]", ClusterConfig::new("").prefix),
            format!("[default: {}]", ClusterConfig::new("").queue_limit),
        ] {
            assert!(help.contains(&default), "{default} missing from --help");
        }
    }
}
