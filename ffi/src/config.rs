//! The engine's settings as JSON: one table maps each key to the setting it sets, so adding
//! a key is one line in [`SETTINGS`]; a key not in the table is an error.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use engine::{ClusterConfig, Config, JwtAuth, JwtKey, SlowConsumerPolicy};
use serde_json::{Map, Value};

use crate::error::Failure;
use crate::status::wspush_status;

/// Sets one setting from its JSON value.
type Apply = fn(&mut Draft, &Setting<'_>) -> Result<(), Failure>;

/// Every key the configuration may have, with what it sets. Durations are milliseconds
/// (keys ending in `_ms`); sizes are bytes. The `redis*`, `node_id`, `compat_*` and
/// `*inbound*` keys configure cluster mode, which `redis` turns on. The other `auth_*` keys
/// refine the token checks that `auth_jwt_secret` or `auth_jwt_public_key` turn on.
const SETTINGS: &[(&str, Apply)] = &[
    ("ws_listen", |c, v| v.nullable(Setting::socket_addr).map(|x| c.ws_listen = x)),
    ("workers", |c, v| v.usize().map(|x| c.workers = x)),
    ("path_prefix", |c, v| v.string().map(|x| c.path_prefix = x)),
    ("max_message_size", |c, v| v.usize().map(|x| c.max_message_size = x)),
    ("max_buffered_bytes", |c, v| v.usize().map(|x| c.max_buffered_bytes = x)),
    ("slow_consumer", |c, v| v.parse::<SlowConsumerPolicy>().map(|x| c.slow_consumer = x)),
    ("ping_interval_ms", |c, v| v.millis().map(|x| c.ping_interval = x)),
    ("idle_timeout_ms", |c, v| v.millis().map(|x| c.idle_timeout = x)),
    ("max_connections", |c, v| v.nullable(Setting::usize).map(|x| c.max_connections = x)),
    ("handshake_timeout_ms", |c, v| v.millis().map(|x| c.handshake_timeout = x)),
    ("max_header_bytes", |c, v| v.usize().map(|x| c.max_header_bytes = x)),
    ("max_headers", |c, v| v.usize().map(|x| c.max_headers = x)),
    ("command_queue_capacity", |c, v| v.usize().map(|x| c.command_queue_capacity = x)),
    ("echo", |c, v| v.bool().map(|x| c.echo = x)),
    ("redis", |c, v| v.string().map(|x| cluster(c).redis_url = x)),
    ("redis_prefix", |c, v| v.string().map(|x| cluster(c).prefix = x)),
    ("redis_queue_limit", |c, v| v.usize().map(|x| cluster(c).queue_limit = x)),
    ("node_id", |c, v| v.nullable(Setting::string).map(|x| cluster(c).node_id = x)),
    ("compat_channel", |c, v| v.nullable(Setting::string).map(|x| cluster(c).compat_channel = x)),
    ("compat_publish", |c, v| v.bool().map(|x| cluster(c).compat_publish = x)),
    ("publish_inbound", |c, v| v.bool().map(|x| cluster(c).publish_inbound = x)),
    ("inbound_channel", |c, v| v.nullable(Setting::string).map(|x| cluster(c).inbound_channel = x)),
    ("auth_jwt_secret", |c, v| v.nullable(Setting::string).map(|x| c.auth.secret = x)),
    ("auth_jwt_public_key", |c, v| v.nullable(Setting::string).map(|x| c.auth.public_key = x)),
    ("auth_leeway_ms", |c, v| v.millis().map(|x| c.auth.leeway = Some(x))),
    ("auth_audience", |c, v| v.nullable(Setting::string).map(|x| c.auth.audience = x)),
    ("auth_issuer", |c, v| v.nullable(Setting::string).map(|x| c.auth.issuer = x)),
    ("auth_close_on_expiry", |c, v| v.bool().map(|x| c.auth.close_on_expiry = Some(x))),
    ("allowed_origins", |c, v| v.nullable(Setting::strings).map(|x| c.allowed_origins = x)),
    ("max_connections_per_ip", |c, v| v.nullable(Setting::usize).map(|x| c.max_connections_per_ip = x)),
    ("max_inbound_messages_per_second", |c, v| {
        v.nullable(Setting::u32).map(|x| c.max_inbound_messages_per_second = x)
    }),
    ("max_inbound_bytes_per_second", |c, v| {
        v.nullable(Setting::u64).map(|x| c.max_inbound_bytes_per_second = x)
    }),
    ("max_node_buffered_bytes", |c, v| v.nullable(Setting::usize).map(|x| c.max_node_buffered_bytes = x)),
];

/// The keys that give the token checks their key; the other `auth_*` keys need one of them.
const AUTH_KEYS: [&str; 2] = ["auth_jwt_secret", "auth_jwt_public_key"];

/// A configuration being read: the engine's settings, plus the token settings, which are
/// collected first because a [`JwtAuth`] cannot exist before its key (and a JSON object's
/// keys come in any order). Derefs to the [`Config`], so most table entries set it directly.
#[derive(Default)]
struct Draft {
    config: Config,
    auth: AuthDraft,
}

impl Deref for Draft {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.config
    }
}

