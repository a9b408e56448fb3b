//! TLS in the process: rustls on the aws-lc-rs provider, serving the certificate and key of two
//! PEM files, and picking up new ones without a restart.
//!
//! [`Tls::load`] reads the files once, so that a bad pair stops the start. While the server
//! runs, a task looks at the files' modification times and sizes every [`CHECK_INTERVAL`]; when
//! they changed, the files are read again and the next handshake gets the new certificate. A
//! pair that does not load (a file half written, a key that does not match the certificate)
//! leaves the current certificate in place and is logged as an error, once per change. Renewing
//! is writing the two files, in either order, or swapping a symlink to them.
//!
//! Keys are read as unencrypted PEM (PKCS#8, PKCS#1 RSA or SEC1 EC): rustls decrypts nothing,
//! and a key the server could decrypt would need its password beside it on disk anyway. An
//! encrypted key is refused with a message that says how to decrypt it.
//!
//! The connection side is in `conn`: the handshake runs within the header-read timeout, and a
//! client that speaks plain HTTP to the TLS port gets a plain-text 400 ([`answer_plain_http`]).
//! ALPN offers HTTP/2 and HTTP/1.1.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::error::StartupError;

/// The longest time between two looks at the certificate files.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Where the certificate and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates: the server's first, then the intermediates recipients need.
    pub certificate: PathBuf,
    /// The certificate's private key, unencrypted PEM.
    pub key: PathBuf,
}

/// TLS for the server's listener. Clones share one certificate, reloaded as the files change.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    acceptor: TlsAcceptor,
    certificate: Arc<ReloadingCertificate>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate and key; fails, saying what is wrong with which file, when they do
    /// not make a usable pair.
    pub fn load(files: TlsFiles) -> Result<Tls, StartupError> {
        let failed = |source: Box<dyn std::error::Error + Send + Sync>| StartupError::Start {
            what: format!(
                "cannot use the TLS certificate {} with the key {}",
                files.certificate.display(),
                files.key.display()
            ),
            source,
        };
        // Chosen here rather than installed as the process default: ring is compiled in too
        // (object_store, sqlx), and rustls refuses to guess between two providers.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certificate =
            Arc::new(ReloadingCertificate::load(files.clone(), provider.clone()).map_err(|e| failed(Box::new(e)))?);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| failed(Box::new(e)))?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls { files, acceptor: TlsAcceptor::from(Arc::new(config)), certificate })
    }

    /// The files the certificate is read from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Starts looking at the files every [`CHECK_INTERVAL`], until the returned guard is dropped.
    pub(crate) fn watch_files(&self) -> Watching {
        let certificate = Arc::downgrade(&self.certificate);
        Watching(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(CHECK_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(certificate) = certificate.upgrade() else { return };
                // Two `stat`s, and small reads after a change: not worth a blocking thread.
                certificate.refresh();
            }
        }))
    }
}

/// The task that looks at the certificate files; it stops when this is dropped.
pub(crate) struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a connection's first byte starts plain HTTP rather than a TLS record (a TLS
/// handshake record starts with 22; HTTP with a method's capital letter).
pub(crate) fn starts_plain_http(first_byte: u8) -> bool {
    first_byte.is_ascii_uppercase()
}

/// Answers a plain-HTTP client on the TLS port with a 400 that says to use `https://`, then
/// reads (and drops) what it sent for a moment, so that closing does not reset the connection
/// before the client has read the answer.
pub(crate) async fn answer_plain_http<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    const BODY: &str = "This port speaks HTTPS: use an https:// URL.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    let drain = async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    Ok(())
}

/// Why a certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
enum CertificateError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not valid PEM: {message}", path.display())]
    Pem { path: PathBuf, message: String },
    #[error(
        "{} holds an encrypted private key, which d2o cannot read; decrypt it (`openssl pkey -in ENCRYPTED -out KEY`) and keep the result readable by the server's user only",
        path.display()
    )]
    EncryptedKey { path: PathBuf },
    #[error("{} holds no private key (PEM: PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)", path.display())]
    NoKey { path: PathBuf },
    #[error("the key in {} does not fit the certificate in {}: {source}", key.display(), certificate.display())]
    Unusable { certificate: PathBuf, key: PathBuf, source: rustls::Error },
}

/// Reads the certificate chain and key and checks that they belong together.
fn read_certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, CertificateError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| CertificateError::Read { path: path.into(), source });
    let pem_error = |path: &Path, e: pem::Error| CertificateError::Pem { path: path.into(), message: e.to_string() };

    let text = read(&files.certificate)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&files.certificate, e))?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate { path: files.certificate.clone() });
    }

    let text = read(&files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&text) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) if is_encrypted_key(&text) => {
            return Err(CertificateError::EncryptedKey { path: files.key.clone() });
        }
        Err(pem::Error::NoItemsFound) => return Err(CertificateError::NoKey { path: files.key.clone() }),
        Err(e) => return Err(pem_error(&files.key, e)),
    };
    let unusable =
        |source| CertificateError::Unusable { certificate: files.certificate.clone(), key: files.key.clone(), source };
    CertifiedKey::from_der(chain, key, provider).map_err(unusable)
}

