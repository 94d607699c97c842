//! The rustls server configuration of a listener: TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`,
//! the certificate chain and key from PEM files through a resolver that swaps them when the
//! files change (new handshakes get the new certificate; open connections keep theirs), and
//! optionally a client certificate verifier over a CA bundle (mTLS, required or optional).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::config::{ClientAuth, TlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the configuration (key does not match the certificate, bad CA, ...).
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// A listener's TLS configuration and the resolver that reloads its certificate.
pub struct TlsSetup {
    /// The rustls configuration to accept connections with.
    pub server: Arc<rustls::ServerConfig>,
    /// The certificate in use, swapped by [`CertResolver::reload_if_changed`].
    pub resolver: Arc<CertResolver>,
}

impl TlsSetup {
    /// Loads the files of `config`.
    ///
    /// # Errors
    /// [`TlsError`] when a file is unreadable or invalid, or the key does not match.
    pub fn new(config: &TlsConfig) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Arc::new(CertResolver::load(
            &config.cert_file,
            &config.key_file,
            Arc::clone(&provider),
        )?);
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &config.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca)? {
                    roots.add(cert).map_err(|e| TlsError::File {
                        path: ca.clone(),
                        detail: format!("not a usable CA certificate: {e}"),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = match config.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?,
                )
            }
        };
        let mut server =
            builder.with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            server: Arc::new(server),
            resolver,
        })
    }
}

/// Serves the current certificate; reloads it when its files change.
#[derive(Debug)]
pub struct CertResolver {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
}

impl CertResolver {
    fn load(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let loaded = load(cert_file, key_file, &provider)?;
        Ok(Self {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            provider,
            current: RwLock::new(loaded),
        })
    }

    /// Reloads the certificate when either file's modification time changed. A new pair that
    /// does not load (half-written files, a key that does not match) is logged and the current
    /// certificate stays. `true` when a new certificate is in use.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = (modified(&self.cert_file), modified(&self.key_file));
        if self.current.read().unwrap_or_else(|e| e.into_inner()).stamp == stamp {
            return false;
        }
        match load(&self.cert_file, &self.key_file, &self.provider) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate files changed but do not load; keeping the current certificate");
                false
            }
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()).key,
        ))
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let stamp = (modified(cert_file), modified(key_file));
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::File {
        path: key_file.to_path_buf(),
        detail: format!("no PEM private key: {e}"),
    })?;
    let key = CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", key_file.display())))?;
    Ok(Loaded {
        key: Arc::new(key),
        stamp,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |detail: String| TlsError::File {
        path: path.to_path_buf(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error("holds no certificate".into()));
    }
    Ok(certs)
}
