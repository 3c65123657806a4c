//! The server's settings: command-line flags, `WSPUSH_*` environment variables and an
//! optional TOML file (`--config`), merged with the precedence flag > environment > file >
//! default, then checked. The flags and variables are made from the engine's one list of
//! settings ([`wspush::settings::SETTINGS`]), which the C ABI reads too. Every error names
//! the setting and where its value came from (`--workers`, `WSPUSH_WORKERS`, or
//! `workers in FILE`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use wspush::settings::{self, env_of, flag_of, ConfigBuilder, RawValue, Reason, Scope, Setting, SETTINGS};
use wspush::tls::{CertificateFiles, ServerTls};
use wspush::Config;

use crate::api_server::ApiLimits;

/// The log filter when neither `--log`, `WSPUSH_LOG`, `RUST_LOG` nor the file set one.
pub const DEFAULT_LOG: &str = "info";

/// The command line: `--config` and one flag per setting and per alias of a setting (the
/// aliases hidden from `--help`). Every setting is optional here, so that a value missing
/// from the command line and the environment can still come from the file.
pub fn command() -> Command {
    let mut command =
        Command::new("wspush")
            .version(wspush::VERSION)
            .about(
                "wspush: a WebSocket delivery engine. Runs one node: WebSocket clients connect to \
             ws://HOST:8081/websocket/{id}, and the HTTP API pushes messages to every socket of an id. \
             With --redis, any number of nodes share their sockets through Redis.",
            )
            .after_help(
                "Every setting can also be given as a WSPUSH_* environment variable (shown above) or as a \
             key of the TOML file given with --config (the flag name with underscores, e.g. \
             ws_listen = \"0.0.0.0:9000\"). Precedence: flag > environment > file > default.\n\
             Sizes are bytes, optionally with a suffix: KiB, MiB, GiB (x1024) or kB, MB, GB (x1000). \
             Durations are seconds, optionally with a unit: ms, s, m, h (e.g. 500ms).",
            )
            .arg(
                Arg::new("config")
                    .long("config")
                    .env("WSPUSH_CONFIG")
                    .value_name("FILE")
                    .help("Read settings from this TOML file; keys are the flag names with underscores"),
            )
            .arg(Arg::new("check").long("check").action(ArgAction::SetTrue).help(
                "Check the settings (flags, variables, the --config file) and exit: 0 if valid, 2 if not",
            ))
            .arg(Arg::new("example_config").long("example-config").action(ArgAction::SetTrue).help(
                "Print a configuration file with every setting commented out, with its default, and exit",
            ));
    for setting in SETTINGS {
        command = command.arg(flag(setting, setting.key, false));
        for alias in setting.aliases {
            command = command.arg(flag(setting, alias.name, true));
        }
    }
    command
}

/// The flag and variable of `setting` under `name` (its key, or an alias).
fn flag(setting: &Setting, name: &'static str, hidden: bool) -> Arg {
    let mut arg = Arg::new(name)
        .long(flag_of(name).trim_start_matches('-').to_owned())
        .env(env_of(name))
        .value_name(setting.value_name)
        .action(ArgAction::Set)
        .hide(hidden)
        .hide_env_values(setting.secret)
        .help(format!("{} [default: {}]", setting.help, setting.default));
    if let Some(heading) = setting.group.heading() {
        arg = arg.help_heading(heading);
    }
    if setting.is_switch() {
        arg = arg.num_args(0..=1).require_equals(true).default_missing_value("true");
    }
    arg
}

/// Every name a setting may be given by: the keys and the aliases.
fn names() -> impl Iterator<Item = &'static str> {
    SETTINGS
        .iter()
        .flat_map(|setting| std::iter::once(setting.key).chain(setting.aliases.iter().map(|a| a.name)))
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
    /// The API's timeouts and connection cap.
    pub api_limits: ApiLimits,
    /// `https://` on the API (`--api-tls-cert`), its certificate loaded and checked.
    pub api_tls: Option<Arc<ServerTls>>,
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

