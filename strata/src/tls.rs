//! TLS on the REST port, with rustls (no OpenSSL), and certificates that reload.
//!
//! With `tls.cert_file` and `tls.key_file` (PEM) set, the node serves REST over HTTPS
//! only (HTTP/2 and HTTP/1.1 by ALPN). The files are re-read when either changes (checked
//! every [`crate::watch::WATCH_EVERY`], as cert-manager or a Kubernetes Secret update replaces them) and
//! on SIGHUP; new handshakes use the new certificate, established connections keep theirs.
//! A pair that fails to load (half-written, key and certificate not matching) keeps the
//! previous pair in force and is logged.
//!
//! Node-to-node gRPC uses the same machinery with `[rpc.tls]`: its own certificate, and a
//! client certificate required of every peer ([`Certificates::mutual_server_config`]).
//!
//! Flow: [`handshakes`] accepts TCP connections in a task of its own and runs each
//! handshake in its own task, bounded by [`HANDSHAKE_TIMEOUT`], so a slow or silent client
//! never holds up the others; finished handshakes reach `axum::serve` through a channel.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};
use strata_types::time::{Clock, ClockExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// `[tls]`: serve REST over TLS. Default: off (plain HTTP).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM, leaf first). Default: none.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1). Default: none.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on; an error when only one is set.
    pub fn files(&self) -> Result<Option<(&Path, &Path)>, String> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => Err("tls.cert_file and tls.key_file go together: set both, or neither".to_owned()),
        }
    }
}

/// The longest a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a certificate chain and its key, checking that they belong together.
fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert_file.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key_file.display()))?;
    CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| format!("{} and {} do not make a usable pair: {e}", cert_file.display(), key_file.display()))
}

/// The certificate in force, swapped on reload.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

impl Certificates {
    /// Loads the pair; an error says which file is wrong and why.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Certificates>, String> {
        let current = load(cert_file, key_file)?;
        Ok(Arc::new(Certificates {
            current: RwLock::new(Arc::new(current)),
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
        }))
    }

    /// Re-reads the files; on failure the pair in force stays.
    pub fn reload(&self, why: &str) -> Result<(), String> {
        match load(&self.cert_file, &self.key_file) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
                tracing::info!(reason = why, cert = %self.cert_file.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(reason = why, error = %e, "TLS certificate not reloaded; the previous one stays in force");
                Err(e)
            }
        }
    }

    /// Reloads when a file changes or on SIGHUP, until `shutdown`.
    pub async fn watch(self: Arc<Self>, clock: Arc<dyn Clock>, shutdown: watch::Receiver<bool>) {
        let stamps = || vec![crate::watch::stamp(&self.cert_file), crate::watch::stamp(&self.key_file)];
        let reload = |why| {
            let _ = self.reload(why);
        };
        crate::watch::reload_on_change(clock, shutdown, stamps, reload).await;
    }

    /// A rustls server configuration serving these certificates (HTTP/2 and HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A rustls server configuration for node-to-node gRPC (HTTP/2): these certificates,
    /// and a client certificate signed by a CA of `ca_file` required of every peer.
    pub fn mutual_server_config(self: &Arc<Self>, ca_file: &Path) -> Result<Arc<ServerConfig>, String> {
        let mut roots = rustls::RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(ca_file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read CA certificates from {}: {e}", ca_file.display()))?;
        for ca in cas {
            roots.add(ca).map_err(|e| format!("{}: unusable CA certificate: {e}", ca_file.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("{} holds no CA certificate", ca_file.display()));
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Connections on `tcp` that completed a handshake with `config`: each handshake runs in
/// a task of its own, bounded by [`HANDSHAKE_TIMEOUT`]. Accepting stops once the receiver
/// is dropped.
pub fn handshakes(
    tcp: TcpListener,
    config: Arc<ServerConfig>,
    clock: Arc<dyn Clock>,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, ready) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = tx.closed() => return,
                accepted = tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, do not spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        clock.sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, tx, clock) = (acceptor.clone(), tx.clone(), clock.clone());
            tokio::spawn(async move {
                match strata_types::time::timeout(clock.as_ref(), HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ready
}

/// A listener whose connections have completed a TLS handshake, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and shakes hands with `config`, until the listener is dropped.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>, clock: Arc<dyn Clock>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        Ok(TlsListener { ready: handshakes(tcp, config, clock), local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
