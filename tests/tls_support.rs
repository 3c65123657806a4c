//! TLS helpers for the `wss://` tests: a certificate authority made by the test (rcgen),
//! server certificates it signs through an intermediate (so the files are real chains), and
//! tokio-tungstenite clients that trust only that CA. Included with
//! `#[path = "tls_support.rs"] mod tls_support;` beside `support.rs`; built alone it holds
//! no tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_tungstenite::{tungstenite, Connector, MaybeTlsStream};

/// A root CA and an intermediate it signed; server certificates are signed by the
/// intermediate.
pub struct TestCa {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate: the chain (leaf, then intermediate) and the key, as PEM.
pub struct ServerCert {
    pub chain_pem: String,
    pub key_pem: String,
    /// The leaf certificate, to compare with what a client was shown.
    pub leaf: CertificateDer<'static>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA. Its names are unique in the process: issuers are found by name, and two CAs
    /// of one name would stand in for each other's intermediates.
    pub fn new() -> TestCa {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let root = CertifiedIssuer::self_signed(
            ca_params(&format!("wspush test root CA {n}")),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(&format!("wspush test intermediate CA {n}")),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        TestCa { root, intermediate }
    }

    /// A certificate for `localhost` and 127.0.0.1 named `common_name`.
    pub fn server_cert(&self, common_name: &str) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        let leaf = params.signed_by(&key, &self.intermediate).unwrap();
        ServerCert {
            chain_pem: format!("{}{}", leaf.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
            leaf: leaf.der().clone(),
        }
    }

    /// A client certificate (TLS client authentication) named `common_name`, signed through
    /// the intermediate.
    pub fn client_cert(&self, common_name: &str) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = params.signed_by(&key, &self.intermediate).unwrap();
        ServerCert {
            chain_pem: format!("{}{}", leaf.pem(), self.intermediate.pem()),
            key_pem: key.serialize_pem(),
            leaf: leaf.der().clone(),
        }
    }

    /// [`TestCa::client_config`], presenting `client` (its chain and key) when asked.
    pub fn client_config_with(&self, client: Option<&ServerCert>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.der().clone()).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match client {
            None => builder.with_no_client_auth(),
            Some(client) => {
                let chain = CertificateDer::pem_slice_iter(client.chain_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        })
    }

    /// The root certificate as PEM (what a browser or the JDK would be told to trust).
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// A rustls client configuration trusting only this CA's root.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.der().clone()).unwrap();
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

impl ServerCert {
    /// The base64 SHA-256 of the leaf's public key (its SubjectPublicKeyInfo): how
    /// Chromium's `--ignore-certificate-errors-spki-list` names the one certificate it is to
    /// accept from an authority it does not know.
    pub fn spki_sha256_base64(&self) -> String {
        use base64::Engine as _;
        use rcgen::PublicKeyData as _;
        use sha2::Digest as _;
        let key = KeyPair::from_pem(&self.key_pem).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.subject_public_key_info()))
    }

    /// Writes the chain and the key to `DIR/NAME.crt` and `DIR/NAME.key` (through a rename,
    /// as a certificate manager would), returning both paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_atomically(&cert, self.chain_pem.as_bytes());
        write_atomically(&key, self.key_pem.as_bytes());
        (cert, key)
    }
}

/// Replaces `path` with `contents` through a temporary file and a rename.
pub fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A fresh directory under the target directory for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = wspush_tests::target_dir().join("tls-tests").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tokio-tungstenite client's `wss://` upgrade, trusting `config`'s roots; panics unless it
/// ends in time.
async fn handshake_wss(
    url: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>, tungstenite::Error> {
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(Connector::Rustls(config)));
    match tokio::time::timeout(wspush_tests::TIMEOUT, connecting).await {
        Ok(result) => result.map(|(ws, response)| {
            assert_eq!(response.status().as_u16(), 101);
            ws
        }),
        Err(_) => panic!("connecting to {url} timed out"),
    }
}

/// Connects a tokio-tungstenite client over `wss://` trusting `config`'s roots; panics
/// unless it upgrades in time.
pub async fn connect_wss(
    url: &str,
    config: Arc<rustls::ClientConfig>,
) -> tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>> {
    handshake_wss(url, config).await.unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// Connects over `wss://` trusting `config`'s roots, expecting the connection to fail (in the
/// TLS handshake: the caller checks the error it returns).
pub async fn refused_wss(url: &str, config: Arc<rustls::ClientConfig>) -> String {
    match handshake_wss(url, config).await {
        Ok(_) => panic!("{url} accepted a client that should not trust its certificate"),
        Err(e) => e.to_string(),
    }
}

/// The certificate the server showed a `wss://` client.
pub fn peer_leaf<S>(ws: &tokio_tungstenite::WebSocketStream<MaybeTlsStream<S>>) -> CertificateDer<'static>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match ws.get_ref() {
        MaybeTlsStream::Rustls(tls) => {
            tls.get_ref().1.peer_certificates().expect("no certificate")[0].clone()
        }
        _ => panic!("not a TLS connection"),
    }
}
