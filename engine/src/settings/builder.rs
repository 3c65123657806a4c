//! From named raw values to a checked [`Config`]: the one place that resolves aliases,
//! applies values, builds the token checks and cluster settings, and maps the engine's own
//! checks back to the name the user gave.

use std::net::SocketAddr;
use std::time::Duration;

use super::table::{self, AliasMeaning, Needs, Scope, Setting};
use super::value::{Given, RawValue};
use crate::{ClusterConfig, Config, Error, JwtAuth, JwtKey};

/// The settings only the standalone server has (see [`Scope::ServerOnly`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Where the HTTP API listens, if given.
    pub api_listen: Option<SocketAddr>,
    /// The bearer token the API requires, if given.
    pub api_token: Option<String>,
    /// How long an API connection may take to send a request head (zero: no limit).
    pub api_header_timeout: Option<Duration>,
    /// How long a push may take to send its body (zero: no limit).
    pub api_body_timeout: Option<Duration>,
    /// How long a kept-alive API connection may wait for its next request (zero: no limit).
    pub api_idle_timeout: Option<Duration>,
    /// The most simultaneous API connections.
    pub api_max_connections: Option<usize>,
    /// `https://` on the API: the PEM certificate chain.
    pub api_tls_cert: Option<std::path::PathBuf>,
    /// The PEM key of `api_tls_cert`.
    pub api_tls_key: Option<std::path::PathBuf>,
    /// Client certificates required on the API, issued by these PEM CA certificates.
    pub api_tls_client_ca: Option<std::path::PathBuf>,
    /// The log filter, if given.
    pub log: Option<String>,
}

/// A setting that could not be taken, named as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// The name the user gave (a key or an alias), or the key of the setting at fault.
    pub name: String,
    /// What is wrong.
    pub reason: Reason,
}

/// What is wrong with a setting. Front ends word the prerequisites in their own terms
/// (`needs --redis` for the server, "cluster settings need `redis`" for the C ABI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No setting has this name (in this front end).
    Unknown,
    /// The value is invalid: why.
    Invalid(String),
    /// A cluster setting without `redis`.
    NeedsRedis,
    /// A token setting without `auth_jwt_secret` or `auth_jwt_public_key`.
    NeedsAuthKey,
    /// Both `auth_jwt_secret` and `auth_jwt_public_key`.
    BothAuthKeys,
}

/// A configuration being assembled, one named value at a time, from one front end.
///
/// # Examples
///
/// ```
/// use wspush::settings::{ConfigBuilder, RawValue, Scope};
///
/// let mut builder = ConfigBuilder::new(Scope::Everywhere);
/// builder.set("max_buffered_bytes", RawValue::Text("8MiB")).unwrap();
/// builder.set("ping_interval_ms", RawValue::Json(&serde_json::json!(1500))).unwrap();
/// let (config, _) = builder.build(&|key| format!("`{key}`")).unwrap();
/// assert_eq!(config.max_buffered_bytes, 8 << 20);
/// assert_eq!(config.ping_interval, std::time::Duration::from_millis(1500));
/// ```
pub struct ConfigBuilder {
    scope: Scope,
    draft: Draft,
    /// Each setting given, by key, with the name it was given by (the last one wins).
    given: Vec<(&'static str, String)>,
}

/// What the table's entries write into.
pub(crate) struct Draft {
    pub config: Config,
    pub cluster: ClusterConfig,
    pub auth: AuthDraft,
    pub server: ServerSettings,
}

/// The `auth_*` settings as given: a [`JwtAuth`] cannot exist before its key, and values
/// come in any order. No `Debug`: it holds the secret.
#[derive(Default)]
pub(crate) struct AuthDraft {
    pub secret: Option<String>,
    pub public_key: Option<String>,
    pub leeway: Option<Duration>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub close_on_expiry: Option<bool>,
}

const SECRET_KEY: &str = "auth_jwt_secret";
const PUBLIC_KEY: &str = "auth_jwt_public_key";

impl ConfigBuilder {
    /// An empty configuration (the engine's defaults) for a front end that has the settings
    /// of `scope`: [`Scope::ServerOnly`] for the server (which has every setting),
    /// [`Scope::Everywhere`] for an embedded engine.
    pub fn new(scope: Scope) -> Self {
        let mut builder = Self {
            scope,
            draft: Draft {
                config: Config::default(),
                cluster: ClusterConfig::new(""),
                auth: AuthDraft::default(),
                server: ServerSettings::default(),
            },
            given: Vec::new(),
        };
        if scope == Scope::ServerOnly {
            for setting in table::SETTINGS {
                if let Some(default) = setting.server_default {
                    let given = Given { raw: RawValue::Text(default), secret: false };
                    (setting.apply)(&mut builder.draft, &given).expect("the server's defaults are valid");
                }
            }
        }
        builder
    }

