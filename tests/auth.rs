//! Who may connect as which id: tokens (HS256, RS256, ES256) from the query, the
//! `Authorization` header or the `wspush.bearer` subprotocol; the `Origin` allow-list; the
//! host's authorizer; the per-address connection limit; and the server's refusal to expose
//! its API without a token. Each refusal is checked as a client sees it (status, body) and
//! as an operator sees it (the counter under its reason).

#[path = "support.rs"]
mod support;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use wspush::{AuthFailures, Config, Engine, Handshake, HandshakeFailures, JwtAuth, JwtKey, Message};

const SECRET: &[u8] = b"integration-test secret, 32+ bytes long";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// An HS256 token signed with [`SECRET`].
fn mint(claims: Value) -> String {
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

/// A token for `sub` valid for an hour.
fn token_for(sub: &str) -> String {
    mint(json!({ "sub": sub, "exp": unix_now() + 3600 }))
}

fn hs256() -> JwtAuth {
    JwtAuth::new(JwtKey::Hs256Secret(SECRET.to_vec())).unwrap()
}

/// An engine on a free port that requires HS256 tokens, as `auth` adjusts them.
fn auth_engine(auth: impl FnOnce(JwtAuth) -> JwtAuth) -> (Engine, Events) {
    let auth = auth(hs256());
    start_engine(move |c| c.auth = Some(auth))
}

/// Sends an upgrade request for `path` with `extra` header lines and reads the whole
/// answer: head and (for a refusal) body.
fn exchange(addr: std::net::SocketAddr, path: &str, extra: &str) -> (HttpHead, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(upgrade_request(path, extra).as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let head = read_http_head(&mut reader).unwrap();
    let mut body = String::new();
    if head.status != 101 {
        let len: usize = head.header("Content-Length").unwrap().parse().unwrap();
        let mut bytes = vec![0; len];
        reader.read_exact(&mut bytes).unwrap();
        body = String::from_utf8(bytes).unwrap();
    }
    (head, body)
}

/// Checks that exactly one refusal was counted, under `reason`.
fn counted_once(engine: &Engine, reason: impl Fn(&HandshakeFailures) -> u64) {
    eventually_eq(TIMEOUT, "handshake failures", 1, || engine.stats().handshake_failures.total());
    let failures = engine.stats().handshake_failures;
    assert_eq!(reason(&failures), 1, "counted under the wrong reason: {failures:?}");
}

/// The token in `path` is refused with 401 naming `word` (and only the word), counted
/// under `reason`, and no socket opens.
fn unauthorized(
    engine: &Engine,
    events: &mut Events,
    path: &str,
    word: &str,
    reason: fn(&AuthFailures) -> u64,
) {
    let (head, body) = exchange(addr(engine), path, "");
    assert_eq!(head.status, 401, "{head:?}");
    assert_eq!(head.header("WWW-Authenticate"), Some("Bearer"), "{head:?}");
    assert_eq!(body, format!("unauthorized: {word}\n"));
    counted_once(engine, |f| reason(&f.auth));
    assert_eq!(engine.stats().connections, 0);
    assert_eq!(events.drain(), vec![], "a refused upgrade raises no event");
}

// ---------------------------------------------------------------------------------------
// Where the token comes from.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_in_the_query_connects_and_receives() {
    let (engine, mut events) = auth_engine(|a| a);
    let url = format!("ws://{}/websocket/456?token={}", addr(&engine), token_for("456"));
    let mut ws = connect(&url).await;
    events.open("456");
    assert_eq!(send_counted(&engine, "456", Message::Text("order 456 shipped")), 1);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "order 456 shipped");
    assert_eq!(engine.stats().handshake_failures, HandshakeFailures::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_in_the_authorization_header_connects() {
    let (engine, mut events) = auth_engine(|a| a);
    let mut request = format!("ws://{}/websocket/456", addr(&engine)).into_client_request().unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token_for("456"))).unwrap();
    request.headers_mut().insert("Authorization", bearer);
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none(), "no protocol was offered");
    events.open("456");
    engine.send("456", Message::Text("via header")).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "via header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_as_a_subprotocol_connects_and_only_wspush_bearer_is_echoed() {
    let (engine, mut events) = auth_engine(|a| a);
    let token = token_for("456");
    // What `new WebSocket(url, ["wspush.bearer", token])` sends.
    let mut request = format!("ws://{}/websocket/456", addr(&engine)).into_client_request().unwrap();
    let offer = HeaderValue::from_str(&format!("wspush.bearer, {token}")).unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", offer);
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    let selected: Vec<_> = response.headers().get_all("Sec-WebSocket-Protocol").iter().collect();
    assert_eq!(selected, vec!["wspush.bearer"]);
    events.open("456");
    engine.send("456", Message::Text("via subprotocol")).unwrap();
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "via subprotocol");

    // The raw answer never carries the token.
    let (head, _) = exchange(
        addr(&engine),
        "/websocket/456",
        &format!("Sec-WebSocket-Protocol: wspush.bearer, {token}\r\n"),
    );
    assert_eq!(head.status, 101, "{head:?}");
    assert!(head.headers.iter().all(|(_, value)| !value.contains(&token)), "{head:?}");
}

