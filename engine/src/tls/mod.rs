//! TLS on the WebSocket listener (`wss://`): rustls with the ring provider, driven
//! non-blocking inside the acceptor's and the workers' `mio` loops.
//!
//! - `certificate.rs`: the certificate chain and key from PEM files, and the slot that
//!   serves them, swapped whole on a reload (SIGHUP): new connections get the new
//!   certificate, connections already made keep theirs.
//! - `stream.rs`: one TLS connection over a non-blocking socket (rustls's unbuffered API),
//!   with the handshake's byte budget and bounded buffers; `held.rs`: what it keeps between
//!   calls, freed once emptied.
//!
//! A socket a host registers itself (`Engine::register`) is not touched: the host does its
//! own TLS.
//!
//! [`ServerTls`] is public for the standalone server's HTTP API listener (`--api-tls-cert`,
//! with optional client certificates), which loads and reloads its certificate the same way.

mod certificate;
mod held;
mod stream;

pub(crate) use self::certificate::provider;
pub use self::certificate::{CertificateFiles, LoadError, ServerTls};
pub(crate) use self::stream::TlsStream;
