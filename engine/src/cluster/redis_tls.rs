//! TLS to Redis (`rediss://`, `rediss+sentinel://`): whom to trust (the system's roots, or
//! only the CA certificates of `redis_tls_ca`), for the `redis` crate's connections and for
//! the subscriber's and the Sentinel listeners' own. rustls with the ring provider; the
//! server's name (or IP address) is always verified.

use std::io;
use std::path::Path;
use std::sync::Arc;

use redis::{ConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How a node's connections to Redis are encrypted and checked.
#[derive(Clone)]
pub(super) struct RedisTls {
    /// `redis_tls_ca`'s certificates as PEM: the only roots trusted when set.
    ca_pem: Option<Vec<u8>>,
    connector: TlsConnector,
}

impl RedisTls {
    /// Trusts the CA certificates in the PEM file `ca`, or the system's roots.
    ///
    /// # Errors
    ///
    /// A reason naming the file (unreadable, no certificate in it), or that the system has
    /// no roots to trust.
    pub fn new(ca: Option<&Path>) -> Result<RedisTls, String> {
        let mut roots = RootCertStore::empty();
        let ca_pem = match ca {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
                    roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("{}: no certificate in it", path.display()));
                }
                Some(pem)
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(
                        "the system has no CA certificates to trust for rediss://: set redis_tls_ca".into()
                    );
                }
                None
            }
        };
        // ring, as for the listeners: no C toolchain beyond cc.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(RedisTls { ca_pem, connector: TlsConnector::from(Arc::new(config)) })
    }

    /// A `redis` crate client for `info` (whose address is `TcpTls`), trusting what this does.
    pub fn client(&self, info: ConnectionInfo) -> redis::RedisResult<redis::Client> {
        match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
            ),
            None => redis::Client::open(info),
        }
    }

    /// Encrypts `stream` to `host`, checking its certificate names `host`.
    pub async fn wrap(&self, host: &str, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("`{host}`: {e}")))?;
        self.connector.connect(name, stream).await
    }
}