/// What the command line asks for.
#[derive(Debug)]
pub enum Request {
    /// Serve with these settings.
    Serve(Box<Settings>),
    /// `--check`: the settings are valid; exit without serving.
    Check,
    /// `--example-config`: print the example configuration file and exit.
    ExampleConfig,
}

/// What the process's arguments ask for, with the settings from them, the environment and
/// the `--config` file.
pub fn request() -> Result<Request, LoadError> {
    let matches = command().try_get_matches_from(std::env::args_os()).map_err(LoadError::Clap)?;
    if matches.get_flag("example_config") {
        return Ok(Request::ExampleConfig);
    }
    let settings = settings_from(&matches)?;
    Ok(if matches.get_flag("check") { Request::Check } else { Request::Serve(Box::new(settings)) })
}

/// Loads the settings from `args` (the program name first), the environment and the
/// `--config` file.
#[cfg(test)]
pub fn load_from<I, T>(args: I) -> Result<Settings, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    settings_from(&command().try_get_matches_from(args).map_err(LoadError::Clap)?)
}

/// The settings from parsed arguments, the environment and the `--config` file.
fn settings_from(matches: &ArgMatches) -> Result<Settings, LoadError> {
    let mut sources = Sources::default();
    if let Some(path) = matches.get_one::<String>("config") {
        let origin = origin_of(matches, "config").to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SettingError {
            setting: origin.clone(),
            reason: format!("cannot read {path}: {e}"),
        })?;
        sources.add_file(path, &text).map_err(|reason| SettingError { setting: origin, reason })?;
    }
    for name in names() {
        if let Some(value) = matches.get_one::<String>(name) {
            sources.add(name, value.clone(), origin_of(matches, name));
        }
    }
    Ok(sources.resolve()?)
}

/// Where a value given to clap came from: its flag or its environment variable.
fn origin_of(matches: &ArgMatches, name: &'static str) -> Origin {
    match matches.value_source(name) {
        Some(ValueSource::EnvVariable) => Origin::Env(name),
        _ => Origin::Flag(name),
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
            Origin::Flag(name) => f.write_str(&flag_of(name)),
            Origin::Env(name) => f.write_str(&env_of(name)),
            Origin::File(name, path) => write!(f, "{name} in {path}"),
        }
    }
}

/// The raw value of each setting that was given, by the name it was given under, with where
/// it came from. The file is added first, so the command line and environment replace it.
#[derive(Debug, Default)]
struct Sources {
    /// In the order given: a later value of the same setting replaces an earlier one.
    values: Vec<(&'static str, String, Origin)>,
}

impl Sources {
    fn add(&mut self, name: &'static str, value: String, origin: Origin) {
        self.values.push((name, value, origin));
    }

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
        for (key, value) in table {
            let Some(name) = names().find(|known| *known == key) else {
                let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
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
            self.add(name, value, Origin::File(name, path.to_owned()));
        }
        Ok(())
    }