    /// Sets the setting called `name` (a key or an alias) to `value`, replacing an earlier
    /// value. Returns the setting.
    ///
    /// # Errors
    ///
    /// [`Reason::Unknown`] for a name this front end does not have, [`Reason::Invalid`] for
    /// a value of the wrong type or out of range.
    pub fn set(&mut self, name: &str, value: RawValue<'_>) -> Result<&'static Setting, SettingError> {
        let error = |reason| SettingError { name: name.to_owned(), reason };
        let Some((setting, alias)) = table::find(name).filter(|(setting, _)| self.has(setting)) else {
            return Err(error(Reason::Unknown));
        };
        let given = Given { raw: value, secret: setting.secret };
        let applied = match alias.map(|alias| alias.meaning) {
            None => (setting.apply)(&mut self.draft, &given),
            Some(AliasMeaning::Millis) => {
                let millis = match value {
                    RawValue::Json(json) => json
                        .as_u64()
                        .ok_or_else(|| format!("expected a non-negative integer (milliseconds), got {json}")),
                    RawValue::Text(text) => text
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{text}` is not a whole number of milliseconds")),
                };
                millis.and_then(|ms| {
                    let text = format!("{ms}ms");
                    (setting.apply)(&mut self.draft, &Given { raw: RawValue::Text(&text), secret: false })
                })
            }
            Some(AliasMeaning::Negated) => given.bool().and_then(|flag| {
                let text = (!flag).to_string();
                (setting.apply)(&mut self.draft, &Given { raw: RawValue::Text(&text), secret: false })
            }),
        };
        applied.map_err(|reason| error(Reason::Invalid(reason)))?;
        self.given.retain(|(key, _)| *key != setting.key);
        self.given.push((setting.key, name.to_owned()));
        Ok(setting)
    }

    /// Whether this front end has `setting`.
    fn has(&self, setting: &Setting) -> bool {
        setting.scope == Scope::Everywhere || self.scope == Scope::ServerOnly
    }

    /// Whether the setting with this key was given.
    pub fn is_given(&self, key: &str) -> bool {
        self.given.iter().any(|(given, _)| *given == key)
    }

    /// The name the setting with this key was given by, or the key.
    pub fn name_of(&self, key: &str) -> String {
        self.given
            .iter()
            .find(|(given, _)| *given == key)
            .map_or_else(|| key.to_owned(), |(_, name)| name.clone())
    }

    fn error(&self, key: &str, reason: Reason) -> SettingError {
        SettingError { name: self.name_of(key), reason }
    }

    /// The configuration, checked as the engine will check it, and the server's own
    /// settings. `naming` says how this front end names a setting by its key in a reason
    /// (`--compat-channel`, or `` `compat_channel` ``).
    ///
    /// # Errors
    ///
    /// The first setting at fault: one that needs another that is missing, two that
    /// exclude each other, or a value the engine refuses.
    pub fn build(
        mut self,
        naming: &dyn Fn(&str) -> String,
    ) -> Result<(Config, ServerSettings), SettingError> {
        for setting in table::SETTINGS {
            if !self.is_given(setting.key) {
                continue;
            }
            match setting.needs {
                Needs::Redis if !self.is_given("redis") => {
                    return Err(self.error(setting.key, Reason::NeedsRedis))
                }
                Needs::AuthKey if !self.is_given(SECRET_KEY) && !self.is_given(PUBLIC_KEY) => {
                    return Err(self.error(setting.key, Reason::NeedsAuthKey))
                }
                _ => {}
            }
        }
        let (auth, key_setting) = self.auth()?;
        let mut config = std::mem::take(&mut self.draft.config);
        let cluster = std::mem::replace(&mut self.draft.cluster, ClusterConfig::new(""));
        let server = std::mem::take(&mut self.draft.server);
        config.auth = auth;
        if self.is_given("redis") {
            if cluster.compat_publish && cluster.compat_channel.is_none() {
                let reason = format!("needs {} to publish on", naming("compat_channel"));
                return Err(SettingError {
                    name: self.name_of("compat_publish"),
                    reason: Reason::Invalid(reason),
                });
            }
            config.cluster = Some(cluster);
        }
        if let Err(error) = config.validate() {
            return Err(match error {
                Error::InvalidConfig { setting, reason } => {
                    let key = match setting {
                        "auth.key" => key_setting,
                        "auth.leeway" => "auth_leeway",
                        "auth.audience" => "auth_audience",
                        "auth.issuer" => "auth_issuer",
                        other => other,
                    };
                    SettingError { name: self.name_of(key), reason: Reason::Invalid(reason) }
                }
                other => {
                    SettingError { name: "configuration".into(), reason: Reason::Invalid(other.to_string()) }
                }
            });
        }
        Ok((config, server))
    }

    /// The token checks (`None` without a key), and the key of the setting that gave the key.
    fn auth(&self) -> Result<(Option<JwtAuth>, &'static str), SettingError> {
        let draft = &self.draft.auth;
        let (key, key_setting) = match (&draft.secret, &draft.public_key) {
            (Some(_), Some(_)) => return Err(self.error(PUBLIC_KEY, Reason::BothAuthKeys)),
            (Some(secret), None) => (JwtKey::Hs256Secret(secret.clone().into_bytes()), SECRET_KEY),
            (None, Some(pem_or_path)) => {
                (JwtKey::PublicKeyPem(self.public_key_pem(pem_or_path)?), PUBLIC_KEY)
            }
            (None, None) => return Ok((None, SECRET_KEY)),
        };
        let mut auth = JwtAuth::new(key).map_err(|error| {
            let reason = match error {
                Error::InvalidConfig { reason, .. } => reason,
                other => other.to_string(),
            };
            self.error(key_setting, Reason::Invalid(reason))
        })?;
        if let Some(leeway) = draft.leeway {
            auth = auth.with_leeway(leeway);
        }
        if let Some(audience) = &draft.audience {
            auth = auth.with_audience(audience.clone());
        }
        if let Some(issuer) = &draft.issuer {
            auth = auth.with_issuer(issuer.clone());
        }
        if let Some(close) = draft.close_on_expiry {
            auth = auth.with_close_on_expiry(close);
        }
        Ok((Some(auth), key_setting))
    }

    /// PEM text as given, or read from the file it names.
    fn public_key_pem(&self, pem_or_path: &str) -> Result<Vec<u8>, SettingError> {
        if pem_or_path.contains("-----BEGIN") {
            return Ok(pem_or_path.as_bytes().to_vec());
        }
        std::fs::read(pem_or_path)
            .map_err(|e| self.error(PUBLIC_KEY, Reason::Invalid(format!("cannot read {pem_or_path}: {e}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(pairs: &[(&str, serde_json::Value)]) -> Result<Config, SettingError> {
        let mut builder = ConfigBuilder::new(Scope::Everywhere);
        for (name, value) in pairs {
            builder.set(name, RawValue::Json(value))?;
        }
        builder.build(&|key| format!("`{key}`")).map(|(config, _)| config)
    }

    fn invalid(name: &str, reason: &str) -> SettingError {
        SettingError { name: name.into(), reason: Reason::Invalid(reason.into()) }
    }

    #[test]
    fn aliases_keep_their_units_and_sense() {
        use serde_json::json;
        let config = build(&[
            ("idle_timeout_ms", json!(1500)),
            ("handshake_timeout", json!("250ms")),
            ("redis", json!("redis://127.0.0.1:6379")),
            ("no_inbound", json!(true)),
        ])
        .unwrap();
        assert_eq!(config.idle_timeout, Duration::from_millis(1500));
        assert_eq!(config.handshake_timeout, Duration::from_millis(250));
        assert!(!config.cluster.unwrap().publish_inbound);
    }

    #[test]
    fn errors_name_the_setting_as_given() {
        use serde_json::json;
        assert_eq!(
            build(&[("auth_leeway_ms", json!(1000))]).unwrap_err(),
            SettingError { name: "auth_leeway_ms".into(), reason: Reason::NeedsAuthKey }
        );
        let secret = json!("a-secret-of-at-least-thirty-two-bytes!!");
        assert_eq!(
            build(&[("auth_jwt_secret", secret), ("auth_leeway_ms", json!(7_200_000))]).unwrap_err(),
            invalid("auth_leeway_ms", "at most 3600 seconds, got 7200")
        );
        assert_eq!(
            build(&[("node_id", json!("n1"))]).unwrap_err(),
            SettingError { name: "node_id".into(), reason: Reason::NeedsRedis }
        );
        assert_eq!(
            build(&[("redis", json!("redis://h")), ("compat_publish", json!(true))]).unwrap_err(),
            invalid("compat_publish", "needs `compat_channel` to publish on")
        );
        assert_eq!(
            build(&[("workers", json!(0))]).unwrap_err(),
            invalid("workers", "must be between 1 and 256, got 0")
        );
        assert_eq!(
            build(&[("api_token", json!("t"))]).unwrap_err(),
            SettingError { name: "api_token".into(), reason: Reason::Unknown }
        );
    }
}
