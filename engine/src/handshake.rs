//! The HTTP/1.1 upgrade that opens a WebSocket (RFC 6455 section 4), without I/O.
//!
//! The acceptor feeds [`parse_request`] what it has read so far, answers a valid request
//! with [`accept`] (the 101 response and the [`Extensions`] the connection negotiated) and
//! anything else with [`Rejection::response`].

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use sha1::{Digest, Sha1};

use crate::extensions::Extensions;
use crate::history::Position;
use crate::AuthRejection;

/// Limits on the request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line, headers and the empty line), in bytes.
    pub max_header_bytes: usize,
    /// Most header lines.
    pub max_headers: usize,
}

/// A valid upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request target as sent (path and query).
    pub target: String,
    /// Sec-WebSocket-Key, without surrounding whitespace.
    pub key: String,
    /// Origin, if sent.
    pub origin: Option<String>,
    /// Every header, name lower-cased, value as sent: the token check and the host's
    /// authorizer read them after parsing.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The value of the first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_slice())
    }
}

/// Why an upgrade is refused; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400: malformed HTTP, or not a valid WebSocket upgrade request. The string names
    /// the problem, e.g. "the method must be GET".
    #[error("bad WebSocket upgrade request: {0}")]
    BadRequest(String),
    /// 426 with `Sec-WebSocket-Version: 13`: the version is missing or not 13.
    #[error("only WebSocket version 13 is supported")]
    UnsupportedVersion,
    /// 404: the path is not under the prefix.
    #[error("no WebSocket endpoint at this path")]
    NotFound,
    /// 400: the id in the path is invalid; the string says why.
    #[error("invalid id: {0}")]
    InvalidId(String),
    /// 431: the head is larger than `max_header_bytes` or has more than `max_headers`
    /// headers.
    #[error("the request head is too large")]
    TooLarge,
    /// 408: the client did not finish the request in time.
    #[error("the request took too long to arrive")]
    Timeout,
    /// 503: the server is at its maximum number of connections.
    #[error("the server is at capacity, try again later")]
    OverCapacity,
    /// 403: a browser page from an origin that is not allowed.
    #[error("this origin may not connect")]
    ForbiddenOrigin,
    /// 401 with `WWW-Authenticate: Bearer`: the token is missing or invalid. The body names
    /// the reason word only (e.g. `expired`), never details of the token.
    #[error("unauthorized: {0}")]
    Unauthorized(AuthRejection),
    /// 403: the host's authorizer refused the client.
    #[error("forbidden by the host")]
    Forbidden,
    /// 429: the client's address has as many connections open as it may.
    #[error("too many connections from this address")]
    TooManyFromAddress,
    /// 400: the `since` query parameter is not a position `EPOCH:OFFSET`; the string says
    /// why.
    #[error("invalid since: {0}")]
    BadSince(String),
}

impl Rejection {
    /// The HTTP status code of the response.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) | Rejection::InvalidId(_) | Rejection::BadSince(_) => 400,
            Rejection::UnsupportedVersion => 426,
            Rejection::NotFound => 404,
            Rejection::TooLarge => 431,
            Rejection::Timeout => 408,
            Rejection::OverCapacity => 503,
            Rejection::ForbiddenOrigin | Rejection::Forbidden => 403,
            Rejection::Unauthorized(_) => 401,
            Rejection::TooManyFromAddress => 429,
        }
    }

    fn reason_phrase(&self) -> &'static str {
        match self {
            Rejection::BadRequest(_) | Rejection::InvalidId(_) | Rejection::BadSince(_) => "Bad Request",
            Rejection::UnsupportedVersion => "Upgrade Required",
            Rejection::NotFound => "Not Found",
            Rejection::TooLarge => "Request Header Fields Too Large",
            Rejection::Timeout => "Request Timeout",
            Rejection::OverCapacity => "Service Unavailable",
            Rejection::ForbiddenOrigin | Rejection::Forbidden => "Forbidden",
            Rejection::Unauthorized(_) => "Unauthorized",
            Rejection::TooManyFromAddress => "Too Many Requests",
        }
    }

    /// A complete HTTP/1.1 response that refuses the upgrade and closes the connection.
    ///
    /// The body is this rejection's [`Display`](std::fmt::Display) text on one line,
    /// ending in `\n`.
    pub fn response(&self) -> Vec<u8> {
        // One line whatever the detail string holds, so the body cannot forge headers or
        // confuse a line-based client.
        let mut body: String =
            self.to_string().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        body.push('\n');
        let extra = match self {
            Rejection::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
            Rejection::Unauthorized(_) => "WWW-Authenticate: Bearer\r\n",
            _ => "",
        };
        format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n{extra}\r\n{body}",
            self.status(),
            self.reason_phrase(),
            body.len(),
        )
        .into_bytes()
    }
}