    /// Where the value given under `name` came from (its flag when it was not given).
    /// The API's TLS from `api_tls_cert`, `api_tls_key` and `api_tls_client_ca`, loaded.
    fn api_tls(&self, server: &settings::ServerSettings) -> Result<Option<Arc<ServerTls>>, SettingError> {
        let error = |key: &str, reason: String| SettingError { setting: self.origin(key), reason };
        let files = match (&server.api_tls_cert, &server.api_tls_key) {
            (None, None) => {
                if server.api_tls_client_ca.is_some() {
                    return Err(error("api_tls_client_ca", "needs api_tls_cert and api_tls_key".into()));
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => CertificateFiles { cert: cert.clone(), key: key.clone() },
            (Some(_), None) => return Err(error("api_tls_key", "api_tls_cert needs api_tls_key too".into())),
            (None, Some(_)) => {
                return Err(error("api_tls_cert", "api_tls_key needs api_tls_cert too".into()))
            }
        };
        ServerTls::new(files, server.api_tls_client_ca.as_deref()).map(|tls| Some(Arc::new(tls))).map_err(
            |e| {
                let key = match e.setting {
                    "tls_cert" => "api_tls_cert",
                    "tls_key" => "api_tls_key",
                    _ => "api_tls_client_ca",
                };
                error(key, e.reason)
            },
        )
    }

    fn origin(&self, name: &str) -> String {
        // The last value given under `name` is the one that counts.
        self.values
            .iter()
            .rev()
            .find(|(given, ..)| *given == name)
            .map_or_else(|| flag_of(name), |(_, _, origin)| origin.to_string())
    }

    fn error(&self, error: settings::SettingError) -> SettingError {
        let reason = match error.reason {
            Reason::Invalid(reason) => reason,
            Reason::Unknown => "not a setting of the server".into(),
            Reason::NeedsRedis => format!("needs {}", flag_of("redis")),
            Reason::NeedsAuthKey => {
                format!("needs {} or {}", flag_of("auth_jwt_secret"), flag_of("auth_jwt_public_key"))
            }
            Reason::BothAuthKeys => format!(
                "give either {} or {}, not both",
                flag_of("auth_jwt_secret"),
                flag_of("auth_jwt_public_key")
            ),
        };
        SettingError { setting: self.origin(&error.name), reason }
    }

    /// Applies the values over the defaults and checks the result as the engine will.
    fn resolve(&self) -> Result<Settings, SettingError> {
        let mut builder = ConfigBuilder::new(Scope::ServerOnly);
        let mut log_from_command_line = false;
        for (name, value, origin) in &self.values {
            let setting = builder.set(name, RawValue::Text(value)).map_err(|e| self.error(e))?;
            if setting.key == "log" {
                log_from_command_line = !matches!(origin, Origin::File(..));
            }
        }
        let (engine, server) = builder.build(&flag_of).map_err(|e| self.error(e))?;
        // The command line and WSPUSH_LOG come first, then RUST_LOG, then the file.
        let log = match (&server.log, log_from_command_line) {
            (Some(log), true) => {
                Some(parse_log(log).map_err(|reason| SettingError { setting: self.origin("log"), reason })?)
            }
            (file, _) => match std::env::var("RUST_LOG") {
                Ok(filter) if !filter.trim().is_empty() => Some(
                    parse_log(&filter)
                        .map_err(|reason| SettingError { setting: "RUST_LOG".into(), reason })?,
                ),
                _ => file
                    .as_deref()
                    .map(parse_log)
                    .transpose()
                    .map_err(|reason| SettingError { setting: self.origin("log"), reason })?,
            },
        };
        let api_listen = server.api_listen.expect("the server's default API address");
        if !api_listen.ip().is_loopback() && server.api_token.is_none() {
            return Err(SettingError {
                setting: self.origin("api_listen"),
                reason: format!(
                    "refusing to serve the HTTP API on {api_listen} without --api-token: anyone who can \
                     reach it could push to every socket (keep it on 127.0.0.1, or set --api-token)"
                ),
            });
        }
        let api_tls = self.api_tls(&server)?;
        Ok(Settings {
            engine,
            api_listen,
            api_tls,
            api_token: server.api_token,
            api_limits: ApiLimits {
                header_timeout: enabled(server.api_header_timeout),
                body_timeout: enabled(server.api_body_timeout),
                idle_timeout: enabled(server.api_idle_timeout),
                max_connections: server.api_max_connections.expect("the server's default API connection cap"),
            },
            log: log.unwrap_or_else(|| DEFAULT_LOG.to_owned()),
        })
    }
}

/// A timeout as the server uses it: zero (or not given) is none.
fn enabled(timeout: Option<Duration>) -> Option<Duration> {
    timeout.filter(|timeout| !timeout.is_zero())
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
    use std::time::Duration;

    use wspush::settings::{parse_size, Needs};
    use wspush::{ClusterConfig, SlowConsumerPolicy};

    use super::*;
    use crate::example_config::{self, literal_default};

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
        let command = command();
        let help = command.clone().render_long_help().to_string();
        for setting in SETTINGS {
            let key = setting.key;
            let arg = command.get_arguments().find(|a| a.get_id() == key).unwrap_or_else(|| panic!("{key}"));
            assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()));
            assert_eq!(arg.get_env().map(|v| v.to_string_lossy().into_owned()), Some(env_of(key)));
            assert!(help.contains(&flag_of(key)), "{key}");
            assert!(
                help.contains(&format!("[default: {}]", setting.default)),
                "{key}: default missing from --help"
            );
            for alias in setting.aliases {
                let arg = command.get_arguments().find(|a| a.get_id() == alias.name).unwrap();
                assert!(arg.is_hide_set(), "the alias {} is accepted but not shown", alias.name);
            }
        }
        // Three more arguments: --config, --check and --example-config (plus help and
        // version, which clap adds later).
        assert_eq!(command.get_arguments().count(), names().count() + 3);
    }

