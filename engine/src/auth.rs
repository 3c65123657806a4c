//! Who may connect as which id: JSON Web Tokens (RFC 7519) checked during the upgrade.
//!
//! A client proves it may receive the messages of an id with a token whose `sub` claim
//! is that id, signed with the server's HS256 secret or by the holder of the private key
//! matching a configured RS256/ES256 public key. [`JwtAuth::authorize`] is pure: it takes
//! the parsed upgrade request, the id and the current time, and says yes (with what the
//! socket needs to know later: when its token expires) or why not.
//!
//! # Where the token comes from
//!
//! The first of these that is present:
//!
//! 1. `Authorization: Bearer TOKEN` (servers, native clients);
//! 2. `Sec-WebSocket-Protocol: wspush.bearer, TOKEN`: a browser cannot set headers on a
//!    WebSocket, but it can offer subprotocols: `new WebSocket(url, ["wspush.bearer", token])`.
//!    The server answers `Sec-WebSocket-Protocol: wspush.bearer` (RFC 6455 requires it to
//!    select one of the offered protocols; the token itself is never echoed);
//! 3. the `token` query parameter: `/websocket/456?token=TOKEN` (simplest, but URLs end up
//!    in proxy logs and browser history: prefer the other two where possible).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use crate::handshake::Request;
use crate::Error;

/// The subprotocol a browser offers, followed by its token, to authenticate:
/// `new WebSocket(url, ["wspush.bearer", token])`.
pub const BEARER_PROTOCOL: &str = "wspush.bearer";

/// The smallest HS256 secret accepted: RFC 7518 section 3.2 requires a key at least as
/// long as the hash (256 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// The default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The key that verifies token signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKey {
    /// A shared secret for HS256 (HMAC-SHA256), at least [`MIN_SECRET_LEN`] bytes. Whoever
    /// holds it can mint tokens: keep it as secret as the tokens it signs.
    Hs256Secret(Vec<u8>),
    /// A public key in PEM (`-----BEGIN PUBLIC KEY-----`, or `BEGIN RSA PUBLIC KEY`): an RSA
    /// key verifies RS256 tokens, an EC P-256 key ES256 tokens. The algorithm follows from
    /// the key. Only the public key is needed here; the issuer keeps the private one.
    PublicKeyPem(Vec<u8>),
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never print a secret.
            JwtKey::Hs256Secret(secret) => write!(f, "Hs256Secret([{} bytes, redacted])", secret.len()),
            JwtKey::PublicKeyPem(pem) => write!(f, "PublicKeyPem([{} bytes])", pem.len()),
        }
    }
}

/// The signature algorithm tokens must use; it follows from the [`JwtKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, verified with an RSA public key.
    Rs256,
    /// ECDSA on P-256 with SHA-256, verified with an EC public key.
    Es256,
}

impl JwtAlgorithm {
    fn jsonwebtoken(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwtAlgorithm::Hs256 => "HS256",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Es256 => "ES256",
        })
    }
}

/// Token checks for the upgrade: set [`Config::auth`](crate::Config::auth) to require a
/// valid token from every client.
///
/// A token is accepted when its signature verifies with the key, it uses the key's
/// algorithm, its `sub` claim equals the id in the path, it carries an `exp` claim and
/// `exp` and `nbf` (if present) hold within the leeway, and, when configured, `aud`
/// contains the audience and `iss` equals the issuer. A token with an `aud` claim is
/// refused when no audience is configured (RFC 7519 section 4.1.3).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use wspush::{JwtAuth, JwtKey};
///
/// let auth = JwtAuth::new(JwtKey::Hs256Secret(b"0123456789abcdef0123456789abcdef".to_vec()))?
///     .with_leeway(Duration::from_secs(5))
///     .with_audience("wspush");
/// # Ok::<(), wspush::Error>(())
/// ```
#[derive(Clone)]
pub struct JwtAuth {
    key: DecodingKey,
    algorithm: JwtAlgorithm,
    validation: Validation,
    leeway: Duration,
    audience: Option<String>,
    issuer: Option<String>,
    close_on_expiry: bool,
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("algorithm", &self.algorithm)
            .field("leeway", &self.leeway)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("close_on_expiry", &self.close_on_expiry)
            .finish_non_exhaustive()
    }
}