fn bad(reason: &str) -> Rejection {
    Rejection::BadRequest(reason.to_owned())
}

/// Headers beyond this many are held in a `Vec` rather than on the stack.
const STACK_HEADERS: usize = 64;

/// Parses the request head at the start of `buf`.
///
/// Returns `Ok(None)` while the head is incomplete and still within the limits: read more
/// and call again with everything read so far. Returns `Ok(Some((request, consumed)))`
/// for a valid upgrade request, where `consumed` is the length of the head: the bytes
/// after it are frames the client sent early, which the caller must keep.
///
/// The path is not checked here; see [`id_from_target`].
///
/// # Errors
///
/// [`Rejection::TooLarge`] when the head does not end within `max_header_bytes` or has
/// more than `max_headers` headers, [`Rejection::UnsupportedVersion`] when
/// `Sec-WebSocket-Version` is missing or not 13, and [`Rejection::BadRequest`] for
/// malformed HTTP or a request that is not a WebSocket upgrade.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, Rejection> {
    let mut stack_headers = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap_headers;
    let headers = if limits.max_headers <= STACK_HEADERS {
        &mut stack_headers[..limits.max_headers]
    } else {
        heap_headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap_headers[..]
    };
    let mut request = httparse::Request::new(headers);
    // Never look past the limit: a head that has not ended by then is too large anyway.
    let head = &buf[..buf.len().min(limits.max_header_bytes)];
    let consumed = match request.parse(head) {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_header_bytes => {
            return Err(Rejection::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::TooLarge),
        Err(error) => return Err(Rejection::BadRequest(format!("malformed HTTP request ({error})"))),
    };

    if request.method != Some("GET") {
        return Err(bad("the method must be GET"));
    }
    if request.version != Some(1) {
        return Err(bad("the HTTP version must be 1.1 or later"));
    }
    let headers = request.headers;
    let values = |name: &'static str| {
        headers.iter().filter(move |header| header.name.eq_ignore_ascii_case(name)).map(|header| header.value)
    };
    let single = |name: &'static str| -> Result<Option<&[u8]>, Rejection> {
        let mut all = values(name);
        let first = all.next();
        if all.next().is_some() {
            return Err(Rejection::BadRequest(format!("more than one {name} header")));
        }
        Ok(first.map(|value| value.trim_ascii()))
    };

    match single("Host")? {
        None => return Err(bad("the Host header is missing")),
        Some(host)
            if host.is_empty() || host.iter().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) =>
        {
            return Err(bad("the Host header is invalid"));
        }
        Some(_) => {}
    }
    if !values("Upgrade").any(|value| has_token(value, b"websocket")) {
        return Err(bad("the Upgrade header must be `websocket`"));
    }
    if !values("Connection").any(|value| has_token(value, b"upgrade")) {
        return Err(bad("the Connection header must contain `Upgrade`"));
    }
    if single("Sec-WebSocket-Version")? != Some(b"13") {
        return Err(Rejection::UnsupportedVersion);
    }
    let key = match single("Sec-WebSocket-Key")? {
        None => return Err(bad("the Sec-WebSocket-Key header is missing")),
        Some(key) => key,
    };
    if !matches!(BASE64.decode(key), Ok(nonce) if nonce.len() == 16) {
        return Err(bad("Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    // Valid base64 is ASCII.
    let key = String::from_utf8_lossy(key).into_owned();
    let origin = match single("Origin")? {
        None => None,
        Some(origin) => match std::str::from_utf8(origin) {
            Ok(origin) => Some(origin.to_owned()),
            Err(_) => return Err(bad("the Origin header is not valid UTF-8")),
        },
    };
    let target = request.path.unwrap_or_default().to_owned();
    let headers =
        headers.iter().map(|header| (header.name.to_ascii_lowercase(), header.value.to_vec())).collect();
    Ok(Some((Request { target, key, origin, headers }, consumed)))
}

/// Whether the comma-separated header `value` lists `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// The id in `target` under `prefix`, e.g. `"456"` for prefix `"/websocket/"` and target
/// `"/websocket/456?token=x"`.
///
/// The query string is ignored. The id segment is percent-decoded, then must be UTF-8 and
/// pass [`validate_id`](crate::validate_id).
///
/// # Errors
///
/// [`Rejection::NotFound`] if `target` is not under `prefix`; [`Rejection::InvalidId`] if
/// the id is empty, is followed by more path segments, is not UTF-8 once decoded, or is
/// not a valid id.
pub fn id_from_target(target: &str, prefix: &str) -> Result<String, Rejection> {
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let segment = path.strip_prefix(prefix).ok_or(Rejection::NotFound)?;
    if segment.is_empty() {
        return Err(Rejection::InvalidId("the id is empty".into()));
    }
    if segment.contains('/') {
        return Err(Rejection::InvalidId("the path goes on after the id".into()));
    }
    let id = match percent_decode_str(segment).decode_utf8() {
        Ok(id) => id,
        Err(_) => return Err(Rejection::InvalidId("the id is not UTF-8 once percent-decoded".into())),
    };
    match crate::validate_id(&id) {
        Ok(()) => Ok(Cow::into_owned(id)),
        Err(crate::Error::InvalidId(why)) => Err(Rejection::InvalidId(why)),
        Err(other) => Err(Rejection::InvalidId(other.to_string())),
    }
}

/// The position a resuming client asks to continue from: the `since` query parameter of
/// `target` (`/websocket/456?since=k3j9a2x1:42`, the `:` may be percent-encoded), `None`
/// without one.
///
/// # Errors
///
/// [`Rejection::BadSince`] when `since` is given twice, or is not `EPOCH:OFFSET` once
/// percent-decoded.
pub fn since_from_target(target: &str) -> Result<Option<Position>, Rejection> {
    let Some((_, query)) = target.split_once('?') else { return Ok(None) };
    let mut since = None;
    for value in query.split('&').filter_map(|pair| pair.strip_prefix("since=")) {
        if since.is_some() {
            return Err(Rejection::BadSince("`since` is given more than once".into()));
        }
        let text = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| Rejection::BadSince("not UTF-8 once percent-decoded".into()))?;
        let position = text.parse::<Position>().map_err(|e| Rejection::BadSince(e.to_string()))?;
        since = Some(position);
    }
    Ok(since)
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + the RFC 6455 GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(sha1.finalize())
}

/// The `101 Switching Protocols` response that accepts `request`.
pub fn switching_protocols(request: &Request) -> Vec<u8> {
    switching_protocols_with(request, None)
}

/// The `101 Switching Protocols` response that accepts `request` and selects the
/// subprotocol `protocol` (which must be one the client offered, RFC 6455 4.2.2), with no
/// extensions.
pub fn switching_protocols_with(request: &Request, protocol: Option<&str>) -> Vec<u8> {
    response_101(request, protocol, &Extensions::default())
}

/// Accepts `request`: answers its `Sec-WebSocket-Extensions` offer and gives the `101
/// Switching Protocols` response that selects `protocol` (as in
/// [`switching_protocols_with`]) and the negotiated extensions, which the connection must
/// then honour.
///
/// `compression` says whether permessage-deflate may be accepted (see
/// [`Extensions::negotiate`]); when nothing is accepted the response is exactly
/// [`switching_protocols_with`]'s.
pub fn accept(request: &Request, protocol: Option<&str>, compression: bool) -> (Vec<u8>, Extensions) {
    let offers = request
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| value.as_slice());
    let extensions = Extensions::negotiate(offers, compression);
    (response_101(request, protocol, &extensions), extensions)
}