#[test]
fn without_auth_an_offered_wspush_bearer_is_still_selected() {
    // So that a page written for an authenticating server also works against one that
    // is not (browsers fail a connection whose offered protocol is not selected).
    let (engine, _events) = start_engine(|_| {});
    let (head, _) =
        exchange(addr(&engine), "/websocket/1", "Sec-WebSocket-Protocol: wspush.bearer, x.y.z\r\n");
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("Sec-WebSocket-Protocol"), Some("wspush.bearer"));
    let (head, _) = exchange(addr(&engine), "/websocket/1", "Sec-WebSocket-Protocol: chat\r\n");
    assert_eq!(head.header("Sec-WebSocket-Protocol"), None, "{head:?}");
}

// ---------------------------------------------------------------------------------------
// Refusals, by reason.

#[test]
fn no_token_is_401_missing() {
    let (engine, mut events) = auth_engine(|a| a);
    unauthorized(&engine, &mut events, "/websocket/456", "missing", |f| f.missing);
}

#[test]
fn a_token_signed_with_another_secret_is_401_bad_signature() {
    let (engine, mut events) = auth_engine(|a| a);
    let forged = jsonwebtoken::encode(
        &Header::default(),
        &json!({ "sub": "456", "exp": unix_now() + 3600 }),
        &EncodingKey::from_secret(b"not the server's secret, but as long"),
    )
    .unwrap();
    let path = format!("/websocket/456?token={forged}");
    unauthorized(&engine, &mut events, &path, "bad_signature", |f| f.bad_signature);
}

