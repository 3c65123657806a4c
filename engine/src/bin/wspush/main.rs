//! `wspush`: one standalone node. The engine accepts WebSockets at
//! `ws://ADDR/websocket/{id}`; an HTTP API (axum) pushes messages to ids, and serves
//! health, stats, Prometheus metrics and a demo page.
//!
//! Startup prints two lines to stdout that scripts and tests parse:
//!
//! ```text
//! wspush: websocket listening on ws://0.0.0.0:8081/websocket/
//! wspush: http api listening on http://127.0.0.1:8080
//! ```
//!
//! and in cluster mode (`--redis`) a third, with the node's id and the Redis server (its
//! password, if the URL has one, replaced by `***`):
//!
//! ```text
//! wspush: cluster node 3f9a0c1b2d4e via redis://127.0.0.1:6379
//! ```
//!
//! With `--tls-cert`/`--tls-key` the first line says `wss://`; with `--api-tls-cert` the
//! second says `https://`. SIGHUP reloads the TLS
//! certificate and key (new connections get them; a bad file is refused, logged, and the
//! old certificate kept).
//!
//! Exit codes: 0 after a graceful shutdown (SIGINT, SIGTERM), 1 when a listener cannot be
//! bound or the server fails, 2 for invalid settings (a TLS file that cannot be used
//! included). `--check` only checks the settings
//! (0 or 2); `--example-config` prints a file with every setting commented out.

mod api;
mod api_server;
mod cli;
mod demo;
mod example_config;
mod metrics;

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use wspush::{Engine, Event};

/// How long the engine gets to send close frames and flush on shutdown.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let settings = match cli::request() {
        Ok(cli::Request::Serve(settings)) => *settings,
        Ok(cli::Request::Check) => {
            println!("wspush: the settings are valid");
            return ExitCode::SUCCESS;
        }
        Ok(cli::Request::ExampleConfig) => {
            print!("{}", example_config::render());
            return ExitCode::SUCCESS;
        }
        Err(cli::LoadError::Clap(error)) => error.exit(),
        Err(cli::LoadError::Setting(error)) => {
            eprintln!("wspush: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&settings.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { message, code }) => {
            // One line, like the settings errors (the log may be filtered out).
            eprintln!("wspush: {message}");
            ExitCode::from(code)
        }
    }
}

/// Why the server stopped other than by a signal: the message and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), code: 1 }
    }
}

/// Starts the engine and the API, serves until SIGINT/SIGTERM, then shuts both down.
fn run(settings: cli::Settings) -> Result<(), Failure> {
    let started = Instant::now();
    let engine = Engine::start(settings.engine.clone()).map_err(|e| match e {
        wspush::Error::InvalidConfig { .. } => Failure { message: e.to_string(), code: 2 },
        other => Failure::new(format!("cannot start the engine: {other}")),
    })?;
    let engine = Arc::new(engine);
    engine.set_event_handler(log_event);
    let ws_addr =
        engine.local_addr().or(settings.engine.ws_listen).expect("the server always sets ws_listen");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wspush-api")
        .build()
        .map_err(|e| Failure::new(format!("cannot start the async runtime: {e}")))?;
    let api_counters = Arc::new(api_server::ApiCounters::default());
    let state = Arc::new(api::ApiState {
        engine: engine.clone(),
        token: settings.api_token.clone(),
        max_outbound_message_size: settings.engine.effective_max_outbound_message_size(),
        body_timeout: settings.api_limits.body_timeout,
        counters: api_counters.clone(),
        started,
        demo_page: demo::render(
            ws_addr.port(),
            &settings.engine.path_prefix,
            settings.api_token.is_some(),
            settings.engine.auth.is_some(),
        ),
    });
    let node_id = engine.node_id().map(str::to_owned);
    #[cfg(unix)]
    runtime.spawn(reload_on_hangup(engine.clone(), settings.api_tls.clone()));
    let served = runtime.block_on(serve(settings, ws_addr, node_id, api::router(state), api_counters));
    // Requests still running hold the engine only briefly; do not wait for stragglers.
    runtime.shutdown_timeout(Duration::from_secs(1));
    info!("closing websockets (1001), up to {} seconds", SHUTDOWN_TIMEOUT.as_secs());
    engine.shutdown(SHUTDOWN_TIMEOUT);
    info!("stopped");
    served
}

