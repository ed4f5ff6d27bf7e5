//! HTTPS: the TLS configuration of the `https:` listener and the handshake of its
//! connections.
//!
//! Crates: `rustls` (a TLS stack in Rust, the one tokio's ecosystem uses) with its
//! `ring` crypto provider, which builds with a C compiler alone (`aws-lc-rs`, the other
//! provider, needs cmake and more); `tokio-rustls` for the handshake and the request
//! head, as an `AsyncRead + AsyncWrite`; `rustls-pki-types` (a dependency of rustls
//! already) to parse the PEM certificate chain and key.
//!
//! The handshake runs in the connection's own task, never on the accept loop, and
//! shares the request head's deadline ([`Config::head_timeout`](super::Config) from
//! the moment the connection was accepted): a client that stalls in the handshake, or
//! sends something that is not a ClientHello, is closed by then at the latest and costs
//! nothing else. TLS connections are upgraded exactly as plain ones, so they count
//! toward the same connection limits, and once upgraded their session runs on
//! [`TlsSession`](super::transport::TlsSession).
//!
//! Cipher suites (`cipher_suite:`), as Plug.SSL defines them, mapped to what rustls
//! offers (rustls has no DHE suites, no CBC suites and no TLS 1.0/1.1, and `ring` has
//! no P-521); in every case the server's order of suites is used, as Plug's
//! `honor_cipher_order: true`:
//! - [`CipherSuite::Strong`]: TLS 1.3 only; TLS13_AES_256_GCM_SHA384,
//!   TLS13_CHACHA20_POLY1305_SHA256, TLS13_AES_128_GCM_SHA256; key exchange X25519,
//!   P-256, P-384 (Plug adds P-521).
//! - [`CipherSuite::Compatible`]: TLS 1.3 and 1.2; the three above, then
//!   ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384,
//!   ECDHE-ECDSA-CHACHA20-POLY1305, ECDHE-RSA-CHACHA20-POLY1305,
//!   ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-RSA-AES128-GCM-SHA256 (Plug's list less its
//!   two DHE-RSA suites); the same groups.
//! - [`CipherSuite::Default`] (none given): rustls's defaults, TLS 1.3 and 1.2 with
//!   the same nine suites.
//!
//! Tested in `tests/tls.rs` with a certificate the test makes (`rcgen`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite as suites, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::{ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{http, Shared};

/// Plug.SSL's `cipher_suite:` presets (see the module docs for what each maps to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CipherSuite {
    /// rustls's defaults: TLS 1.3 and 1.2.
    #[default]
    Default,
    /// `:strong`: TLS 1.3 only.
    Strong,
    /// `:compatible`: TLS 1.3 and 1.2, ECDHE with AEAD ciphers.
    Compatible,
}

impl CipherSuite {
    /// The suite named `name` (`"strong"`, `"compatible"`), or `None`.
    pub fn from_name(name: &str) -> Option<CipherSuite> {
        match name {
            "strong" => Some(CipherSuite::Strong),
            "compatible" => Some(CipherSuite::Compatible),
            _ => None,
        }
    }

    fn suites(self) -> Vec<SupportedCipherSuite> {
        let tls13 = [suites::TLS13_AES_256_GCM_SHA384, suites::TLS13_CHACHA20_POLY1305_SHA256, suites::TLS13_AES_128_GCM_SHA256];
        let tls12 = [
            suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suites::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            suites::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suites::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ];
        match self {
            CipherSuite::Default => default_provider().cipher_suites,
            CipherSuite::Strong => tls13.to_vec(),
            CipherSuite::Compatible => tls13.into_iter().chain(tls12).collect(),
        }
    }

    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self {
            CipherSuite::Strong => TLS13_ONLY,
            CipherSuite::Default | CipherSuite::Compatible => rustls::ALL_VERSIONS,
        }
    }
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Why the TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or holds no PEM item of its kind.
    #[error("cannot read the {what} {path}: {reason}")]
    File {
        /// `"certfile"` or `"keyfile"`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (a key that does not match, an unsupported key type).
    #[error("invalid certificate or key: {0}")]
    Invalid(#[from] rustls::Error),
}

/// The HTTPS listener's options.
#[derive(Debug, Clone)]
pub struct HttpsConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// The TLS configuration ([`HttpsConfig::server_config`]).
    pub tls: Arc<ServerConfig>,
}

impl HttpsConfig {
    /// The TLS configuration of a server with the PEM certificate chain of `certfile`
    /// (the server's certificate first) and the PEM private key of `keyfile` (PKCS#8,
    /// PKCS#1 or SEC1), offering `cipher_suite`. Serves HTTP/1.1 (ALPN `http/1.1`).
    pub fn server_config(certfile: &Path, keyfile: &Path, cipher_suite: CipherSuite) -> Result<Arc<ServerConfig>, TlsError> {
        let file_error = |what, path: &Path, reason: String| TlsError::File { what, path: path.to_owned(), reason };
        let chain = CertificateDer::pem_file_iter(certfile)
            .and_then(|items| items.collect::<Result<Vec<_>, _>>())
            .map_err(|e| file_error("certfile", certfile, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_error("certfile", certfile, "no CERTIFICATE in it".to_owned()));
        }
        let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| file_error("keyfile", keyfile, e.to_string()))?;
        let provider = CryptoProvider { cipher_suites: cipher_suite.suites(), ..default_provider() };
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(cipher_suite.versions())?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.ignore_client_order = true;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Serves one connection of the HTTPS listener: the handshake, then the request as
/// on plain HTTP, all of it by `deadline` (the head timeout from the accept).
pub(super) async fn serve(acceptor: TlsAcceptor, stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, deadline: Instant) {
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => http::serve(stream, peer, shared, deadline).await,
        // Debug, not warn: scanners and plain-HTTP clients on the HTTPS port must not flood the log.
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_elapsed) => tracing::debug!(%peer, "TLS handshake not finished within the head timeout"),
    }
}
