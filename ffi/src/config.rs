//! The engine's settings as JSON: one table maps each key to the setting it sets, so adding
//! a key is one line in [`SETTINGS`]; a key not in the table is an error.

use std::net::SocketAddr;
use std::time::Duration;

use engine::{ClusterConfig, Config, SlowConsumerPolicy};
use serde_json::Value;

use crate::error::{wspush_status, Failure};

/// Sets one setting from its JSON value.
type Apply = fn(&mut Config, &Setting<'_>) -> Result<(), Failure>;

/// Every key the configuration may have, with what it sets. Durations are milliseconds
/// (keys ending in `_ms`); sizes are bytes. The `redis*`, `node_id`, `compat_*` and
/// `*inbound*` keys configure cluster mode, which `redis` turns on.
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
];

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
    let mut config = Config::default();
    for (key, value) in &map {
        let Some((_, apply)) = SETTINGS.iter().find(|(name, _)| name == key) else {
            let known: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
            return Err(invalid_config(format!(
                "unknown setting `{key}`; the settings are {}",
                known.join(", ")
            )));
        };
        apply(&mut config, &Setting { key, value })?;
    }
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
            invalid_config(format!("invalid setting `{}`: {reason}", json_key(setting)))
        }
        other => Failure::from(other),
    })?;
    Ok(config)
}

/// The JSON key of an engine setting: durations carry their unit (`idle_timeout_ms`).
fn json_key(setting: &str) -> String {
    let with_unit = format!("{setting}_ms");
    if SETTINGS.iter().any(|(name, _)| *name == with_unit) {
        with_unit
    } else {
        setting.to_owned()
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
        invalid_config(format!("invalid setting `{}`: expected {expected}, got {}", self.key, self.value))
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

    #[test]
    fn json_that_is_not_an_object_is_an_error() {
        assert!(error("").starts_with("the configuration is not valid JSON: "));
        assert!(error("{").starts_with("the configuration is not valid JSON: "));
        assert_eq!(error("[]"), "the configuration must be a JSON object, got an array");
        assert!(error(r#"{"workers": 1} x"#).starts_with("the configuration is not valid JSON: "));
    }
}
