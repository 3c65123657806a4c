//! The listener's certificate: a PEM chain and its key, loaded from files, checked to
//! match, and served to every new connection from a slot that a reload swaps whole.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// Where the certificate chain and its key are read from (`tls_cert`, `tls_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// PEM certificates: the server's first, then the intermediates.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key: PathBuf,
}

/// Why a certificate or key file was refused; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The setting whose file is at fault: `tls_cert`, `tls_key` (or, for the server's API,
    /// which renames them, the client CA file: `client_ca`).
    pub setting: &'static str,
    /// What is wrong, starting with the file's path.
    pub reason: String,
}

impl CertificateFiles {
    /// Reads and checks both files: at least one certificate, exactly one key, and the key
    /// belongs to the first certificate.
    ///
    /// # Errors
    ///
    /// Which file is at fault and why, starting with its path.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, LoadError> {
        let cert_err = |reason: String| LoadError { setting: "tls_cert", reason };
        let key_err = |reason: String| LoadError { setting: "tls_key", reason };
        let pem = read(&self.cert).map_err(cert_err)?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| cert_err(format!("{}: not PEM certificates: {e}", self.cert.display())))?;
        if chain.is_empty() {
            return Err(cert_err(format!(
                "{}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
                self.cert.display()
            )));
        }
        let pem = read(&self.key).map_err(key_err)?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
            key_err(format!("{}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1): {e}", self.key.display()))
        })?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| key_err(format!("{}: unusable private key: {e}", self.key.display())))?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(key_err(format!(
                    "{}: the key does not belong to the first certificate of {}",
                    self.key.display(),
                    self.cert.display()
                )))
            }
            Err(e) => Err(cert_err(format!("{}: {e}", self.cert.display()))),
        }
    }
}

/// The crypto provider: ring, as for TLS to Redis (no C toolchain beyond cc). Its
/// deprecation notes that ring has no post-quantum key exchange.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The certificate every new connection gets; [`ServerTls::reload`] replaces it.
#[derive(Debug)]
struct Slot(ArcSwap<CertifiedKey>);

impl ResolvesServerCert for Slot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// A listener's TLS: the rustls configuration every connection is made from, and the
/// files it reloads from.
pub struct ServerTls {
    config: Arc<ServerConfig>,
    slot: Arc<Slot>,
    files: CertificateFiles,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads `files` and builds the configuration (TLS 1.2 and 1.3). With `client_ca`, a
    /// PEM file of CA certificates, every client must present a certificate issued by one of
    /// them (mutual TLS); without it, none is asked for.
    ///
    /// # Errors
    ///
    /// Which file is at fault and why.
    pub fn new(files: CertificateFiles, client_ca: Option<&Path>) -> Result<ServerTls, LoadError> {
        let provider = provider();
        let certified = files.load(&provider)?;
        let slot = Arc::new(Slot(ArcSwap::from_pointee(certified)));
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| LoadError { setting: "tls_cert", reason: format!("TLS: {e}") })?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let ca_err = |reason: String| LoadError { setting: "client_ca", reason };
                let pem = read(path).map_err(ca_err)?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert =
                        cert.map_err(|e| ca_err(format!("{}: not PEM certificates: {e}", path.display())))?;
                    roots.add(cert).map_err(|e| ca_err(format!("{}: {e}", path.display())))?;
                }
                if roots.is_empty() {
                    return Err(ca_err(format!("{}: no certificate in it", path.display())));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| ca_err(format!("{}: {e}", path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_cert_resolver(slot.clone());
        Ok(ServerTls { config: Arc::new(config), slot, files, provider })
    }

    /// The configuration a new connection is made from.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    /// Reads the certificate and key files again; on success new connections get the new
    /// certificate, on failure the old one stays and the reason is returned. (The client CA
    /// file is read only at start.)
    ///
    /// # Errors
    ///
    /// Which file is at fault and why.
    pub fn reload(&self) -> Result<(), LoadError> {
        let certified = self.files.load(&self.provider)?;
        self.slot.0.store(Arc::new(certified));
        Ok(())
    }

    /// The files reloaded from.
    pub fn files(&self) -> &CertificateFiles {
        &self.files
    }
}
