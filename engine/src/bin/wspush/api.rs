//! The HTTP API: push to an id or to everyone, where an id is online, health, stats,
//! metrics and the demo page. In cluster mode answers also count the other nodes.
//!
//! Every error is JSON `{"error": "..."}` with a 4xx/5xx status, axum's own rejections
//! (bad path encoding, body too large, unknown route, wrong method) included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;
use wspush::history::HistoryRead;
use wspush::{Engine, Message, MetricKind, Position, Stats};

use crate::api_server::ApiCounters;
use crate::metrics;

/// How long a push or a presence query waits for the engine's answer before answering 503.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every handler shares.
pub struct ApiState {
    /// The engine pushes go to.
    pub engine: Arc<Engine>,
    /// The bearer token the data routes (pushes, presence, stats) require, if any.
    pub token: Option<String>,
    /// The largest body a push accepts: the largest message the engine pushes
    /// (`max_outbound_message_size`).
    pub max_outbound_message_size: usize,
    /// How long a push may take to send its body (`api_body_timeout`), if limited.
    pub body_timeout: Option<Duration>,
    /// The API server's own counters.
    pub counters: Arc<ApiCounters>,
    /// When the server started (for `uptime_seconds`).
    pub started: Instant,
    /// The demo page, rendered once.
    pub demo_page: String,
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    let protected = Router::new()
        .route("/socket/{id}", post(send_to_id))
        .route("/socket/", post(empty_id))
        .route("/broadcast", post(broadcast))
        .route("/presence/{id}", get(presence))
        .route("/presence/", get(empty_id))
        .route("/history/{id}", get(history))
        .route("/history/", get(empty_id))
        .route("/stats", get(stats))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let open = Router::new()
        .route("/", get(demo_page))
        .route("/client.js", get(crate::demo::client_js))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text));
    open.merge(protected)
        .fallback(not_found)
        // After every route is added: it applies to the routes present.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_outbound_message_size))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// The answer to an engine error.
    fn from_engine(error: wspush::Error) -> Self {
        let status = match error {
            wspush::Error::InvalidId(_) => StatusCode::BAD_REQUEST,
            wspush::Error::QueueFull | wspush::Error::ShutDown | wspush::Error::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            wspush::Error::MessageTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }

    /// The answer to a bad path parameter (e.g. percent-encoding that is not UTF-8).
    fn from_path(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }

    /// The answer to a body that could not be read: 413 when over the limit.
    fn from_body(rejection: BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than max_outbound_message_size ({limit} bytes)"),
            )
        } else {
            Self::new(rejection.status(), rejection.body_text())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still trickle in: the connection cannot be reused.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Rejects requests without `Authorization: Bearer TOKEN` when a token is configured.
async fn require_token(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request.headers().get(header::AUTHORIZATION).map(|value| value.as_bytes());
        let Some(given) = given else {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer TOKEN` header")
                .into_response();
        };
        let presented = given
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| given[7..].trim_ascii());
        match presented {
            Some(presented) if constant_time_eq(presented, token.as_bytes()) => {}
            Some(_) => return ApiError::new(StatusCode::UNAUTHORIZED, "wrong bearer token").into_response(),
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header must be `Bearer TOKEN`",
                )
                .into_response()
            }
        }
    }
    next.run(request).await
}

/// Compares without stopping at the first difference, so the time taken does not tell how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Logs every request at debug level.
async fn log_request(request: Request, next: Next) -> Response {
    let (method, uri, start) = (request.method().clone(), request.uri().clone(), Instant::now());
    let response = next.run(request).await;
    tracing::debug!(%method, %uri, status = response.status().as_u16(), elapsed = ?start.elapsed(), "api request");
    response
}

/// The message a push body carries: binary for `Content-Type: application/octet-stream`,
/// otherwise text, which must be UTF-8.
fn message_of<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Message<'a>, ApiError> {
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/octet-stream"));
    if binary {
        return Ok(Message::Binary(body));
    }
    std::str::from_utf8(body).map(Message::Text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not valid UTF-8 (from byte {}); send binary messages with \
                 `Content-Type: application/octet-stream`",
                e.valid_up_to()
            ),
        )
    })
}

/// Waits for the engine's answer to a push (its receipt: what the message reached) or to a
/// presence query; `what` names it in the timeout error.
async fn answer<T>(rx: oneshot::Receiver<T>, what: &str) -> Result<T, ApiError> {
    match tokio::time::timeout(RECEIPT_TIMEOUT, rx).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the engine is shutting down")),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the engine did not {what} within {} seconds", RECEIPT_TIMEOUT.as_secs()),
        )),
    }
}

/// A push's body, read whole within `api_body_timeout` (else 408) and at most
/// `max_outbound_message_size` bytes (else 413). The handler's last argument.
struct PushBody(Bytes);

impl FromRequest<Arc<ApiState>> for PushBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let read = Bytes::from_request(request, state);
        let read = match state.body_timeout {
            None => read.await,
            Some(timeout) => tokio::time::timeout(timeout, read).await.map_err(|_| {
                state.counters.timed_out();
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the body did not arrive within {timeout:?} (api_body_timeout)"),
                )
            })?,
        };
        read.map(PushBody).map_err(|r| ApiError::from_body(r, state.max_outbound_message_size))
    }
}

/// `POST /socket/{id}`: pushes the body to every socket of `id`.
async fn send_to_id(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<PushBody, ApiError>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Path(id) = id.map_err(ApiError::from_path)?;
    wspush::validate_id(&id).map_err(ApiError::from_engine)?;
    let PushBody(body) = body?;
    let message = message_of(&headers, &body)?;
    let (tx, rx) = oneshot::channel();
    state
        .engine
        .send_with_receipt(&id, message, move |receipt| {
            let _ = tx.send(receipt);
        })
        .map_err(ApiError::from_engine)?;
    let receipt = answer(rx, "confirm the message").await?;
    let mut body = json!({ "id": id, "sockets": receipt.sockets, "nodes": receipt.nodes });
    // Only with history on: without it the answer is exactly what it always was.
    if !state.engine.history_enabled() {
        return Ok((StatusCode::OK, Json(body)));
    }
    match receipt.position {
        Some(position) => {
            body["offset"] = position.offset.into();
            body["epoch"] = position.epoch.as_str().into();
            Ok((StatusCode::OK, Json(body)))
        }
        // Cluster mode with Redis unreachable: queued, and appended in send order when
        // Redis returns; its position is not known yet.
        None => {
            body["offset"] = Value::Null;
            body["epoch"] = Value::Null;
            Ok((StatusCode::ACCEPTED, Json(body)))
        }
    }
}

/// The default and the largest `limit` of `GET /history/{id}`.
const HISTORY_LIMIT: usize = 100;
const MAX_HISTORY_LIMIT: usize = 1_000;

/// `GET /history/{id}?since=EPOCH:OFFSET&limit=L`: the id's position and up to `limit`
/// messages (100 by default, at most 1000): after `since` when the history still reaches it
/// (`"recovered": true`), otherwise from the oldest kept.
async fn history(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id.map_err(ApiError::from_path)?;
    if !state.engine.history_enabled() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "history is off on this node: start it with --history-size N (N > 0)",
        ));
    }
    let (since, limit) = history_query(query.as_deref().unwrap_or(""))?;
    let (tx, rx) = oneshot::channel();
    state
        .engine
        .history(&id, since, limit, move |read| {
            let _ = tx.send(read);
        })
        .map_err(ApiError::from_engine)?;
    let read = answer(rx, "read the history").await?.map_err(ApiError::from_engine)?;
    Ok(Json(history_json(&id, &read)))
}

/// The `since` and `limit` of a history query.
fn history_query(query: &str) -> Result<(Option<Position>, usize), ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let (mut since, mut limit) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| bad(format!("the {name} parameter is not UTF-8 once percent-decoded")))?;
        match name {
            "since" if since.is_none() => {
                since = Some(value.parse::<Position>().map_err(|e| bad(format!("invalid since: {e}")))?)
            }
            "limit" if limit.is_none() => {
                let n = value.parse::<usize>().ok().filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n));
                limit = Some(n.ok_or_else(|| {
                    bad(format!("invalid limit: a number from 1 to {MAX_HISTORY_LIMIT}, got `{value}`"))
                })?);
            }
            "since" | "limit" => return Err(bad(format!("the {name} parameter is given more than once"))),
            _ => {}
        }
    }
    Ok((since, limit.unwrap_or(HISTORY_LIMIT)))
}

/// The JSON of `GET /history/{id}`: text messages as `"text"`, binary ones as base64 in
/// `"binary"`.
fn history_json(id: &str, read: &HistoryRead) -> Value {
    use base64::Engine as _;
    let messages: Vec<Value> = read
        .page
        .entries
        .iter()
        .map(|entry| match (entry.binary, std::str::from_utf8(&entry.body)) {
            (false, Ok(text)) => json!({ "offset": entry.offset, "text": text }),
            _ => json!({
                "offset": entry.offset,
                "binary": base64::engine::general_purpose::STANDARD.encode(&entry.body),
            }),
        })
        .collect();
    json!({
        "id": id,
        "epoch": read.page.epoch.as_str(),
        "offset": read.page.top,
        "recovered": read.recovered,
        "messages": messages,
    })
}

/// `POST /socket/` and `GET /presence/`: the id is missing.
async fn empty_id() -> ApiError {
    match wspush::validate_id("") {
        Err(error) => ApiError::from_engine(error),
        Ok(()) => ApiError::new(StatusCode::BAD_REQUEST, "invalid id: the id is empty"),
    }
}

/// `POST /broadcast`: pushes the body to every socket.
async fn broadcast(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Result<PushBody, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let PushBody(body) = body?;
    let message = message_of(&headers, &body)?;
    let (tx, rx) = oneshot::channel();
    state
        .engine
        .broadcast_with_receipt(message, move |receipt| {
            let _ = tx.send(receipt);
        })
        .map_err(ApiError::from_engine)?;
    let receipt = answer(rx, "confirm the message").await?;
    Ok(Json(json!({ "sockets": receipt.sockets, "nodes": receipt.nodes })))
}

/// `GET /presence/{id}`: the sockets of `id` on this node and, in cluster mode, the number
/// of nodes subscribed to it (this one included).
async fn presence(
    State(state): State<Arc<ApiState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id.map_err(ApiError::from_path)?;
    let (tx, rx) = oneshot::channel();
    state
        .engine
        .presence(&id, move |presence| {
            let _ = tx.send(presence);
        })
        .map_err(ApiError::from_engine)?;
    let what = if state.engine.is_healthy() {
        "count the sockets"
    } else {
        "count the nodes (Redis is unreachable)"
    };
    let presence = answer(rx, what).await?;
    Ok(Json(json!({ "id": id, "sockets": presence.sockets, "nodes": presence.nodes })))
}

/// `GET /healthz`: 200 while the node can do all it is configured for; 503 in cluster mode
/// while Redis is unreachable (local sockets are still served).
async fn healthz(State(state): State<Arc<ApiState>>) -> (StatusCode, Json<Value>) {
    health(state.engine.is_healthy(), state.engine.node_id())
}

/// The answer of `GET /healthz`.
fn health(healthy: bool, node_id: Option<&str>) -> (StatusCode, Json<Value>) {
    let (status, mut body) = if healthy {
        (StatusCode::OK, json!({ "status": "ok" }))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, json!({ "status": "degraded", "reason": "redis unreachable" }))
    };
    if let Some(node_id) = node_id {
        body["node_id"] = node_id.into();
    }
    (status, Json(body))
}

/// `GET /stats`: every counter, the version and the uptime.
async fn stats(State(state): State<Arc<ApiState>>) -> Json<Value> {
    Json(stats_json(&state.engine.stats(), state.started.elapsed()))
}

/// The JSON of `GET /stats`: every metric of [`Stats::metrics`] at its place (`a.b` is
/// `{"a": {"b": ...}}`; flags are booleans), plus the version, the uptime, the per-worker
/// connections as an array and the cluster's node id (`"cluster": null` on a single node).
pub fn stats_json(stats: &Stats, uptime: Duration) -> Value {
    let mut root = Map::new();
    root.insert("version".into(), wspush::VERSION.into());
    root.insert("uptime_seconds".into(), uptime.as_secs().into());
    root.insert("worker_connections".into(), stats.worker_connections.clone().into());
    root.insert("cluster".into(), Value::Null);
    for metric in stats.metrics() {
        let Some(path) = metric.json else { continue };
        let value = match metric.kind {
            MetricKind::Flag => Value::Bool(metric.value != 0),
            MetricKind::Counter | MetricKind::Gauge => metric.value.into(),
        };
        insert_at(&mut root, &path, value);
    }
    if let Some(cluster) = &stats.cluster {
        insert_at(&mut root, "cluster.node_id", cluster.node_id.clone().into());
    }
    Value::Object(root)
}

/// Puts `value` at the dotted `path`, making the objects on the way.
fn insert_at(root: &mut Map<String, Value>, path: &str, value: Value) {
    let mut object = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            object.insert(part.to_owned(), value);
            return;
        }
        let entry = object.entry(part.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        object = entry.as_object_mut().expect("made an object just above");
    }
}

/// `GET /metrics`.
async fn metrics_text(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    let text = metrics::render(&state.engine.stats(), state.started.elapsed(), &state.counters);
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text)
}

/// `GET /`.
async fn demo_page(State(state): State<Arc<ApiState>>) -> Html<String> {
    Html(state.demo_page.clone())
}

/// Any other path.
async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {method} {}", uri.path()))
}

/// A known path with another method.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wspush::{AuthFailures, ClusterStats, HandshakeFailures};

    #[test]
    fn stats_have_every_field() {
        let stats = Stats {
            connections: 1,
            ids: 2,
            worker_connections: vec![3, 4],
            connections_opened: 5,
            messages_in: 6,
            bytes_in: 7,
            messages_out: 8,
            bytes_out: 9,
            slow_consumer_disconnects: 10,
            slow_consumer_drops: 11,
            node_buffer_disconnects: 34,
            buffered_bytes: 35,
            inbound_rate_limited: 36,
            idle_timeouts: 12,
            protocol_errors: 13,
            messages_too_big: 37,
            queue_full: 14,
            handshake_failures: HandshakeFailures {
                bad_request: 15,
                bad_version: 16,
                bad_path: 17,
                too_large: 18,
                timeout: 19,
                over_capacity: 20,
                io: 21,
                forbidden_origin: 22,
                auth: AuthFailures {
                    missing: 23,
                    malformed: 24,
                    bad_signature: 25,
                    expired: 26,
                    not_yet_valid: 27,
                    wrong_subject: 28,
                    wrong_audience: 29,
                    wrong_issuer: 30,
                },
                forbidden: 31,
                over_ip_limit: 32,
                tls: 38,
            },
            token_expirations: 33,
            history_appended: 40,
            history_replayed: 41,
            history_resumes: 42,
            history_lost_signals: 43,
            history_duplicates: 46,
            history_gap_fills: 47,
            history_evicted: 44,
            history_bytes: 45,
            messages_deflated: 48,
            inflated_too_big: 49,
            cluster: None,
        };
        let value = stats_json(&stats, Duration::from_secs(99));
        assert_eq!(
            value,
            json!({
                "version": wspush::VERSION, "uptime_seconds": 99, "connections": 1, "ids": 2,
                "worker_connections": [3, 4], "connections_opened": 5, "messages_in": 6, "bytes_in": 7,
                "messages_out": 8, "bytes_out": 9, "slow_consumer_disconnects": 10,
                "slow_consumer_drops": 11, "node_buffer_disconnects": 34, "buffered_bytes": 35,
                "inbound_rate_limited": 36, "idle_timeouts": 12, "protocol_errors": 13, "messages_too_big": 37, "queue_full": 14,
                "handshake_failures": {"bad_request": 15, "bad_version": 16, "bad_path": 17,
                    "too_large": 18, "timeout": 19, "over_capacity": 20, "io": 21,
                    "forbidden_origin": 22,
                    "auth": {"missing": 23, "malformed": 24, "bad_signature": 25, "expired": 26,
                        "not_yet_valid": 27, "wrong_subject": 28, "wrong_audience": 29,
                        "wrong_issuer": 30},
                    "forbidden": 31, "over_ip_limit": 32, "tls": 38},
                "token_expirations": 33,
                "history_appended": 40, "history_replayed": 41, "history_resumes": 42,
                "history_lost_signals": 43, "history_duplicates": 46, "history_gap_fills": 47, "history_evicted": 44, "history_bytes": 45,
                "messages_deflated": 48, "inflated_too_big": 49,
                "cluster": null,
            })
        );
        let cluster = ClusterStats {
            node_id: "n1".into(),
            connected: true,
            published: 1,
            publish_round_trips: 2,
            publish_dropped: 3,
            publish_failed: 4,
            received: 5,
            own_skipped: 6,
            delivery_dropped: 7,
            malformed_envelopes: 8,
            malformed_compat: 9,
            subscribe_commands: 10,
            unsubscribe_commands: 11,
            subscribed_channels: 12,
            reconnects: 13,
            oversized_dropped: 14,
            publish_queued_bytes: 15,
            ..ClusterStats::default()
        };
        let value = stats_json(&Stats { cluster: Some(cluster), ..stats }, Duration::ZERO);
        assert_eq!(
            value["cluster"],
            json!({
                "enabled": true,
                "node_id": "n1", "connected": true, "published": 1, "publish_round_trips": 2,
                "publish_dropped": 3, "publish_failed": 4, "received": 5, "own_skipped": 6,
                "delivery_dropped": 7, "malformed_envelopes": 8, "malformed_compat": 9,
                "subscribe_commands": 10, "unsubscribe_commands": 11, "subscribed_channels": 12,
                "reconnects": 13, "master_switches": 0, "oversized_dropped": 14, "publish_queued_bytes": 15,
                "history_appends": 0, "history_append_retried": 0, "history_append_duplicates": 0,
                "history_reads": 0, "history_read_round_trips": 0, "history_read_failed": 0,
                "subscribe_round_trips": 0, "slot_map_refreshes": 0, "slot_map_changes": 0,
                "resubscribes": 0, "shards": 0, "shards_up": 0,
            })
        );
    }

    #[test]
    fn health_says_degraded_and_names_the_node() {
        let (status, Json(body)) = health(true, None);
        assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok" })));
        let (status, Json(body)) = health(true, Some("n1"));
        assert_eq!((status, body), (StatusCode::OK, json!({ "status": "ok", "node_id": "n1" })));
        let (status, Json(body)) = health(false, Some("n1"));
        assert_eq!(
            (status, body),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "degraded", "reason": "redis unreachable", "node_id": "n1" })
            )
        );
    }

    #[test]
    fn bodies_become_text_or_binary() {
        let mut headers = HeaderMap::new();
        assert_eq!(message_of(&headers, b"hi").unwrap(), Message::Text("hi"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("Application/Octet-Stream; x=y"));
        assert_eq!(message_of(&headers, b"\xff").unwrap(), Message::Binary(b"\xff"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let error = message_of(&headers, b"ok\xff").unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.contains("not valid UTF-8 (from byte 2)"), "{}", error.message);
    }

    #[test]
    fn history_queries_take_since_and_limit() {
        let position: Position = "e1:5".parse().unwrap();
        assert_eq!(history_query("").unwrap(), (None, HISTORY_LIMIT));
        assert_eq!(history_query("since=e1%3A5&limit=1000").unwrap(), (Some(position), 1000));
        assert_eq!(history_query("limit=1&since=e1:5&x=y").unwrap(), (Some(position), 1));
        for (query, error) in [
            ("since=e1", "invalid since: a position is EPOCH:OFFSET, and this one has no `:`"),
            ("limit=0", "invalid limit: a number from 1 to 1000, got `0`"),
            ("limit=1001", "invalid limit: a number from 1 to 1000, got `1001`"),
            ("limit=x", "invalid limit: a number from 1 to 1000, got `x`"),
            ("since=e1:1&since=e1:2", "the since parameter is given more than once"),
        ] {
            let e = history_query(query).unwrap_err();
            assert_eq!((e.status, e.message.as_str()), (StatusCode::BAD_REQUEST, error), "{query}");
        }
    }

    #[test]
    fn history_messages_are_text_or_base64() {
        use wspush::history::{Entry, Page};
        let page = Page {
            epoch: "e1".parse().unwrap(),
            top: 6,
            entries: vec![
                Entry { offset: 5, binary: false, body: "hi".into() },
                Entry { offset: 6, binary: true, body: vec![0u8, 255].into() },
            ],
        };
        let value = history_json("u1", &HistoryRead { page, recovered: true });
        assert_eq!(
            value,
            json!({"id": "u1", "epoch": "e1", "offset": 6, "recovered": true,
                   "messages": [{"offset": 5, "text": "hi"}, {"offset": 6, "binary": "AP8="}]})
        );
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