/// Binds the API, announces both listeners, and serves until a signal arrives.
async fn serve(
    settings: cli::Settings,
    ws_addr: SocketAddr,
    node_id: Option<String>,
    app: axum::Router,
    counters: Arc<api_server::ApiCounters>,
) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(settings.api_listen)
        .await
        .map_err(|e| Failure::new(format!("cannot listen on {} (--api-listen): {e}", settings.api_listen)))?;
    let api_addr = listener.local_addr().map_err(|e| Failure::new(format!("api listener: {e}")))?;
    let api_scheme = if settings.api_tls.is_some() { "https" } else { "http" };
    let api_tls = settings.api_tls.as_ref().map(|tls| tls.config().clone());

    let prefix = &settings.engine.path_prefix;
    let scheme = if settings.engine.tls_cert.is_some() { "wss" } else { "ws" };
    info!(
        workers = settings.engine.effective_workers(),
        max_message_size = settings.engine.max_message_size,
        max_buffered_bytes = settings.engine.max_buffered_bytes,
        slow_consumer = ?settings.engine.slow_consumer,
        echo = settings.engine.echo,
        auth = settings.engine.auth.as_ref().map_or("none".to_owned(), |auth| auth.algorithm().to_string()),
        allowed_origins = settings.engine.allowed_origins.as_ref().map_or("any".to_owned(), |o| o.join(",")),
        max_connections_per_ip = settings.engine.max_connections_per_ip,
        "websocket listening on {scheme}://{ws_addr}{prefix}"
    );
    if settings.engine.auth.is_none() && !ws_addr.ip().is_loopback() {
        warn!(
            "the websocket listener on {ws_addr} is reachable from other hosts and checks no tokens: \
             anyone who can reach it can connect as any id and read its messages (see --auth-jwt-secret)"
        );
    }
    // `cli` refuses a non-loopback API address without a token; this is the loopback case.
    let limits = &settings.api_limits;
    info!(
        token_required = settings.api_token.is_some(),
        header_timeout = ?limits.header_timeout,
        body_timeout = ?limits.body_timeout,
        idle_timeout = ?limits.idle_timeout,
        max_connections = limits.max_connections,
        "http api listening on {api_scheme}://{api_addr}"
    );
    let cluster_line = settings.engine.cluster.as_ref().map(|cluster| {
        let node_id = node_id.as_deref().unwrap_or("?");
        let redis = cluster.redacted_url();
        info!(
            prefix = cluster.prefix,
            compat_channel = cluster.compat_channel.as_deref().unwrap_or("none"),
            compat_publish = cluster.compat_publish,
            queue_limit = cluster.queue_limit,
            publish_inbound = cluster.publish_inbound,
            "cluster node {node_id} via {redis}"
        );
        format!("wspush: cluster node {node_id} via {redis}")
    });
    // Tests and scripts parse these lines.
    let mut stdout = std::io::stdout().lock();
    let announced = writeln!(stdout, "wspush: websocket listening on {scheme}://{ws_addr}{prefix}")
        .and_then(|()| writeln!(stdout, "wspush: http api listening on {api_scheme}://{api_addr}"))
        .and_then(|()| match &cluster_line {
            Some(line) => writeln!(stdout, "{line}"),
            None => Ok(()),
        })
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(e) = announced {
        warn!("cannot write the listening addresses to stdout: {e}");
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(api_server::serve(
        listener,
        api_tls,
        app,
        settings.api_limits.clone(),
        counters,
        async move {
            let _ = stop_rx.await;
        },
    ));
    tokio::select! {
        signal = shutdown_signal() => info!("{signal}: shutting down"),
        result = &mut server => {
            return match result {
                Ok(()) => Err(Failure::new("the http api stopped unexpectedly")),
                Err(e) => Err(Failure::new(format!("the http api panicked: {e}"))),
            };
        }
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_TIMEOUT, server).await {
        Ok(_) => debug!("http api stopped"),
        Err(_) => {
            warn!("http api requests still open after {} seconds; closing them", SHUTDOWN_TIMEOUT.as_secs())
        }
    }
    Ok(())
}

/// Reloads the TLS certificates (the WebSocket listener's, the API's) on every SIGHUP, for
/// the life of the runtime.
#[cfg(unix)]
async fn reload_on_hangup(engine: Arc<Engine>, api_tls: Option<Arc<wspush::tls::ServerTls>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            warn!("cannot listen for SIGHUP (no TLS reloads): {e}");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        // Two small files: read on a blocking thread all the same.
        let engine = engine.clone();
        match tokio::task::spawn_blocking(move || engine.reload_tls()).await {
            // The engine logs the reload.
            Ok(Ok(true)) => {}
            Ok(Ok(false)) if api_tls.is_none() => {
                info!("SIGHUP: nothing to reload (no --tls-cert, no --api-tls-cert)")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::error!("SIGHUP: TLS certificate reload refused, the old certificate stays: {e}")
            }
            Err(e) => tracing::error!("SIGHUP: the TLS reload panicked: {e}"),
        }
        if let Some(tls) = &api_tls {
            let tls = tls.clone();
            match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Ok(())) => info!("API TLS certificate reloaded"),
                Ok(Err(e)) => tracing::error!(
                    "SIGHUP: API TLS certificate reload refused, the old certificate stays: {}",
                    e.reason
                ),
                Err(e) => tracing::error!("SIGHUP: the API TLS reload panicked: {e}"),
            }
        }
    }
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn shutdown_signal() -> &'static str {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                warn!("cannot listen for SIGTERM: {e}");
                let _ = interrupt.await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = interrupt => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        "interrupt"
    }
}

/// Logs socket events at debug level (messages at trace). Runs on a worker thread: cheap.
fn log_event(event: &Event<'_>) {
    match *event {
        Event::Open { conn, id } => debug!(%conn, id, "socket open"),
        Event::Close { conn, id, code } => debug!(%conn, id, code, "socket closed"),
        Event::Message { conn, id, message } => {
            tracing::trace!(%conn, id, bytes = message.as_bytes().len(), text = message.is_text(), "message in")
        }
    }
}