/// What a valid token grants the socket beyond the upgrade itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// When the token stops being accepted (its `exp` plus the leeway). The engine closes
    /// the socket with 1008 then, unless [`JwtAuth::close_on_expiry`] is off.
    pub expires_at: Option<SystemTime>,
    /// The subprotocol the 101 response must select: [`BEARER_PROTOCOL`] when the client
    /// offered it, else none.
    pub protocol: Option<&'static str>,
}

/// Why a token was refused; the client gets 401 naming only [`AuthRejection::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthRejection {
    /// No token in the `Authorization` header, the subprotocols or the query.
    Missing,
    /// Not a well-formed JWT, or it lacks `exp` or has claims of the wrong type.
    Malformed,
    /// The signature does not verify with the key, or the token names another algorithm.
    BadSignature,
    /// `exp` is past, beyond the leeway.
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    NotYetValid,
    /// `sub` is missing, not a string (RFC 7519: `"456"`, not `456`), or not the id the
    /// client connects as.
    WrongSubject,
    /// `aud` is missing or does not name the configured audience (or is present while
    /// none is configured).
    WrongAudience,
    /// `iss` is missing or is not the configured issuer.
    WrongIssuer,
}

impl AuthRejection {
    /// Every reason, in the order of [`AuthRejection::index`].
    pub const ALL: [AuthRejection; 8] = [
        AuthRejection::Missing,
        AuthRejection::Malformed,
        AuthRejection::BadSignature,
        AuthRejection::Expired,
        AuthRejection::NotYetValid,
        AuthRejection::WrongSubject,
        AuthRejection::WrongAudience,
        AuthRejection::WrongIssuer,
    ];

    /// The reason as one word: `missing`, `malformed`, `bad_signature`, `expired`,
    /// `not_yet_valid`, `wrong_subject`, `wrong_audience`, `wrong_issuer`. The 401 body
    /// and the counters use it.
    pub fn reason(self) -> &'static str {
        match self {
            AuthRejection::Missing => "missing",
            AuthRejection::Malformed => "malformed",
            AuthRejection::BadSignature => "bad_signature",
            AuthRejection::Expired => "expired",
            AuthRejection::NotYetValid => "not_yet_valid",
            AuthRejection::WrongSubject => "wrong_subject",
            AuthRejection::WrongAudience => "wrong_audience",
            AuthRejection::WrongIssuer => "wrong_issuer",
        }
    }

    /// The position of this reason in [`AuthRejection::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for AuthRejection {}

impl JwtAuth {
    /// Token checks with `key`, a leeway of 30 seconds, no audience or issuer check, and
    /// sockets closed when their token expires.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `auth.key` when the secret is shorter than
    /// [`MIN_SECRET_LEN`] bytes, or the PEM is not a public RSA or EC P-256 key (a
    /// private key or a certificate is refused too).
    pub fn new(key: JwtKey) -> Result<JwtAuth, Error> {
        let bad = |reason: String| Error::InvalidConfig { setting: "auth.key", reason };
        let (key, algorithm) = match key {
            JwtKey::Hs256Secret(secret) => {
                if secret.len() < MIN_SECRET_LEN {
                    return Err(bad(format!(
                        "the HS256 secret must be at least {MIN_SECRET_LEN} bytes (RFC 7518 3.2), got {}",
                        secret.len()
                    )));
                }
                (DecodingKey::from_secret(&secret), JwtAlgorithm::Hs256)
            }
            JwtKey::PublicKeyPem(pem) => public_key(&pem).map_err(bad)?,
        };
        let mut auth = JwtAuth {
            key,
            algorithm,
            validation: Validation::new(algorithm.jsonwebtoken()),
            leeway: DEFAULT_LEEWAY,
            audience: None,
            issuer: None,
            close_on_expiry: true,
        };
        auth.rebuild_validation();
        Ok(auth)
    }

    /// Allows this much clock skew between the token's issuer and this server when
    /// checking `exp` and `nbf` (whole seconds; default 30 s). At most an hour
    /// ([`Config::validate`](crate::Config::validate) checks).
    pub fn with_leeway(mut self, leeway: Duration) -> JwtAuth {
        self.leeway = leeway;
        self.rebuild_validation();
        self
    }

    /// Requires the `aud` claim to name `audience` (a string equal to it, or an array
    /// containing it).
    pub fn with_audience(mut self, audience: impl Into<String>) -> JwtAuth {
        self.audience = Some(audience.into());
        self.rebuild_validation();
        self
    }

    /// Requires the `iss` claim to equal `issuer`.
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> JwtAuth {
        self.issuer = Some(issuer.into());
        self.rebuild_validation();
        self
    }

