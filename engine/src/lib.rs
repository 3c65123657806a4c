//! wspush: a sharded WebSocket delivery engine.
//!
//! A WebSocket belongs to the one process that accepted it, yet the code that wants to push
//! to user 456 runs anywhere. wspush keeps every socket of an id on one worker thread
//! (ids are hashed to workers), and lets any thread [`Engine::send`] to an id or
//! [`Engine::broadcast`] to everyone without locks: commands travel over lock-free
//! channels, each worker is a `mio` event loop that owns its sockets, and a message is
//! encoded into a WebSocket frame once for all of its targets.
//!
//! # Examples
//!
//! ```no_run
//! use wspush::{Config, Engine, Message};
//!
//! let engine = Engine::start(Config {
//!     ws_listen: Some("127.0.0.1:8081".parse().unwrap()),
//!     ..Config::default()
//! })?;
//! // Clients connect to ws://127.0.0.1:8081/websocket/456; push to all of them:
//! engine.send("456", Message::Text("order 456 shipped"))?;
//! engine.shutdown(std::time::Duration::from_secs(5));
//! # Ok::<(), wspush::Error>(())
//! ```
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

mod acceptor;
pub mod auth;
mod authorizer;
pub mod cluster;
mod compression;
mod config;
mod engine;
mod error;
mod event;
pub mod extensions;
pub mod frame;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod history;
mod id;
mod ip_limit;
mod listener;
mod log_safe;
mod message;
mod origin;
mod receipt;
pub mod settings;
mod stats;
#[cfg(test)]
mod test_alloc;
pub mod tls;
mod transport;
mod worker;

pub use auth::{AuthRejection, Grant, JwtAlgorithm, JwtAuth, JwtKey, BEARER_PROTOCOL};
pub use authorizer::{AuthorizeRequest, Authorizer};
pub use cluster::{ClusterConfig, ClusterStats};
pub use config::{Config, SlowConsumerPolicy};
pub use engine::{Engine, Handshake};
pub use error::Error;
pub use event::{ConnectionId, Event, EventHandler};
pub use history::{Epoch, Position};
pub use id::{validate_id, MAX_ID_LEN};
pub use message::Message;
pub use receipt::{Presence, Receipt};
pub use stats::{AuthFailures, HandshakeFailures, Metric, MetricKind, MetricValue, RefusalCount, Stats};

/// The version of this crate, as in `Cargo.toml`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