    /// README's settings table is the table of [`SETTINGS`]: one row per setting, in order,
    /// with its flag, variable, key, default and C/Java key.
    #[test]
    fn readme_lists_every_setting_as_declared() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let rows: Vec<Vec<String>> = readme
            .lines()
            .skip_while(|line| !line.starts_with("| Flag | Environment | TOML key | C/Java key | Default |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| line.split(" | ").map(|cell| cell.trim_matches(['|', ' ']).to_owned()).collect())
            .collect();
        let settings: Vec<&Setting> = SETTINGS.iter().collect();
        assert_eq!(rows.len(), settings.len() + 1, "README's table has one row per setting plus --config");
        for (row, setting) in rows[1..].iter().zip(settings) {
            let placeholder =
                if setting.is_switch() { "[=BOOL]".to_owned() } else { format!(" {}", setting.value_name) };
            assert_eq!(row[0], format!("`{}{placeholder}`", setting.flag()), "{}", setting.key);
            assert!(row[1].starts_with(&format!("`{}`", setting.env())), "{}: {}", setting.key, row[1]);
            assert_eq!(row[2], format!("`{}`", setting.key));
            let c_key = match setting.scope {
                Scope::Everywhere => format!("`{}`", setting.key),
                Scope::ServerOnly => "—".to_owned(),
            };
            assert_eq!(row[3], c_key, "{}", setting.key);
            assert_eq!(row[4], format!("`{}`", setting.default), "{}", setting.key);
        }
    }

    /// `docs/wspush.example.toml` is what `wspush --example-config` prints now; as it is it
    /// changes nothing, and each default it shows, uncommented alone, is the default indeed.
    #[test]
    fn the_example_config_is_current_and_shows_the_real_defaults() {
        let _env = clean_env();
        const COMMITTED_PATH: &str = "docs/wspush.example.toml";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wspush.example.toml");
        let committed = std::fs::read_to_string(path).unwrap();
        assert!(
            committed == example_config::render(),
            "{COMMITTED_PATH} is stale: regenerate it with \
             `cargo run --bin wspush -- --example-config > {COMMITTED_PATH}`"
        );
        let settings = |text: &str, name: &str| {
            let file = temp_file(name, text);
            let loaded = load(&["--config", &file]).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            std::fs::remove_file(file).unwrap();
            format!("{loaded:?}")
        };
        assert_eq!(settings(&committed, "example"), format!("{:?}", load(&[]).unwrap()));
        let mut shown = 0;
        for setting in SETTINGS {
            let Some(default) = literal_default(setting) else { continue };
            let prerequisite = match setting.needs {
                Needs::Nothing => "",
                Needs::Redis => "redis = \"redis://127.0.0.1:6379\"\n",
                Needs::AuthKey => "auth_jwt_secret = \"an-example-secret-of-32-bytes-or-more\"\n",
            };
            let line = format!("\n#{} = ", setting.key);
            let uncommented = committed.replace(&line, &line.replacen('#', "", 1));
            assert_ne!(uncommented, committed, "{}", setting.key);
            assert_eq!(
                settings(&format!("{prerequisite}{uncommented}"), setting.key),
                settings(prerequisite, "prerequisite"),
                "{} = {default} is not the default",
                setting.key
            );
            shown += 1;
        }
        assert!(shown >= SETTINGS.len() / 2, "only {shown} defaults are shown as values");
    }
}