    /// Whether a socket is closed (1008, "token expired") once its token expires; on by
    /// default. Off, a token is checked only when the socket opens.
    pub fn with_close_on_expiry(mut self, close: bool) -> JwtAuth {
        self.close_on_expiry = close;
        self
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// The clock-skew allowance.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// The audience `aud` must name, if any.
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The issuer `iss` must equal, if any.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// Whether sockets are closed when their token expires.
    pub fn close_on_expiry(&self) -> bool {
        self.close_on_expiry
    }

    /// Checks the settings beside the key (which [`JwtAuth::new`] checked).
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |setting: &'static str, reason: String| Err(Error::InvalidConfig { setting, reason });
        if self.leeway > Duration::from_secs(3600) {
            return bad("auth.leeway", format!("at most 3600 seconds, got {}", self.leeway.as_secs()));
        }
        if self.audience.as_deref() == Some("") {
            return bad("auth.audience", "must not be empty".into());
        }
        if self.issuer.as_deref() == Some("") {
            return bad("auth.issuer", "must not be empty".into());
        }
        Ok(())
    }

    fn rebuild_validation(&mut self) {
        let mut validation = Validation::new(self.algorithm.jsonwebtoken());
        // `exp` and `nbf` are checked here against the caller's clock; the library checks
        // the signature, the presence of the claims and `aud`/`iss`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let mut required = vec!["exp", "sub"];
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        self.validation = validation;
    }

    /// Checks the token of `request` for a client connecting as `id` at `now`.
    ///
    /// # Errors
    ///
    /// The [`AuthRejection`] saying why the token is refused. The signature is checked
    /// before any claim, so a forged token is always [`AuthRejection::BadSignature`]
    /// (or [`AuthRejection::Malformed`]), whatever it claims.
    pub fn authorize(&self, request: &Request, id: &str, now: SystemTime) -> Result<Grant, AuthRejection> {
        let token = token_of(request).ok_or(AuthRejection::Missing)?;
        let claims =
            jsonwebtoken::decode::<Map<String, Value>>(token.as_bytes(), &self.key, &self.validation)
                .map_err(|e| rejection_of(e.kind()))?
                .claims;
        let seconds = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or(AuthRejection::Malformed),
        };
        let exp = seconds("exp")?.ok_or(AuthRejection::Malformed)?;
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .and_then(|t| t.checked_add(self.leeway))
            .ok_or(AuthRejection::Malformed)?;
        if now >= expires_at {
            return Err(AuthRejection::Expired);
        }
        if let Some(nbf) = seconds("nbf")? {
            let valid_from = UNIX_EPOCH
                .checked_add(Duration::from_secs(nbf))
                .ok_or(AuthRejection::Malformed)?
                .checked_sub(self.leeway)
                .unwrap_or(UNIX_EPOCH);
            if now < valid_from {
                return Err(AuthRejection::NotYetValid);
            }
        }
        match claims.get("sub") {
            Some(Value::String(sub)) if sub == id => {}
            _ => return Err(AuthRejection::WrongSubject),
        }
        Ok(Grant { expires_at: Some(expires_at), protocol: offered_protocol(request) })
    }
}

/// The verifying key and algorithm of a public key in PEM.
fn public_key(pem: &[u8]) -> Result<(DecodingKey, JwtAlgorithm), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "the public key is not PEM text".to_owned())?;
    let label = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .ok_or_else(|| "the public key is not PEM (no -----BEGIN line)".to_owned())?;
    if !matches!(label, "PUBLIC KEY" | "RSA PUBLIC KEY") {
        return Err(format!(
            "expected a PEM public key (BEGIN PUBLIC KEY), got BEGIN {label}: give the public \
             key, never the private one"
        ));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // An uncompressed P-256 point: 0x04, then 32 bytes each of x and y.
        return match key.kind() {
            DecodingKeyKind::SecretOrDer(point) if point.len() == 65 && point[0] == 4 => {
                Ok((key, JwtAlgorithm::Es256))
            }
            _ => Err("only EC keys on P-256 (ES256) are supported".to_owned()),
        };
    }
    match DecodingKey::from_rsa_pem(pem) {
        Ok(key) => Ok((key, JwtAlgorithm::Rs256)),
        Err(e) => Err(format!("not a valid RSA or EC P-256 public key ({e})")),
    }
}