fn response_101(request: &Request, protocol: Option<&str>, extensions: &Extensions) -> Vec<u8> {
    let protocol = protocol.map_or(String::new(), |p| format!("Sec-WebSocket-Protocol: {p}\r\n"));
    let extensions =
        extensions.response_header().map_or(String::new(), |e| format!("Sec-WebSocket-Extensions: {e}\r\n"));
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{protocol}{extensions}\r\n",
        accept_key(&request.key)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_header_bytes: 1024, max_headers: 16 };
    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn request_with(lines: &[&str]) -> Vec<u8> {
        let mut head = String::from("GET /websocket/456?token=x HTTP/1.1\r\n");
        for line in lines {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    fn valid_lines() -> Vec<&'static str> {
        vec![
            "Host: example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
    }

    /// The valid request with the line starting with `name` replaced by `line` (or
    /// removed when `line` is `None`).
    fn with_line(name: &str, line: Option<&'static str>) -> Vec<u8> {
        let mut lines: Vec<_> = valid_lines().into_iter().filter(|l| !l.starts_with(name)).collect();
        lines.extend(line);
        request_with(&lines)
    }

    fn rejection(buf: &[u8]) -> Rejection {
        parse_request(buf, &LIMITS).expect_err("expected a rejection")
    }

    #[test]
    fn since_is_read_from_the_query_percent_encoded_or_not() {
        let position: Position = "k3j9a2x1:42".parse().unwrap();
        assert_eq!(since_from_target("/websocket/456"), Ok(None));
        assert_eq!(since_from_target("/websocket/456?token=x"), Ok(None));
        assert_eq!(since_from_target("/websocket/456?since=k3j9a2x1:42"), Ok(Some(position)));
        assert_eq!(since_from_target("/websocket/456?token=x&since=k3j9a2x1%3A42"), Ok(Some(position)));
        assert_eq!(since_from_target("/websocket/456?since=k3j9a2x1%3a42&token=x"), Ok(Some(position)));
        assert_eq!(since_from_target("/websocket/456?xsince=1"), Ok(None), "another parameter");
        for (target, why) in [
            ("/w/1?since=", "a position is EPOCH:OFFSET, and this one has no `:`"),
            ("/w/1?since=abc", "a position is EPOCH:OFFSET, and this one has no `:`"),
            ("/w/1?since=a-b:1", "an epoch holds only ASCII letters and digits"),
            ("/w/1?since=ab:x", "the offset is not a decimal number up to 2^53 - 1"),
            ("/w/1?since=ab%FF:1", "not UTF-8 once percent-decoded"),
            ("/w/1?since=ab:1&since=ab:2", "`since` is given more than once"),
        ] {
            let rejection = since_from_target(target).unwrap_err();
            assert_eq!(rejection, Rejection::BadSince(why.into()), "{target}");
            assert_eq!(rejection.status(), 400);
            let response = String::from_utf8(rejection.response()).unwrap();
            assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{response}");
            assert!(response.ends_with(&format!("\r\n\r\ninvalid since: {why}\n")), "{response}");
        }
    }

    #[test]
    fn accept_key_of_the_rfc_example() {
        // RFC 6455 sections 1.3 and 4.2.2.
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_valid_request_parses_and_leaves_early_frames() {
        let mut lines = valid_lines();
        lines.push("Origin: https://example.com");
        lines.push("X-Custom: \u{e9}t\u{e9}");
        let head = request_with(&lines);
        let mut buf = head.clone();
        buf.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
        let (request, consumed) = parse_request(&buf, &LIMITS).unwrap().unwrap();
        assert_eq!(consumed, head.len());
        assert_eq!(request.target, "/websocket/456?token=x");
        assert_eq!(request.key, KEY);
        assert_eq!(request.origin.as_deref(), Some("https://example.com"));
        assert_eq!(request.headers.len(), 7);
        assert_eq!(request.headers[0], ("host".to_owned(), b"example.com".to_vec()));
        assert_eq!(request.header("x-custom"), Some("\u{e9}t\u{e9}".as_bytes()));
        assert_eq!(request.header("SEC-WEBSOCKET-VERSION"), Some(&b"13"[..]));

        let response = String::from_utf8(switching_protocols(&request)).unwrap();
        assert_eq!(
            response,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        let response = String::from_utf8(switching_protocols_with(&request, Some("wspush.bearer"))).unwrap();
        assert_eq!(
            response,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: wspush.bearer\r\n\r\n"
        );
    }

    #[test]
    fn accept_declines_every_extension_without_compression_and_answers_as_before() {
        let mut lines = valid_lines();
        lines.push("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits");
        lines.push("sec-websocket-extensions: x-webkit-deflate-frame");
        for lines in [valid_lines(), lines] {
            let (request, _) = parse_request(&request_with(&lines), &LIMITS).unwrap().unwrap();
            for protocol in [None, Some("wspush.bearer")] {
                let (response, extensions) = accept(&request, protocol, false);
                assert_eq!(response, switching_protocols_with(&request, protocol));
                assert_eq!(extensions, Extensions::default());
                assert!(extensions.is_empty());
                assert_eq!(extensions.allowed_rsv(), crate::frame::Rsv::NONE);
            }
        }
    }

    #[test]
    fn accept_with_compression_answers_a_deflate_offer() {
        let mut lines = valid_lines();
        lines.push("sec-websocket-extensions: x-webkit-deflate-frame");
        lines.push(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, permessage-deflate",
        );
        let (request, _) = parse_request(&request_with(&lines), &LIMITS).unwrap().unwrap();
        let (response, extensions) = accept(&request, Some("wspush.bearer"), true);
        assert_eq!(extensions.deflate_window_bits(), Some(10));
        assert_eq!(
            String::from_utf8(response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: wspush.bearer\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover; server_max_window_bits=10\r\n\r\n"
        );
        // Without an offer, compression on changes nothing.
        let (request, _) = parse_request(&request_with(&valid_lines()), &LIMITS).unwrap().unwrap();
        let (response, extensions) = accept(&request, None, true);
        assert!(extensions.is_empty());
        assert_eq!(response, switching_protocols(&request));
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let buf = request_with(&[
            "host: example.com:8080",
            "UPGRADE: WebSocket",
            "connection: keep-alive, Upgrade",
            "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  ",
            "SEC-WEBSOCKET-VERSION: 13",
        ]);
        let (request, _) = parse_request(&buf, &LIMITS).unwrap().unwrap();
        assert_eq!(request.key, KEY);
        assert_eq!(request.origin, None);
        let buf = with_line("Connection", Some("Connection: keep-alive,upgrade"));
        assert!(parse_request(&buf, &LIMITS).unwrap().is_some());
    }

    #[test]
    fn incomplete_requests_ask_for_more() {
        let buf = request_with(&valid_lines());
        for end in 0..buf.len() {
            assert_eq!(parse_request(&buf[..end], &LIMITS), Ok(None), "prefix of {end} bytes");
        }
    }

    #[test]
    fn bad_requests() {
        let post = String::from_utf8(request_with(&valid_lines())).unwrap().replacen("GET", "POST", 1);
        assert_eq!(rejection(post.as_bytes()), Rejection::BadRequest("the method must be GET".into()));
        let old =
            String::from_utf8(request_with(&valid_lines())).unwrap().replacen("HTTP/1.1", "HTTP/1.0", 1);
        assert!(matches!(rejection(old.as_bytes()), Rejection::BadRequest(_)));
        assert!(matches!(rejection(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), Rejection::BadRequest(_)));
        assert!(matches!(
            rejection(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            Rejection::BadRequest(_)
        ));

        for (name, line) in [
            ("Host", None),
            ("Host", Some("Host: ")),
            ("Upgrade", None),
            ("Upgrade", Some("Upgrade: h2c")),
            ("Connection", None),
            ("Connection", Some("Connection: keep-alive")),
            ("Sec-WebSocket-Key", None),
            ("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ")),
            ("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: c2hvcnQ=")),
            ("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSEh")),
            ("Sec-WebSocket-Key", Some("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==")),
        ] {
            let rejected = rejection(&with_line(name, line));
            assert!(matches!(rejected, Rejection::BadRequest(_)), "{name}: {line:?} gave {rejected:?}");
            assert_eq!(rejected.status(), 400);
        }
        let mut lines = valid_lines();
        lines.push("Host: other.example.com");
        assert!(matches!(rejection(&request_with(&lines)), Rejection::BadRequest(_)));
    }

    #[test]
    fn unsupported_versions() {
        for line in [None, Some("Sec-WebSocket-Version: 8"), Some("Sec-WebSocket-Version: 13, 8")] {
            assert_eq!(rejection(&with_line("Sec-WebSocket-Version", line)), Rejection::UnsupportedVersion);
        }
        let response = String::from_utf8(Rejection::UnsupportedVersion.response()).unwrap();
        assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{response}");
        assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{response}");
    }

    #[test]
    fn heads_over_the_limits_are_too_large() {
        let limits = Limits { max_header_bytes: 300, max_headers: 16 };
        let mut lines = valid_lines();
        let long = format!("X-Long: {}", "a".repeat(300));
        lines.push(&long);
        let buf = request_with(&lines);
        assert_eq!(parse_request(&buf, &limits), Err(Rejection::TooLarge));
        // Still too large when only the first limit-many bytes have arrived.
        assert_eq!(parse_request(&buf[..300], &limits), Err(Rejection::TooLarge));
        assert_eq!(parse_request(&buf[..299], &limits), Ok(None));

        let extra: Vec<String> = (0..12).map(|i| format!("X-Extra-{i}: {i}")).collect();
        let mut lines = valid_lines();
        lines.extend(extra.iter().map(String::as_str));
        assert_eq!(rejection(&request_with(&lines)), Rejection::TooLarge);
        // Exactly at the header limit is fine.
        lines.truncate(LIMITS.max_headers);
        assert!(parse_request(&request_with(&lines), &LIMITS).unwrap().is_some());
        // More headers than fit on the stack.
        let limits = Limits { max_header_bytes: 1 << 16, max_headers: 100 };
        let extra: Vec<String> = (0..90).map(|i| format!("X-Extra-{i}: {i}")).collect();
        let mut lines = valid_lines();
        lines.extend(extra.iter().map(String::as_str));
        let (request, _) = parse_request(&request_with(&lines), &limits).unwrap().unwrap();
        assert_eq!(request.headers.len(), 95);
    }

    #[test]
    fn ids_from_targets() {
        let id = |target: &str| id_from_target(target, "/websocket/");
        assert_eq!(id("/websocket/456"), Ok("456".into()));
        assert_eq!(id("/websocket/456?token=x&y=/z"), Ok("456".into()));
        assert_eq!(id("/websocket/%C3%A9"), Ok("\u{e9}".into()));
        assert_eq!(id("/websocket/user%20one"), Ok("user one".into()));
        assert_eq!(id(&format!("/websocket/{}", "x".repeat(128))), Ok("x".repeat(128)));
        assert_eq!(id("/other/456"), Err(Rejection::NotFound));
        assert_eq!(id("/websocket"), Err(Rejection::NotFound));
        assert_eq!(id("/"), Err(Rejection::NotFound));
        for bad in ["/websocket/", "/websocket/?x=1", "/websocket/%FF", "/websocket/a/b", "/websocket/a%2Fb"]
        {
            assert!(matches!(id(bad), Err(Rejection::InvalidId(_))), "{bad}");
        }
        let long = format!("/websocket/{}", "x".repeat(129));
        assert!(matches!(id(&long), Err(Rejection::InvalidId(_))));
        // 64 two-byte characters: 128 bytes is fine, one more is not.
        assert_eq!(id(&format!("/websocket/{}", "%C3%A9".repeat(64))), Ok("\u{e9}".repeat(64)));
        assert!(matches!(id(&format!("/websocket/{}a", "%C3%A9".repeat(64))), Err(Rejection::InvalidId(_))));
    }

    #[test]
    fn rejection_responses() {
        let response = Rejection::UnsupportedVersion.response();
        let text = String::from_utf8(response).unwrap();
        let body = "only WebSocket version 13 is supported\n";
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n\r\n{body}",
                body.len()
            )
        );
        for (rejection, status) in [
            (Rejection::BadRequest("the method must be GET".into()), "400 Bad Request"),
            (Rejection::NotFound, "404 Not Found"),
            (Rejection::InvalidId("the id is empty".into()), "400 Bad Request"),
            (Rejection::TooLarge, "431 Request Header Fields Too Large"),
            (Rejection::Timeout, "408 Request Timeout"),
            (Rejection::OverCapacity, "503 Service Unavailable"),
            (Rejection::ForbiddenOrigin, "403 Forbidden"),
            (Rejection::Unauthorized(AuthRejection::Expired), "401 Unauthorized"),
            (Rejection::Forbidden, "403 Forbidden"),
            (Rejection::TooManyFromAddress, "429 Too Many Requests"),
        ] {
            let text = String::from_utf8(rejection.response()).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{text}");
            assert_eq!(status[..3].parse::<u16>().unwrap(), rejection.status());
            assert!(!text.contains("Sec-WebSocket-Version"));
            let challenge = text.contains("\r\nWWW-Authenticate: Bearer\r\n");
            assert_eq!(challenge, rejection.status() == 401, "{text}");
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{text}");
            assert_eq!(body, format!("{rejection}\n"));
        }
        let text =
            String::from_utf8(Rejection::Unauthorized(AuthRejection::BadSignature).response()).unwrap();
        assert!(text.ends_with("\r\n\r\nunauthorized: bad_signature\n"), "{text}");
        // A detail with a line break cannot split the body.
        let text = String::from_utf8(Rejection::BadRequest("a\r\nb".into()).response()).unwrap();
        assert!(text.ends_with("bad WebSocket upgrade request: a  b\n"), "{text}");
    }
}