#[test]
fn garbage_is_401_malformed() {
    let (engine, mut events) = auth_engine(|a| a);
    unauthorized(&engine, &mut events, "/websocket/456?token=not-a-jwt", "malformed", |f| f.malformed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_401_expired_beyond_the_leeway_only() {
    let (engine, mut events) = auth_engine(|a| a.with_leeway(Duration::from_secs(30)));
    let within = mint(json!({ "sub": "456", "exp": unix_now() - 10 }));
    let _ws = connect(&format!("ws://{}/websocket/456?token={within}", addr(&engine))).await;
    events.open("456");
    let expired = mint(json!({ "sub": "456", "exp": unix_now() - 60 }));
    let (head, body) = exchange(addr(&engine), &format!("/websocket/456?token={expired}"), "");
    assert_eq!((head.status, body.as_str()), (401, "unauthorized: expired\n"));
    counted_once(&engine, |f| f.auth.expired);
}

#[test]
fn a_token_not_valid_yet_is_401_not_yet_valid() {
    let (engine, mut events) = auth_engine(|a| a.with_leeway(Duration::from_secs(5)));
    let early = mint(json!({ "sub": "456", "exp": unix_now() + 3600, "nbf": unix_now() + 600 }));
    let path = format!("/websocket/456?token={early}");
    unauthorized(&engine, &mut events, &path, "not_yet_valid", |f| f.not_yet_valid);
}

#[test]
fn another_ids_token_is_401_wrong_subject() {
    let (engine, mut events) = auth_engine(|a| a);
    let path = format!("/websocket/456?token={}", token_for("457"));
    unauthorized(&engine, &mut events, &path, "wrong_subject", |f| f.wrong_subject);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_and_issuer_must_match_when_configured() {
    let (engine, mut events) =
        auth_engine(|a| a.with_audience("wspush").with_issuer("https://login.example"));
    let claims =
        |aud: &str, iss: &str| json!({ "sub": "456", "exp": unix_now() + 60, "aud": aud, "iss": iss });
    let good = mint(claims("wspush", "https://login.example"));
    let _ws = connect(&format!("ws://{}/websocket/456?token={good}", addr(&engine))).await;
    events.open("456");

    let wrong_aud = mint(claims("another-service", "https://login.example"));
    let (head, body) = exchange(addr(&engine), &format!("/websocket/456?token={wrong_aud}"), "");
    assert_eq!((head.status, body.as_str()), (401, "unauthorized: wrong_audience\n"));
    let wrong_iss = mint(claims("wspush", "https://evil.example"));
    let (head, body) = exchange(addr(&engine), &format!("/websocket/456?token={wrong_iss}"), "");
    assert_eq!((head.status, body.as_str()), (401, "unauthorized: wrong_issuer\n"));
    eventually_eq(TIMEOUT, "failures", 2, || engine.stats().handshake_failures.total());
    let auth = engine.stats().handshake_failures.auth;
    assert_eq!((auth.wrong_audience, auth.wrong_issuer, auth.total()), (1, 1, 2));
}

// ---------------------------------------------------------------------------------------
// Expiry of an open socket.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_closed_with_1008_when_its_token_expires() {
    let (engine, mut events) = auth_engine(|a| a.with_leeway(Duration::ZERO));
    let token = mint(json!({ "sub": "456", "exp": unix_now() + 2 }));
    let mut ws = connect(&format!("ws://{}/websocket/456?token={token}", addr(&engine))).await;
    let conn = events.open("456");
    let long_lived = token_for("456");
    let mut other = connect(&format!("ws://{}/websocket/456?token={long_lived}", addr(&engine))).await;
    let other_conn = events.open("456");

    assert_eq!(expect_close(&mut ws).await, 1008);
    assert_eq!(events.close_of(conn), 1008);
    assert_eq!(engine.stats().token_expirations, 1);
    // The socket with a valid token stays.
    assert_eq!(send_counted(&engine, "456", Message::Text("still here")), 1);
    assert_eq!(recv_text(&mut other, TIMEOUT).await, "still here");
    assert!(events.drain().iter().all(|e| !matches!(e, Ev::Close { conn, .. } if *conn == other_conn)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_close_on_expiry_off_the_token_is_checked_only_at_the_upgrade() {
    let (engine, mut events) = auth_engine(|a| a.with_leeway(Duration::ZERO).with_close_on_expiry(false));
    let token = mint(json!({ "sub": "456", "exp": unix_now() + 1 }));
    let mut ws = connect(&format!("ws://{}/websocket/456?token={token}", addr(&engine))).await;
    events.open("456");
    // Past the expiry (and a worker tick or two): nothing happens to the socket.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(send_counted(&engine, "456", Message::Text("after expiry")), 1);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "after expiry");
    assert_eq!(engine.stats().token_expirations, 0);
}

// ---------------------------------------------------------------------------------------
// Public keys: RS256 and ES256.

/// A key pair made by the `openssl` command: (private key PEM, public key PEM).
fn openssl_key_pair(name: &str, algorithm: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("wspush-auth-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let run = |args: &[&str]| {
        let output = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `openssl` (install it: apt-get install openssl): {e}"));
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let mut genpkey = vec!["genpkey"];
    genpkey.extend_from_slice(algorithm);
    genpkey.extend_from_slice(&["-out", private.to_str().unwrap()]);
    run(&genpkey);
    run(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    let pair = (std::fs::read(&private).unwrap(), std::fs::read(&public).unwrap());
    let _ = std::fs::remove_file(private);
    (pair.0, pair.1)
}

fn rsa_pair(name: &str) -> (Vec<u8>, Vec<u8>) {
    openssl_key_pair(name, &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
}

fn ec_pair(name: &str) -> (Vec<u8>, Vec<u8>) {
    openssl_key_pair(name, &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_es256_tokens_verify_with_their_public_keys() {
    let claims = json!({ "sub": "456", "exp": unix_now() + 600 });
    for (name, (private, public), algorithm) in
        [("rsa", rsa_pair("rsa"), Algorithm::RS256), ("ec", ec_pair("ec"), Algorithm::ES256)]
    {
        let auth = JwtAuth::new(JwtKey::PublicKeyPem(public)).unwrap();
        assert_eq!(auth.algorithm().to_string(), format!("{algorithm:?}"), "{name}");
        let (engine, mut events) = start_engine(move |c| c.auth = Some(auth));
        let key = match algorithm {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&private).unwrap(),
            _ => EncodingKey::from_ec_pem(&private).unwrap(),
        };
        let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap();
        let mut ws = connect(&format!("ws://{}/websocket/456?token={token}", addr(&engine))).await;
        events.open("456");
        engine.send("456", Message::Text(name)).unwrap();
        assert_eq!(recv_text(&mut ws, TIMEOUT).await, name);

        // An HS256 token made with the public key as its secret (the classic algorithm
        // confusion) is refused.
        let confused =
            jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(b"pem")).unwrap();
        let (head, body) = exchange(addr(&engine), &format!("/websocket/456?token={confused}"), "");
        assert_eq!((head.status, body.as_str()), (401, "unauthorized: bad_signature\n"), "{name}");
    }

    // A token signed by another key of the same kind is refused.
    let (_, public) = rsa_pair("rsa-server");
    let (other_private, _) = rsa_pair("rsa-other");
    let auth = JwtAuth::new(JwtKey::PublicKeyPem(public)).unwrap();
    let (engine, mut events) = start_engine(move |c| c.auth = Some(auth));
    let key = EncodingKey::from_rsa_pem(&other_private).unwrap();
    let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
    unauthorized(&engine, &mut events, &format!("/websocket/456?token={token}"), "bad_signature", |f| {
        f.bad_signature
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reads_its_public_key_from_a_file() {
    let (private, public) = ec_pair("server-ec");
    let path = std::env::temp_dir().join(format!("wspush-auth-test-{}/server-ec.pub", std::process::id()));
    std::fs::write(&path, public).unwrap();
    let server = Server::start(&["--auth-jwt-public-key", path.to_str().unwrap()]);
    let claims = json!({ "sub": "456", "exp": unix_now() + 600 });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&private).unwrap(),
    )
    .unwrap();
    let mut ws = connect(&format!("{}?token={token}", server.ws_url("456"))).await;
    wait_connections(&server, 1);
    assert_eq!(server.post("/socket/456", "signed by EC").status(), 200);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "signed by EC");
    let _ = std::fs::remove_file(path);
}

// ---------------------------------------------------------------------------------------
// Origins.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_origins_and_clients_without_one_connect() {
    let (engine, mut events) =
        start_engine(|c| c.allowed_origins = Some(vec!["https://app.example.com".into()]));
    let (head, body) = exchange(addr(&engine), "/websocket/1", "Origin: https://evil.example\r\n");
    assert_eq!((head.status, body.as_str()), (403, "this origin may not connect\n"));
    counted_once(&engine, |f| f.forbidden_origin);
    assert_eq!(events.drain(), vec![]);

    let (head, _) = exchange(addr(&engine), "/websocket/2", "Origin: https://APP.example.com:443\r\n");
    assert_eq!(head.status, 101, "{head:?}");
    events.open("2");
    let (head, _) = exchange(addr(&engine), "/websocket/3", "");
    assert_eq!(head.status, 101, "no Origin: not a browser: {head:?}");
    events.open("3");
    assert_eq!(engine.stats().handshake_failures.total(), 1);
}

#[test]
fn the_origin_is_checked_before_the_token() {
    let auth = hs256();
    let (engine, _events) = start_engine(move |c| {
        c.auth = Some(auth);
        c.allowed_origins = Some(vec!["https://app.example.com".into()]);
    });
    let (head, _) = exchange(addr(&engine), "/websocket/1", "Origin: https://evil.example\r\n");
    assert_eq!(head.status, 403, "{head:?}");
    counted_once(&engine, |f| f.forbidden_origin);
}

// ---------------------------------------------------------------------------------------
// The host's authorizer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_decides_and_sees_the_request() {
    let (engine, mut events) = start_engine(|_| {});
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    engine.set_authorizer(move |request: &wspush::AuthorizeRequest<'_>| {
        let cookie = request.header("cookie").map(|c| String::from_utf8_lossy(c).into_owned());
        log.lock().unwrap().push((request.id.to_owned(), request.path.to_owned(), cookie, request.peer));
        request.header("cookie") == Some(b"session=valid")
    });

    let (head, body) = exchange(addr(&engine), "/websocket/caf%C3%A9?x=1", "Cookie: session=stolen\r\n");
    assert_eq!((head.status, body.as_str()), (403, "forbidden by the host\n"));
    counted_once(&engine, |f| f.forbidden);
    assert_eq!(events.drain(), vec![]);

    let (head, _) = exchange(addr(&engine), "/websocket/caf%C3%A9?x=1", "Cookie: session=valid\r\n");
    assert_eq!(head.status, 101, "{head:?}");
    events.open("café");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let (id, path, cookie, peer) = &seen[1];
    assert_eq!(
        (id.as_str(), path.as_str(), cookie.as_deref()),
        ("café", "/websocket/caf%C3%A9?x=1", Some("session=valid"))
    );
    assert!(peer.is_some_and(|p| p.ip().is_loopback()), "{peer:?}");

    engine.clear_authorizer();
    let (head, _) = exchange(addr(&engine), "/websocket/any", "");
    assert_eq!(head.status, 101, "{head:?}");
}

#[test]
fn a_panicking_authorizer_denies() {
    let (engine, _events) = start_engine(|_| {});
    engine.set_authorizer(|_: &wspush::AuthorizeRequest<'_>| -> bool { panic!("the session store is down") });
    let (head, _) = exchange(addr(&engine), "/websocket/1", "");
    assert_eq!(head.status, 403, "{head:?}");
    counted_once(&engine, |f| f.forbidden);
    // The acceptor survived it.
    engine.clear_authorizer();
    assert_eq!(exchange(addr(&engine), "/websocket/2", "").0.status, 101);
}

#[test]
fn the_authorizer_is_asked_only_after_the_token_passed() {
    let (engine, _events) = auth_engine(|a| a);
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    engine.set_authorizer(move |_: &wspush::AuthorizeRequest<'_>| {
        counter.fetch_add(1, Ordering::SeqCst);
        false
    });
    assert_eq!(exchange(addr(&engine), "/websocket/456", "").0.status, 401);
    counted_once(&engine, |f| f.auth.missing);
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    let path = format!("/websocket/456?token={}", token_for("456"));
    assert_eq!(exchange(addr(&engine), &path, "").0.status, 403);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------
// Connections per address.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_third_connection_from_one_address_gets_429_until_one_closes() {
    let (engine, mut events) = start_engine(|c| c.max_connections_per_ip = Some(2));
    let first = connect_id(addr(&engine), "a").await;
    let first_conn = events.open("a");
    let _second = connect_id(addr(&engine), "b").await;
    events.open("b");

    let (head, body) = exchange(addr(&engine), "/websocket/c", "");
    assert_eq!((head.status, body.as_str()), (429, "too many connections from this address\n"));
    counted_once(&engine, |f| f.over_ip_limit);
    assert_eq!(engine.stats().connections, 2);

    drop(first);
    events.close_of(first_conn);
    let _third = connect_id(addr(&engine), "c").await;
    events.open("c");
    assert_eq!(engine.stats().handshake_failures.over_ip_limit, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_sockets_count_against_their_address() {
    let (engine, mut events) = start_engine(|c| c.max_connections_per_ip = Some(1));
    // A socket the host upgraded itself (from 127.0.0.1) takes the address's one slot.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    engine.register(accepted, "hosted", Handshake::Done).unwrap();
    let hosted = events.open("hosted");
    let (head, _) = exchange(addr(&engine), "/websocket/x", "");
    assert_eq!(head.status, 429, "{head:?}");
    counted_once(&engine, |f| f.over_ip_limit);

    // When it closes, its slot is free again.
    drop(client);
    events.close_of(hosted);
    assert_eq!(exchange(addr(&engine), "/websocket/x", "").0.status, 101);
    events.open("x");
}

#[test]
fn sockets_registered_for_an_upgrade_pass_the_same_checks() {
    let engine = Engine::start(Config { workers: 1, auth: Some(hs256()), ..Config::default() }).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let answer = |path: String| {
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.write_all(upgrade_request(&path, "").as_bytes()).unwrap();
            read_http_head(&mut BufReader::new(stream)).unwrap().status
        });
        let (accepted, _) = listener.accept().unwrap();
        // The token must name the id the host gives, whatever the path says.
        engine.register(accepted, "456", Handshake::Perform).unwrap();
        client.join().unwrap()
    };
    assert_eq!(answer(format!("/anything?token={}", token_for("456"))), 101);
    assert_eq!(answer(format!("/anything?token={}", token_for("457"))), 401);
    assert_eq!(answer("/anything".into()), 401);
    let auth = engine.stats().handshake_failures.auth;
    assert_eq!((auth.wrong_subject, auth.missing), (1, 1));
}

// ---------------------------------------------------------------------------------------
// The server binary.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_requires_tokens_and_reports_refusals_in_stats_and_metrics() {
    let secret = std::str::from_utf8(SECRET).unwrap();
    let server =
        Server::start(&["--auth-jwt-secret", secret, "--auth-leeway", "0", "--max-connections-per-ip", "50"]);
    let token = token_for("456");
    let mut ws = connect(&format!("{}?token={token}", server.ws_url("456"))).await;
    wait_connections(&server, 1);
    assert_eq!(server.post("/socket/456", "authenticated").status(), 200);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "authenticated");

    let expired = mint(json!({ "sub": "456", "exp": unix_now() - 5 }));
    let (head, body) = exchange(server.ws_addr, &format!("/websocket/456?token={expired}"), "");
    assert_eq!((head.status, body.as_str()), (401, "unauthorized: expired\n"));
    let (head, _) = exchange(server.ws_addr, "/websocket/456", "");
    assert_eq!(head.status, 401);
    eventually_eq(TIMEOUT, "handshake_failures.auth.missing", 1, || {
        server_counter(&server, "handshake_failures.auth.missing")
    });
    assert_eq!(server_counter(&server, "handshake_failures.auth.expired"), 1);
    assert_eq!(server_counter(&server, "token_expirations"), 0);
    let metrics = server.get("/metrics").text();
    for line in [
        "wspush_handshake_failures_total{reason=\"auth_expired\"} 1",
        "wspush_handshake_failures_total{reason=\"auth_missing\"} 1",
        "wspush_handshake_failures_total{reason=\"over_ip_limit\"} 0",
        "wspush_token_expirations_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing {line:?} in\n{metrics}");
    }
    assert!(!server.output().contains(&token), "a token reached the log");
    assert!(!server.output().contains(&expired), "a token reached the log");
}

#[test]
fn the_server_refuses_a_public_api_without_a_token() {
    let out = run_server_binary(&["--ws-listen", "127.0.0.1:0", "--api-listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            "wspush: invalid --api-listen: refusing to serve the HTTP API on 0.0.0.0:0 without --api-token: \
             anyone who can reach it could push to every socket"
        ),
        "{out:?}"
    );
}

#[test]
fn the_server_refuses_both_a_secret_and_a_public_key() {
    let secret = std::str::from_utf8(SECRET).unwrap();
    let out = run_server_binary(&["--auth-jwt-secret", secret, "--auth-jwt-public-key", "/nonexistent.pem"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("--auth-jwt-secret or --auth-jwt-public-key, not both"), "{out:?}");
    let out = run_server_binary(&["--auth-jwt-public-key", "/nonexistent.pem"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("invalid --auth-jwt-public-key: cannot read /nonexistent.pem"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_mint_script_in_the_readme_are_accepted() {
    // `TOKEN=$(scripts/mint-token.py "$SECRET" 456 3600)`, as the README shows.
    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let mint_with = |args: &[&str]| {
        let output = std::process::Command::new("python3")
            .arg(workspace_root().join("scripts/mint-token.py"))
            .args(args)
            .output()
            .expect("cannot run python3");
        assert!(output.status.success(), "mint-token.py {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let token = mint_with(&[secret, "456", "3600"]);
    let server = Server::start(&["--auth-jwt-secret", secret]);
    let mut ws = connect(&format!("{}?token={token}", server.ws_url("456"))).await;
    wait_connections(&server, 1);
    assert_eq!(server.post("/socket/456", "minted").status(), 200);
    assert_eq!(recv_text(&mut ws, TIMEOUT).await, "minted");
    // The token is for 456 only.
    let (head, _) = exchange(server.ws_addr, &format!("/websocket/457?token={token}"), "");
    assert_eq!(head.status, 401);

    let auth = JwtAuth::new(JwtKey::Hs256Secret(secret.as_bytes().to_vec()))
        .unwrap()
        .with_audience("app")
        .with_issuer("login");
    let (engine, mut events) = start_engine(move |c| c.auth = Some(auth));
    let token = mint_with(&[secret, "789", "60", "--aud", "app", "--iss", "login"]);
    let _ws = connect(&format!("ws://{}/websocket/789?token={token}", addr(&engine))).await;
    events.open("789");
}