impl DerefMut for Draft {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// The `auth_*` keys as given. No `Debug`: it holds the secret.
#[derive(Default)]
struct AuthDraft {
    secret: Option<String>,
    public_key: Option<String>,
    leeway: Option<Duration>,
    audience: Option<String>,
    issuer: Option<String>,
    close_on_expiry: Option<bool>,
}

impl AuthDraft {
    /// The token checks (`None` without a key) and the JSON key that gave the key; `given` is
    /// the whole configuration, to name a token setting given without a key.
    fn build(self, given: &Map<String, Value>) -> Result<(Option<JwtAuth>, &'static str), Failure> {
        let (key, key_name) = match (self.secret, self.public_key) {
            (Some(_), Some(_)) => {
                return Err(invalid_config(format!(
                    "invalid setting `{}`: give either `{}` or `{}`, not both",
                    AUTH_KEYS[1], AUTH_KEYS[0], AUTH_KEYS[1]
                )))
            }
            (Some(secret), None) => (JwtKey::Hs256Secret(secret.into_bytes()), AUTH_KEYS[0]),
            (None, Some(pem)) => (JwtKey::PublicKeyPem(pem.into_bytes()), AUTH_KEYS[1]),
            (None, None) => {
                return match given
                    .keys()
                    .find(|key| key.starts_with("auth_") && !AUTH_KEYS.contains(&key.as_str()))
                {
                    Some(key) => Err(invalid_config(format!(
                        "invalid setting `{key}`: token settings need `{}` or `{}`",
                        AUTH_KEYS[0], AUTH_KEYS[1]
                    ))),
                    None => Ok((None, AUTH_KEYS[0])),
                };
            }
        };
        let mut auth = JwtAuth::new(key).map_err(|error| match error {
            engine::Error::InvalidConfig { reason, .. } => {
                invalid_config(format!("invalid setting `{key_name}`: {reason}"))
            }
            other => Failure::from(other),
        })?;
        if let Some(leeway) = self.leeway {
            auth = auth.with_leeway(leeway);
        }
        if let Some(audience) = self.audience {
            auth = auth.with_audience(audience);
        }
        if let Some(issuer) = self.issuer {
            auth = auth.with_issuer(issuer);
        }
        if let Some(close) = self.close_on_expiry {
            auth = auth.with_close_on_expiry(close);
        }
        Ok((Some(auth), key_name))
    }
}

/// The cluster settings, created (without a Redis URL yet) by the first cluster key.
fn cluster(config: &mut Config) -> &mut ClusterConfig {
    config.cluster.get_or_insert_with(|| ClusterConfig::new(""))
}

/// Parses and checks a configuration: a JSON object whose keys are in [`SETTINGS`];
/// missing keys keep the engine's defaults (no listener, one worker per CPU, ...).
pub(crate) fn parse(json: &str) -> Result<Config, Failure> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| invalid_config(format!("the configuration is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid_config(format!("the configuration must be a JSON object, got {}", kind(&value))));
    };
    let mut draft = Draft::default();
    for (key, value) in &map {
        let Some((_, apply)) = SETTINGS.iter().find(|(name, _)| name == key) else {
            let known: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
            return Err(invalid_config(format!(
                "unknown setting `{key}`; the settings are {}",
                known.join(", ")
            )));
        };
        apply(&mut draft, &Setting { key, value })?;
    }
    let (auth, auth_key) = draft.auth.build(&map)?;
    let mut config = draft.config;
    config.auth = auth;
    if let Some(cluster) = &config.cluster {
        if cluster.redis_url.is_empty() {
            let key = map.keys().find(|key| *key != "redis").map_or("redis", String::as_str);
            return Err(invalid_config(format!(
                "invalid setting `{key}`: cluster settings need `redis` (a Redis URL)"
            )));
        }
    }
    config.validate().map_err(|error| match error {
        engine::Error::InvalidConfig { setting, reason } => {
            invalid_config(format!("invalid setting `{}`: {reason}", json_key(setting, auth_key)))
        }
        other => Failure::from(other),
    })?;
    Ok(config)
}

/// The JSON key of an engine setting: `auth.key` is the key the token key came from
/// (`auth_key`), a dotted name is joined with `_` (`auth.leeway`), and durations carry their
/// unit (`idle_timeout_ms`, `auth_leeway_ms`).
fn json_key(setting: &str, auth_key: &str) -> String {
    if setting == "auth.key" {
        return auth_key.to_owned();
    }
    let flat = setting.replace('.', "_");
    let with_unit = format!("{flat}_ms");
    if SETTINGS.iter().any(|(name, _)| *name == with_unit) {
        with_unit
    } else {
        flat
    }
}

fn invalid_config(message: String) -> Failure {
    Failure::new(wspush_status::InvalidConfig, message)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One key and its value, with the conversions the settings need.
struct Setting<'a> {
    key: &'a str,
    value: &'a Value,
}

impl Setting<'_> {
    fn bad(&self, expected: &str) -> Failure {
        // Never echo what was given as a secret, even of the wrong type.
        let got =
            if self.key.contains("secret") { kind(self.value).to_owned() } else { self.value.to_string() };
        invalid_config(format!("invalid setting `{}`: expected {expected}, got {got}", self.key))
    }