fn rejection_of(kind: &ErrorKind) -> AuthRejection {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthRejection::BadSignature,
        ErrorKind::ExpiredSignature => AuthRejection::Expired,
        ErrorKind::ImmatureSignature => AuthRejection::NotYetValid,
        ErrorKind::InvalidSubject => AuthRejection::WrongSubject,
        ErrorKind::InvalidAudience => AuthRejection::WrongAudience,
        ErrorKind::InvalidIssuer => AuthRejection::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "sub" => AuthRejection::WrongSubject,
            "aud" => AuthRejection::WrongAudience,
            "iss" => AuthRejection::WrongIssuer,
            _ => AuthRejection::Malformed,
        },
        _ => AuthRejection::Malformed,
    }
}

/// The token a request carries: from `Authorization: Bearer`, else the subprotocol
/// offered after [`BEARER_PROTOCOL`], else the `token` query parameter.
pub fn token_of(request: &Request) -> Option<String> {
    if let Some(value) = request.header("authorization") {
        let value = std::str::from_utf8(value).ok()?.trim();
        if let Some((scheme, token)) = value.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
                return Some(token.trim().to_owned());
            }
        }
    }
    let mut protocols = offered_protocols(request);
    if protocols.by_ref().any(|p| p == BEARER_PROTOCOL) {
        if let Some(token) = protocols.next() {
            return Some(token.to_owned());
        }
    }
    let (_, query) = request.target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        let token = percent_decode_str(value).decode_utf8().ok()?;
        (!token.is_empty()).then(|| token.into_owned())
    })
}

/// [`BEARER_PROTOCOL`] if the client offered it (whatever the engine does with the token,
/// a browser that offered protocols fails the connection unless one is selected).
pub fn offered_protocol(request: &Request) -> Option<&'static str> {
    offered_protocols(request).any(|p| p == BEARER_PROTOCOL).then_some(BEARER_PROTOCOL)
}

/// The subprotocol the 101 selects: [`V1_PROTOCOL`](crate::history::wire::V1_PROTOCOL)
/// when history is on and the client offered it (the client then gets positions; a token
/// after [`BEARER_PROTOCOL`] in the same list is still read), otherwise as
/// [`offered_protocol`].
pub fn selected_protocol(request: &Request, history: bool) -> Option<&'static str> {
    use crate::history::wire::V1_PROTOCOL;
    if history && offered_protocols(request).any(|p| p == V1_PROTOCOL) {
        return Some(V1_PROTOCOL);
    }
    offered_protocol(request)
}