/// Encrypted PKCS#8, or a traditional OpenSSL key with a `Proc-Type: 4,ENCRYPTED` header.
fn is_encrypted_key(pem: &[u8]) -> bool {
    let contains = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    contains(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || contains(b"Proc-Type: 4,ENCRYPTED")
}

/// What the two files looked like when last read: modification time and size of each.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp([Option<(SystemTime, u64)>; 2]);

impl Stamp {
    fn of(files: &TlsFiles) -> Stamp {
        let look = |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        Stamp([look(&files.certificate), look(&files.key)])
    }
}

/// The certificate for every handshake, re-read when its files change.
#[derive(Debug)]
struct ReloadingCertificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// How the files looked when last read.
    stamp: Mutex<Stamp>,
}

impl ReloadingCertificate {
    fn load(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<ReloadingCertificate, CertificateError> {
        // The stamp is taken first: a change while reading is seen at the next look.
        let stamp = Stamp::of(&files);
        let key = read_certified_key(&files, &provider)?;
        Ok(ReloadingCertificate { files, provider, current: RwLock::new(Arc::new(key)), stamp: Mutex::new(stamp) })
    }

    /// Re-reads the files if they changed since the last look.
    fn refresh(&self) {
        let mut last = self.stamp.lock();
        let stamp = Stamp::of(&self.files);
        if stamp == *last {
            return;
        }
        *last = stamp;
        match read_certified_key(&self.files, &self.provider) {
            Ok(key) => {
                *self.current.write() = Arc::new(key);
                tracing::info!(certificate = %self.files.certificate.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(
                error = %e,
                "the changed TLS certificate or key cannot be used; still serving the previous certificate"
            ),
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        // Read when the tests run, so that a binary built in another checkout reads this one's.
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        dir.join("../../tests/data/tls").join(name)
    }

    fn fixture_files(certificate: &str, key: &str) -> TlsFiles {
        TlsFiles { certificate: fixture(certificate), key: fixture(key) }
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    fn load_error(files: TlsFiles) -> String {
        let err = Tls::load(files).expect_err("refused");
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text += &format!(": {s}");
            source = s.source();
        }
        text
    }

    #[test]
    fn loads_pkcs8_and_sec1_keys() {
        Tls::load(fixture_files("server-a.pem", "server-a.key")).expect("PKCS#8");
        Tls::load(fixture_files("server-b.pem", "server-b.key")).expect("SEC1");
    }

    #[test]
    fn bad_pairs_are_refused_with_what_to_fix() {
        for (files, expected) in [
            (fixture_files("server-a.pem", "server-b.key"), "does not fit the certificate"),
            (fixture_files("server-a.pem", "server-a-encrypted.key"), "encrypted private key"),
            (fixture_files("server-a.key", "server-a.key"), "holds no PEM certificate"),
            (fixture_files("server-a.pem", "server-a.pem"), "holds no private key"),
            (fixture_files("missing.pem", "server-a.key"), "cannot read"),
            (fixture_files("README.md", "server-a.key"), "holds no PEM certificate"),
        ] {
            let message = load_error(files.clone());
            assert!(message.contains("cannot use the TLS certificate"), "{message}");
            assert!(message.contains(expected), "{files:?}: {message}");
        }
    }

    #[test]
    fn a_changed_pair_is_served_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = TlsFiles { certificate: dir.path().join("cert.pem"), key: dir.path().join("key.pem") };
        let install = |cert: &str, key: &str| {
            std::fs::copy(fixture(cert), &files.certificate).expect("copy");
            std::fs::copy(fixture(key), &files.key).expect("copy");
        };
        install("server-a.pem", "server-a.key");
        let resolver = ReloadingCertificate::load(files.clone(), provider()).expect("loads");
        let served = |r: &ReloadingCertificate| {
            r.refresh();
            r.current.read().cert[0].clone()
        };
        let a = served(&resolver);
        assert_eq!(a.as_ref(), CertificateDer::from_pem_file(fixture("server-a.pem")).expect("pem").as_ref());

        // Half a renewal (the certificate is new, the key still old) keeps A.
        std::fs::copy(fixture("server-b.pem"), &files.certificate).expect("copy");
        assert_eq!(served(&resolver), a);
        // The other half completes it.
        std::fs::copy(fixture("server-b.key"), &files.key).expect("copy");
        let b = served(&resolver);
        assert_eq!(b.as_ref(), CertificateDer::from_pem_file(fixture("server-b.pem")).expect("pem").as_ref());

        // Garbage, or a missing file, keeps B.
        std::fs::write(&files.certificate, "not a certificate").expect("write");
        assert_eq!(served(&resolver), b);
        std::fs::remove_file(&files.key).expect("remove");
        assert_eq!(served(&resolver), b);
        install("server-a.pem", "server-a.key");
        assert_eq!(served(&resolver), a);
    }

    #[test]
    fn plain_http_is_told_apart_from_a_client_hello() {
        assert!(starts_plain_http(b'G') && starts_plain_http(b'P') && starts_plain_http(b'H'));
        assert!(!starts_plain_http(0x16));
        assert!(!starts_plain_http(0x80), "an SSLv2-style hello goes to rustls, which refuses it");
    }
}