    /// `null` is `None`, anything else goes through `convert`.
    fn nullable<T>(&self, convert: fn(&Self) -> Result<T, Failure>) -> Result<Option<T>, Failure> {
        if self.value.is_null() {
            Ok(None)
        } else {
            convert(self).map(Some)
        }
    }

    fn usize(&self) -> Result<usize, Failure> {
        self.value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.bad("a non-negative integer"))
    }

    fn u32(&self) -> Result<u32, Failure> {
        self.value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| self.bad("a 32-bit non-negative integer"))
    }

    fn u64(&self) -> Result<u64, Failure> {
        self.value.as_u64().ok_or_else(|| self.bad("a non-negative integer"))
    }

    fn millis(&self) -> Result<Duration, Failure> {
        self.value
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| self.bad("a non-negative integer (milliseconds)"))
    }

    fn bool(&self) -> Result<bool, Failure> {
        self.value.as_bool().ok_or_else(|| self.bad("true or false"))
    }

    fn string(&self) -> Result<String, Failure> {
        self.value.as_str().map(str::to_owned).ok_or_else(|| self.bad("a string"))
    }

    fn strings(&self) -> Result<Vec<String>, Failure> {
        let items = self.value.as_array().ok_or_else(|| self.bad("an array of strings"))?;
        items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| self.bad("an array of strings")))
            .collect()
    }

    fn socket_addr(&self) -> Result<SocketAddr, Failure> {
        let text = self.value.as_str().ok_or_else(|| self.bad("a string \"IP:PORT\" or null"))?;
        text.parse().map_err(|_| {
            invalid_config(format!(
                "invalid setting `{}`: expected IP:PORT (e.g. \"127.0.0.1:8081\", port 0 for any free port), got `{text}`",
                self.key
            ))
        })
    }

    fn parse<T: std::str::FromStr<Err = String>>(&self) -> Result<T, Failure> {
        let text = self.value.as_str().ok_or_else(|| self.bad("a string"))?;
        text.parse().map_err(|reason| invalid_config(format!("invalid setting `{}`: {reason}", self.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> String {
        let failure = parse(json).unwrap_err();
        assert_eq!(failure.status, wspush_status::InvalidConfig, "{failure:?}");
        failure.message
    }

    #[test]
    fn an_empty_object_gives_the_engines_defaults() {
        let config = parse("{}").unwrap();
        let default = Config::default();
        assert_eq!(config.ws_listen, None);
        assert_eq!(config.workers, default.workers);
        assert_eq!(config.idle_timeout, default.idle_timeout);
        assert!(config.cluster.is_none());
    }

    #[test]
    fn every_key_sets_its_setting() {
        let config = parse(
            r#"{"ws_listen": "127.0.0.1:0", "workers": 3, "path_prefix": "/ws/", "max_message_size": 1000,
                "max_buffered_bytes": 2000, "slow_consumer": "drop", "ping_interval_ms": 1500,
                "idle_timeout_ms": 0, "max_connections": 7, "handshake_timeout_ms": 250,
                "max_header_bytes": 4096, "max_headers": 16, "command_queue_capacity": 64, "echo": true}"#,
        )
        .unwrap();
        assert_eq!(config.ws_listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(config.workers, 3);
        assert_eq!(config.path_prefix, "/ws/");
        assert_eq!(config.max_message_size, 1000);
        assert_eq!(config.max_buffered_bytes, 2000);
        assert_eq!(config.slow_consumer, SlowConsumerPolicy::Drop);
        assert_eq!(config.ping_interval, Duration::from_millis(1500));
        assert_eq!(config.idle_timeout, Duration::ZERO);
        assert_eq!(config.max_connections, Some(7));
        assert_eq!(config.handshake_timeout, Duration::from_millis(250));
        assert_eq!(config.max_header_bytes, 4096);
        assert_eq!(config.max_headers, 16);
        assert_eq!(config.command_queue_capacity, 64);
        assert!(config.echo);
        let config = parse(r#"{"ws_listen": null, "max_connections": null}"#).unwrap();
        assert_eq!((config.ws_listen, config.max_connections), (None, None));
    }

    #[test]
    fn the_abuse_limits_are_settings_too() {
        let config = parse(
            r#"{"max_inbound_messages_per_second": 50, "max_inbound_bytes_per_second": 65536,
                "max_node_buffered_bytes": 67108864}"#,
        )
        .unwrap();
        assert_eq!(config.max_inbound_messages_per_second, Some(50));
        assert_eq!(config.max_inbound_bytes_per_second, Some(65536));
        assert_eq!(config.max_node_buffered_bytes, Some(64 << 20));
        assert!(
            error(r#"{"max_inbound_messages_per_second": 0}"#).contains("max_inbound_messages_per_second")
        );
        assert!(error(r#"{"max_node_buffered_bytes": 1024}"#).contains("max_node_buffered_bytes"));
    }

    #[test]
    fn redis_turns_on_cluster_mode() {
        let config = parse(
            r#"{"redis": "redis://127.0.0.1:6379", "redis_prefix": "app:", "node_id": "n1",
                "compat_channel": "legacy", "compat_publish": true, "redis_queue_limit": 10,
                "publish_inbound": false, "inbound_channel": "in"}"#,
        )
        .unwrap();
        let cluster = config.cluster.unwrap();
        assert_eq!(cluster.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(cluster.prefix, "app:");
        assert_eq!(cluster.node_id.as_deref(), Some("n1"));
        assert_eq!(cluster.compat_channel.as_deref(), Some("legacy"));
        assert!(cluster.compat_publish);
        assert_eq!(cluster.queue_limit, 10);
        assert!(!cluster.publish_inbound);
        assert_eq!(cluster.inbound_channel.as_deref(), Some("in"));
        assert_eq!(
            error(r#"{"node_id": "n1"}"#),
            "invalid setting `node_id`: cluster settings need `redis` (a Redis URL)"
        );
    }

    #[test]
    fn unknown_keys_are_errors_that_list_the_keys() {
        let message = error(r#"{"workers": 1, "wokers": 2}"#);
        assert!(
            message.starts_with("unknown setting `wokers`; the settings are ws_listen, workers,"),
            "{message}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        assert_eq!(
            error(r#"{"workers": -1}"#),
            "invalid setting `workers`: expected a non-negative integer, got -1"
        );
        assert_eq!(
            error(r#"{"workers": 1.5}"#),
            "invalid setting `workers`: expected a non-negative integer, got 1.5"
        );
        assert_eq!(
            error(r#"{"echo": "yes"}"#),
            "invalid setting `echo`: expected true or false, got \"yes\""
        );
        assert_eq!(
            error(r#"{"slow_consumer": "maybe"}"#),
            "invalid setting `slow_consumer`: expected `disconnect` or `drop`, got `maybe`"
        );
        assert!(error(r#"{"ws_listen": "localhost"}"#)
            .starts_with("invalid setting `ws_listen`: expected IP:PORT"));
        assert_eq!(
            error(r#"{"path_prefix": null}"#),
            "invalid setting `path_prefix`: expected a string, got null"
        );
    }

    #[test]
    fn the_engines_checks_apply_and_name_the_json_key() {
        assert_eq!(error(r#"{"workers": 1000}"#), "invalid setting `workers`: at most 256, got 1000");
        assert_eq!(
            error(r#"{"handshake_timeout_ms": 0}"#),
            "invalid setting `handshake_timeout_ms`: must be greater than zero"
        );
        assert!(error(r#"{"redis": "not a url"}"#).starts_with("invalid setting `redis`:"));
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const EC_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----\n\
        MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAErbPBIEUsZ+26OAPaHfqrk3BeXJBE\n\
        Ab5B1BCFZM3wl1XNVXmPOXT/g2dppkdFjhpFIg5lTGJYQu1vFJFC4lNqeQ==\n\
        -----END PUBLIC KEY-----\n";

    #[test]
    fn the_security_keys_set_their_settings() {
        let config = parse(&format!(
            r#"{{"auth_jwt_secret": "{SECRET}", "auth_leeway_ms": 5000, "auth_audience": "wspush",
                "auth_issuer": "https://issuer.example", "auth_close_on_expiry": false,
                "allowed_origins": ["https://app.example", "http://localhost:3000"],
                "max_connections_per_ip": 4}}"#
        ))
        .unwrap();
        let auth = config.auth.unwrap();
        assert_eq!(auth.algorithm(), engine::JwtAlgorithm::Hs256);
        assert_eq!(auth.leeway(), Duration::from_secs(5));
        assert_eq!(auth.audience(), Some("wspush"));
        assert_eq!(auth.issuer(), Some("https://issuer.example"));
        assert!(!auth.close_on_expiry());
        assert_eq!(
            config.allowed_origins,
            Some(vec!["https://app.example".to_owned(), "http://localhost:3000".to_owned()])
        );
        assert_eq!(config.max_connections_per_ip, Some(4));

        let json = serde_json::json!({ "auth_jwt_public_key": EC_PUBLIC_KEY }).to_string();
        let auth = parse(&json).unwrap().auth.unwrap();
        assert_eq!(auth.algorithm(), engine::JwtAlgorithm::Es256);
        assert_eq!(auth.leeway(), Duration::from_secs(30));
        assert!(auth.close_on_expiry());

        let config = parse(
            r#"{"auth_jwt_secret": null, "auth_jwt_public_key": null, "allowed_origins": null,
                "max_connections_per_ip": null}"#,
        )
        .unwrap();
        assert!(config.auth.is_none());
        assert_eq!((config.allowed_origins, config.max_connections_per_ip), (None, None));
    }

    #[test]
    fn token_settings_need_exactly_one_key() {
        for (key, value) in [
            ("auth_leeway_ms", "1000"),
            ("auth_audience", "\"a\""),
            ("auth_issuer", "null"),
            ("auth_close_on_expiry", "true"),
        ] {
            assert_eq!(
                error(&format!(r#"{{"workers": 1, "{key}": {value}}}"#)),
                format!(
                    "invalid setting `{key}`: token settings need `auth_jwt_secret` or `auth_jwt_public_key`"
                )
            );
        }
        let both = serde_json::json!({ "auth_jwt_secret": SECRET, "auth_jwt_public_key": EC_PUBLIC_KEY });
        assert_eq!(
            error(&both.to_string()),
            "invalid setting `auth_jwt_public_key`: give either `auth_jwt_secret` or `auth_jwt_public_key`, not both"
        );
    }

    #[test]
    fn the_engines_token_checks_name_the_json_key() {
        assert_eq!(
            error(r#"{"auth_jwt_secret": "short"}"#),
            "invalid setting `auth_jwt_secret`: the HS256 secret must be at least 32 bytes (RFC 7518 3.2), got 5"
        );
        assert!(error(r#"{"auth_jwt_public_key": "not a key"}"#)
            .starts_with("invalid setting `auth_jwt_public_key`: the public key is not PEM"));
        assert_eq!(
            error(&format!(r#"{{"auth_jwt_secret": "{SECRET}", "auth_leeway_ms": 3601000}}"#)),
            "invalid setting `auth_leeway_ms`: at most 3600 seconds, got 3601"
        );
        assert_eq!(
            error(&format!(r#"{{"auth_jwt_secret": "{SECRET}", "auth_audience": ""}}"#)),
            "invalid setting `auth_audience`: must not be empty"
        );
        assert_eq!(
            error(&format!(r#"{{"auth_jwt_secret": "{SECRET}", "auth_issuer": ""}}"#)),
            "invalid setting `auth_issuer`: must not be empty"
        );
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_not_echoed() {
        assert_eq!(
            error(r#"{"auth_jwt_secret": 12345678901234567890}"#),
            "invalid setting `auth_jwt_secret`: expected a string, got a number"
        );
        assert_eq!(
            error(r#"{"auth_jwt_public_key": 7}"#),
            "invalid setting `auth_jwt_public_key`: expected a string, got 7"
        );
    }

    #[test]
    fn origins_and_the_per_address_limit_are_checked() {
        assert_eq!(
            error(r#"{"allowed_origins": []}"#),
            "invalid setting `allowed_origins`: must list at least one origin (omit it to allow any)"
        );
        assert!(error(r#"{"allowed_origins": ["app.example"]}"#)
            .starts_with("invalid setting `allowed_origins`: "));
        assert_eq!(
            error(r#"{"allowed_origins": "https://app.example"}"#),
            "invalid setting `allowed_origins`: expected an array of strings, got \"https://app.example\""
        );
        assert!(error(r#"{"allowed_origins": ["https://a.example", 1]}"#)
            .starts_with("invalid setting `allowed_origins`: expected an array of strings"));
        assert_eq!(
            error(r#"{"max_connections_per_ip": 0}"#),
            "invalid setting `max_connections_per_ip`: must be at least 1 (omit it for unlimited)"
        );
    }

    #[test]
    fn json_that_is_not_an_object_is_an_error() {
        assert!(error("").starts_with("the configuration is not valid JSON: "));
        assert!(error("{").starts_with("the configuration is not valid JSON: "));
        assert_eq!(error("[]"), "the configuration must be a JSON object, got an array");
        assert!(error(r#"{"workers": 1} x"#).starts_with("the configuration is not valid JSON: "));
    }
}
