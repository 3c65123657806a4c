//! The engine's settings as JSON. The keys, their types and units, their prerequisites and
//! the wording of their errors are the engine's one list of settings
//! ([`engine::settings::SETTINGS`]): this file only reads the JSON object and words the errors
//! the C way (`invalid setting `key`: ...`).

use engine::settings::{ConfigBuilder, Reason, Scope, SettingError, SETTINGS};
use engine::Config;
use serde_json::Value;

use crate::error::Failure;
use crate::status::wspush_status;

/// Parses and checks a configuration: a JSON object whose keys are settings of every front
/// end ([`Scope::Everywhere`]) or their aliases; missing keys keep the engine's defaults (no
/// listener, one worker per CPU, ...).
pub(crate) fn parse(json: &str) -> Result<Config, Failure> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| invalid_config(format!("the configuration is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid_config(format!("the configuration must be a JSON object, got {}", kind(&value))));
    };
    let mut builder = ConfigBuilder::new(Scope::Everywhere);
    for (key, value) in &map {
        builder.set(key, engine::settings::RawValue::Json(value)).map_err(worded)?;
    }
    let (config, _) = builder.build(&|key| format!("`{key}`")).map_err(worded)?;
    Ok(config)
}

/// A setting error as `wspush_last_error` reports it.
fn worded(error: SettingError) -> Failure {
    let name = error.name;
    invalid_config(match error.reason {
        Reason::Unknown => {
            let known: Vec<&str> =
                SETTINGS.iter().filter(|s| s.scope == Scope::Everywhere).map(|s| s.key).collect();
            format!("unknown setting `{name}`; the settings are {}", known.join(", "))
        }
        Reason::Invalid(reason) => format!("invalid setting `{name}`: {reason}"),
        Reason::NeedsRedis => {
            format!("invalid setting `{name}`: cluster settings need `redis` (a Redis URL)")
        }
        Reason::NeedsAuthKey => format!(
            "invalid setting `{name}`: token settings need `auth_jwt_secret` or `auth_jwt_public_key`"
        ),
        Reason::BothAuthKeys => format!(
            "invalid setting `{name}`: give either `auth_jwt_secret` or `auth_jwt_public_key`, not both"
        ),
    })
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use engine::SlowConsumerPolicy;

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
            message.starts_with(
                "unknown setting `wokers`; the settings are ws_listen, tls_cert, tls_key, workers,"
            ),
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
            .starts_with("invalid setting `ws_listen`: `localhost` is not an address like 0.0.0.0:8081"));
        assert_eq!(
            error(r#"{"path_prefix": null}"#),
            "invalid setting `path_prefix`: expected a string, got null"
        );
    }

    #[test]
    fn the_engines_checks_apply_and_name_the_json_key() {
        assert_eq!(
            error(r#"{"workers": 1000}"#),
            "invalid setting `workers`: must be between 1 and 256, got 1000"
        );
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
        // Not PEM text, so the path of a PEM file, which does not exist.
        assert!(error(r#"{"auth_jwt_public_key": "not a key"}"#)
            .starts_with("invalid setting `auth_jwt_public_key`: cannot read not a key: "));
        let not_pem = error(r#"{"auth_jwt_public_key": "-----BEGIN PUBLIC KEY-----\nnot a key"}"#);
        assert!(
            not_pem.starts_with("invalid setting `auth_jwt_public_key`: not a valid RSA or EC"),
            "{not_pem}"
        );
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
        // A string is the comma-separated form the server takes.
        assert_eq!(
            parse(r#"{"allowed_origins": "https://app.example, http://localhost:3000"}"#)
                .unwrap()
                .allowed_origins,
            Some(vec!["https://app.example".to_owned(), "http://localhost:3000".to_owned()])
        );
        assert_eq!(
            error(r#"{"allowed_origins": 7}"#),
            "invalid setting `allowed_origins`: expected an array of strings, got 7"
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