/// The subprotocols in every `Sec-WebSocket-Protocol` header, in order.
fn offered_protocols(request: &Request) -> impl Iterator<Item = &str> {
    request
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|(_, value)| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"an HS256 secret of at least 32 bytes";
    /// 2030-01-01T00:00:00Z.
    const NOW: u64 = 1_893_456_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn auth() -> JwtAuth {
        JwtAuth::new(JwtKey::Hs256Secret(SECRET.to_vec())).unwrap()
    }

    fn mint(claims: Value) -> String {
        encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    fn valid_claims() -> Value {
        json!({ "sub": "456", "exp": NOW + 60 })
    }

    fn request(target: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            target: target.to_owned(),
            key: "dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
            origin: None,
            headers: headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec())).collect(),
        }
    }

    fn with_query(token: &str) -> Request {
        request(&format!("/websocket/456?x=1&token={token}"), &[])
    }

    fn check(auth: &JwtAuth, claims: Value) -> Result<Grant, AuthRejection> {
        auth.authorize(&with_query(&mint(claims)), "456", now())
    }

    #[test]
    fn a_valid_token_from_each_place() {
        let auth = auth();
        let token = mint(valid_claims());
        let expires = Some(now() + Duration::from_secs(60) + DEFAULT_LEEWAY);
        let grant = auth.authorize(&with_query(&token), "456", now()).unwrap();
        assert_eq!(grant, Grant { expires_at: expires, protocol: None });

        let bearer = format!("Bearer {token}");
        let grant = auth.authorize(&request("/websocket/456", &[("Authorization", &bearer)]), "456", now());
        assert_eq!(grant, Ok(Grant { expires_at: expires, protocol: None }));

        let offer = format!("wspush.bearer, {token}");
        let grant =
            auth.authorize(&request("/websocket/456", &[("Sec-WebSocket-Protocol", &offer)]), "456", now());
        assert_eq!(grant, Ok(Grant { expires_at: expires, protocol: Some(BEARER_PROTOCOL) }));
        // Across two header lines too.
        let request2 = request(
            "/websocket/456",
            &[("Sec-WebSocket-Protocol", "wspush.bearer"), ("Sec-WebSocket-Protocol", &token)],
        );
        assert!(auth.authorize(&request2, "456", now()).is_ok());
    }

    #[test]
    fn token_sources_and_precedence() {
        assert_eq!(token_of(&request("/websocket/456", &[])), None);
        assert_eq!(token_of(&request("/websocket/456?token=", &[])), None);
        assert_eq!(token_of(&request("/websocket/456?tokens=a", &[])), None);
        assert_eq!(token_of(&request("/websocket/456?a=b&token=a%2Eb", &[])).as_deref(), Some("a.b"));
        assert_eq!(token_of(&request("/w/1", &[("authorization", "bearer  t1 ")])).as_deref(), Some("t1"));
        assert_eq!(token_of(&request("/w/1", &[("authorization", "Basic dTpw")])), None);
        assert_eq!(token_of(&request("/w/1", &[("sec-websocket-protocol", "wspush.bearer")])), None);
        assert_eq!(token_of(&request("/w/1", &[("sec-websocket-protocol", "chat, t2")])), None);
        let all = request(
            "/w/1?token=t3",
            &[("authorization", "Bearer t1"), ("sec-websocket-protocol", "wspush.bearer, t2")],
        );
        assert_eq!(token_of(&all).as_deref(), Some("t1"));
        let two = request("/w/1?token=t3", &[("sec-websocket-protocol", "wspush.bearer, t2")]);
        assert_eq!(token_of(&two).as_deref(), Some("t2"));
        assert_eq!(offered_protocol(&two), Some(BEARER_PROTOCOL));
        assert_eq!(offered_protocol(&request("/w/1", &[("sec-websocket-protocol", "chat")])), None);
        let both = request("/w/1", &[("sec-websocket-protocol", "wspush.v1, wspush.bearer, t2")]);
        assert_eq!(selected_protocol(&both, true), Some("wspush.v1"), "history on: positions");
        assert_eq!(selected_protocol(&both, false), Some(BEARER_PROTOCOL), "history off: as before");
        assert_eq!(token_of(&both), Some("t2".into()), "the token is still read");
        let v1 = request("/w/1", &[("sec-websocket-protocol", "wspush.v1")]);
        assert_eq!(selected_protocol(&v1, false), None);
    }

    #[test]
    fn refusals_by_reason() {
        let auth = auth();
        let no_token = request("/websocket/456", &[]);
        assert_eq!(auth.authorize(&no_token, "456", now()), Err(AuthRejection::Missing));
        assert_eq!(auth.authorize(&with_query("not.a.jwt"), "456", now()), Err(AuthRejection::Malformed));
        assert_eq!(auth.authorize(&with_query("garbage"), "456", now()), Err(AuthRejection::Malformed));
        let forged = encode(
            &Header::default(),
            &valid_claims(),
            &EncodingKey::from_secret(b"another secret of 32 bytes or more"),
        )
        .unwrap();
        assert_eq!(auth.authorize(&with_query(&forged), "456", now()), Err(AuthRejection::BadSignature));
        // A forged token is a bad signature whatever it claims.
        let forged_expired = encode(
            &Header::default(),
            &json!({ "sub": "other", "exp": 1 }),
            &EncodingKey::from_secret(b"another secret of 32 bytes or more"),
        )
        .unwrap();
        assert_eq!(
            auth.authorize(&with_query(&forged_expired), "456", now()),
            Err(AuthRejection::BadSignature)
        );
        let hs384 =
            encode(&Header::new(Algorithm::HS384), &valid_claims(), &EncodingKey::from_secret(SECRET))
                .unwrap();
        assert_eq!(auth.authorize(&with_query(&hs384), "456", now()), Err(AuthRejection::BadSignature));

        assert_eq!(check(&auth, json!({ "sub": "456" })), Err(AuthRejection::Malformed), "no exp");
        assert_eq!(check(&auth, json!({ "sub": "456", "exp": "soon" })), Err(AuthRejection::Malformed));
        assert_eq!(
            check(&auth, json!({ "sub": "456", "exp": NOW + 60, "nbf": "x" })),
            Err(AuthRejection::Malformed)
        );
        // RFC 7519: `sub` is a string; a number is not the id "456".
        assert_eq!(check(&auth, json!({ "sub": 456, "exp": NOW + 60 })), Err(AuthRejection::WrongSubject));
        assert_eq!(check(&auth, json!({ "exp": NOW + 60 })), Err(AuthRejection::WrongSubject));
        assert_eq!(check(&auth, json!({ "sub": "457", "exp": NOW + 60 })), Err(AuthRejection::WrongSubject));
        assert_eq!(
            check(&auth, json!({ "sub": "456", "exp": NOW + 60, "aud": "someone" })),
            Err(AuthRejection::WrongAudience),
            "an audience nobody configured"
        );
    }

    #[test]
    fn expiry_and_not_before_allow_the_leeway() {
        let auth = auth().with_leeway(Duration::from_secs(30));
        assert!(check(&auth, json!({ "sub": "456", "exp": NOW - 29 })).is_ok());
        assert_eq!(check(&auth, json!({ "sub": "456", "exp": NOW - 30 })), Err(AuthRejection::Expired));
        assert_eq!(check(&auth, json!({ "sub": "456", "exp": NOW - 3600 })), Err(AuthRejection::Expired));
        let grant = check(&auth, json!({ "sub": "456", "exp": NOW - 10 })).unwrap();
        assert_eq!(grant.expires_at, Some(now() + Duration::from_secs(20)));

        assert!(check(&auth, json!({ "sub": "456", "exp": NOW + 99, "nbf": NOW + 30 })).is_ok());
        assert_eq!(
            check(&auth, json!({ "sub": "456", "exp": NOW + 99, "nbf": NOW + 31 })),
            Err(AuthRejection::NotYetValid)
        );
        let strict = auth.with_leeway(Duration::ZERO);
        assert_eq!(check(&strict, json!({ "sub": "456", "exp": NOW })), Err(AuthRejection::Expired));
        assert!(check(&strict, json!({ "sub": "456", "exp": NOW + 1, "nbf": NOW })).is_ok());
    }

    #[test]
    fn audience_and_issuer() {
        let auth = auth().with_audience("app").with_issuer("https://issuer.example");
        let ok = json!({ "sub": "456", "exp": NOW + 60, "aud": "app", "iss": "https://issuer.example" });
        assert!(check(&auth, ok.clone()).is_ok());
        let mut listed = ok.clone();
        listed["aud"] = json!(["other", "app"]);
        assert!(check(&auth, listed).is_ok());
        for (field, value, reason) in [
            ("aud", json!("other"), AuthRejection::WrongAudience),
            ("aud", Value::Null, AuthRejection::WrongAudience),
            ("iss", json!("https://evil.example"), AuthRejection::WrongIssuer),
            ("iss", Value::Null, AuthRejection::WrongIssuer),
        ] {
            let mut claims = ok.clone();
            match value {
                Value::Null => claims.as_object_mut().unwrap().remove(field),
                value => claims.as_object_mut().unwrap().insert(field.to_owned(), value),
            };
            assert_eq!(check(&auth, claims.clone()), Err(reason), "{claims}");
        }
    }

    #[test]
    fn keys_are_checked_when_made() {
        let short = JwtAuth::new(JwtKey::Hs256Secret(b"short".to_vec())).unwrap_err();
        assert!(short
            .to_string()
            .starts_with("invalid setting `auth.key`: the HS256 secret must be at least 32"));
        for (pem, expected) in [
            (&b"not pem"[..], "no -----BEGIN line"),
            (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "never the private one"),
            (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "BEGIN CERTIFICATE"),
            (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a valid RSA or EC"),
        ] {
            let error = JwtAuth::new(JwtKey::PublicKeyPem(pem.to_vec())).unwrap_err().to_string();
            assert!(error.starts_with("invalid setting `auth.key`: "), "{error}");
            assert!(error.contains(expected), "{error}");
        }
        let debug = format!("{:?}", JwtKey::Hs256Secret(SECRET.to_vec()));
        assert!(!debug.contains("secret of"), "{debug}");
        assert!(!format!("{:?}", auth()).contains("secret of"));
    }

    #[test]
    fn settings_are_validated() {
        assert!(auth().validate().is_ok());
        let long = auth().with_leeway(Duration::from_secs(3601)).validate().unwrap_err();
        assert_eq!(long.to_string(), "invalid setting `auth.leeway`: at most 3600 seconds, got 3601");
        assert!(auth().with_audience("").validate().unwrap_err().to_string().contains("auth.audience"));
        assert!(auth().with_issuer("").validate().unwrap_err().to_string().contains("auth.issuer"));
    }

    #[test]
    fn reasons_have_stable_words_and_indexes() {
        for (i, reason) in AuthRejection::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert!(reason.reason().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
