//! Trust anchors for every TLS client in the agent (MQTT over TLS, HTTPS uploads): the configured CA
//! file, else the system's CA store. No compiled-in root store, which keeps the binary small; rustls
//! with the ring provider is the only TLS stack.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA file {path}: {source}")]
    Pem { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("CA file {path}: no certificate found")]
    Empty { path: PathBuf },
    #[error("CA file {path}: certificate refused: {source}")]
    Refused { path: PathBuf, source: rustls::Error },
    #[error("no system CA certificates found; configure a CA file")]
    NoSystemRoots,
    #[error("provisioned CA certificate: {0}")]
    PemText(String),
    #[error("provisioned CA certificate refused: {0}")]
    PemRefused(#[source] rustls::Error),
}

/// Every certificate of the PEM file `ca_file`, or, without one, the system's CA certificates
/// (`SSL_CERT_FILE`/`SSL_CERT_DIR`, else the distribution's bundle).
pub fn ca_certs(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, CaError> {
    match ca_file {
        Some(path) => {
            let pem = |source| CaError::Pem { path: path.to_owned(), source };
            let certs = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
            if certs.is_empty() {
                return Err(CaError::Empty { path: path.to_owned() });
            }
            Ok(certs)
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                log::debug!("system CA store: {e}");
            }
            if found.certs.is_empty() {
                return Err(CaError::NoSystemRoots);
            }
            Ok(found.certs)
        }
    }
}

/// [`ca_certs`] as a rustls root store. A certificate from the CA file that rustls refuses is an
/// error (the operator named it); unusable system certificates are skipped.
pub fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, CaError> {
    let certs = ca_certs(ca_file)?;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for c in certs {
                roots.add(c).map_err(|source| CaError::Refused { path: path.to_owned(), source })?;
            }
        }
        None => {
            roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(CaError::NoSystemRoots);
            }
        }
    }
    Ok(roots)
}

/// A root store from PEM text (a provisioning bundle's `broker_ca_pem`).
pub fn root_store_from_pem(pem: &str) -> Result<rustls::RootCertStore, CaError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(pem).map_err(CaError::PemText)? {
        roots.add(c).map_err(CaError::PemRefused)?;
    }
    Ok(roots)
}

/// Every certificate in a PEM text; an error if there is none or one does not parse.
pub fn pem_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certs)
}

/// The private key in a PEM text (PKCS#8, SEC1 or PKCS#1). The error never quotes the text.
pub fn pem_key(pem: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())
}

/// Unix seconds before which this agent cannot be running: its build time (`SOURCE_DATE_EPOCH`, which
/// Yocto, Buildroot and `scripts/build-release` set) or, without it, a fixed date shortly before this
/// code was written.
const BUILT_IN_FLOOR_SECS: u64 = 1_764_547_200; // 2025-12-01T00:00:00Z

pub fn clock_floor_secs() -> u64 {
    let built = option_env!("SOURCE_DATE_EPOCH").and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(0);
    built.max(BUILT_IN_FLOOR_SECS)
}

/// The time TLS certificate validity is checked at: the system clock, but never earlier than
/// [`clock_floor_secs`]. Gateways often boot at 1970 (no RTC battery, NTP not yet reachable) and every
/// certificate would look "not yet valid"; the floor keeps the check meaningful (a certificate that
/// expired before this binary was built is still refused) without waiting for a clock that may only be
/// set once the gateway is online, which needs TLS first.
#[derive(Debug)]
pub struct FlooredClock;

impl rustls::time_provider::TimeProvider for FlooredClock {
    fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Some(floored(now))
    }
}

/// `now_secs`, or the floor when the clock is behind it.
fn floored(now_secs: u64) -> rustls::pki_types::UnixTime {
    rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now_secs.max(clock_floor_secs())))
}

/// The start of every TLS client configuration in the agent: ring, the default protocol versions and
/// the [`FlooredClock`].
pub fn client_config_builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, rustls::Error> {
    rustls::ClientConfig::builder_with_details(Arc::new(rustls::crypto::ring::default_provider()), Arc::new(FlooredClock))
        .with_safe_default_protocol_versions()
}

/// A blocking HTTPS client (ureq) whose TLS is [`client_config_builder`] with `roots`: the one place
/// that builds one, so uploads, downloads and enrollment all survive a clock at 1970.
pub fn https_agent(config: ureq::config::Config, roots: rustls::RootCertStore) -> Result<ureq::Agent, rustls::Error> {
    use ureq::unversioned::transport::{Connector as _, TcpConnector};
    let tls = client_config_builder()?.with_root_certificates(roots).with_no_client_auth();
    let connector = ().chain(TcpConnector::default()).chain(HttpsConnector { config: Arc::new(tls) });
    Ok(ureq::Agent::with_parts(config, connector, ureq::unversioned::resolver::DefaultResolver::default()))
}

/// ureq connector that wraps the TCP transport in rustls with our own client configuration (ureq's
/// built-in one cannot take a time provider).
#[derive(Debug)]
struct HttpsConnector {
    config: Arc<rustls::ClientConfig>,
}

impl<In: ureq::unversioned::transport::Transport> ureq::unversioned::transport::Connector<In> for HttpsConnector {
    type Out = ureq::unversioned::transport::Either<In, HttpsTransport>;

    fn connect(
        &self,
        details: &ureq::unversioned::transport::ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        use ureq::unversioned::transport::{Either, LazyBuffers, TransportAdapter};
        let Some(transport) = chained else { return Ok(None) };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|_| ureq::Error::Tls("invalid TLS server name"))?;
        let mut conn = rustls::ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(Either::B(HttpsTransport { buffers, stream: rustls::StreamOwned { conn, sock } })))
    }
}

struct HttpsTransport {
    buffers: ureq::unversioned::transport::LazyBuffers,
    stream: rustls::StreamOwned<rustls::ClientConnection, ureq::unversioned::transport::TransportAdapter>,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTransport").finish_non_exhaustive()
    }
}

impl ureq::unversioned::transport::Transport for HttpsTransport {
    fn buffers(&mut self) -> &mut dyn ureq::unversioned::transport::Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: ureq::unversioned::transport::NextTimeout) -> Result<(), ureq::Error> {
        use std::io::Write as _;
        use ureq::unversioned::transport::Buffers as _;
        self.stream.get_mut().set_timeout(timeout);
        let output = self.buffers.output().get(..amount).ok_or(ureq::Error::Tls("output beyond the buffer"))?;
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: ureq::unversioned::transport::NextTimeout) -> Result<bool, ureq::Error> {
        use std::io::Read as _;
        use ureq::unversioned::transport::Buffers as _;
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_are_typed() {
        let dir = std::env::temp_dir().join(format!("scs-ca-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(ca_certs(Some(&empty)), Err(CaError::Empty { .. })));
        assert!(matches!(root_store(Some(&empty)), Err(CaError::Empty { .. })));
        let missing = dir.join("missing.pem");
        assert!(matches!(ca_certs(Some(&missing)), Err(CaError::Pem { .. })));
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        assert!(matches!(ca_certs(Some(&garbage)), Err(CaError::Pem { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A clock stuck at a fixed time, to play a gateway that booted at 1970.
    #[derive(Debug)]
    struct Fixed(rustls::pki_types::UnixTime);

    impl rustls::time_provider::TimeProvider for Fixed {
        fn current_time(&self) -> Option<rustls::pki_types::UnixTime> {
            Some(self.0)
        }
    }

    /// Drives an in-memory TLS handshake to its end or its first error.
    fn handshake(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) -> Result<(), rustls::Error> {
        for _ in 0..20 {
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets()?;
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        Err(rustls::Error::General("handshake made no progress".into()))
    }

    #[test]
    fn a_clock_at_1970_still_verifies_a_current_certificate_and_expiry_still_counts() {
        // CA and server certificate valid from 2025-01-01 (before the floor) until 2040.
        let dated = |names: Vec<String>| {
            let mut p = rcgen::CertificateParams::new(names).unwrap();
            p.not_before = rcgen::date_time_ymd(2025, 1, 1);
            p.not_after = rcgen::date_time_ymd(2040, 1, 1);
            p
        };
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = dated(Vec::new());
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = dated(vec!["gw.example".into()]).signed_by(&leaf_key, &issuer).unwrap();
        let server_cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![leaf.der().clone()], pem_key(&leaf_key.serialize_pem()).unwrap())
                .unwrap(),
        );
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let connect = |clock: Fixed| {
            let cfg =
                rustls::ClientConfig::builder_with_details(Arc::new(rustls::crypto::ring::default_provider()), Arc::new(clock))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots.clone())
                    .with_no_client_auth();
            let mut client = rustls::ClientConnection::new(Arc::new(cfg), "gw.example".try_into().unwrap()).unwrap();
            let mut server = rustls::ServerConnection::new(server_cfg.clone()).unwrap();
            handshake(&mut client, &mut server)
        };
        // The raw 1970 clock: "not valid yet". The floored one: accepted.
        let at_1970 = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::ZERO);
        let raw = connect(Fixed(at_1970)).unwrap_err();
        assert!(format!("{raw:?}").contains("NotValidYet"), "{raw:?}");
        connect(Fixed(floored(0))).unwrap();
        // A clock past the certificate's end still refuses it: the floor only lifts a clock that is behind.
        let in_2041 = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(2_240_524_800));
        let late = connect(Fixed(in_2041)).unwrap_err();
        assert!(format!("{late:?}").contains("Expired"), "{late:?}");
        assert_eq!(floored(2_240_524_800), in_2041);
        // The production provider never answers earlier than the floor.
        use rustls::time_provider::TimeProvider as _;
        assert!(FlooredClock.current_time().unwrap().as_secs() >= clock_floor_secs());
    }

    #[test]
    fn a_generated_ca_loads_into_a_root_store() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["test-ca".into()]).unwrap().self_signed(&key).unwrap();
        let dir = std::env::temp_dir().join(format!("scs-ca-ok-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        assert_eq!(ca_certs(Some(&path)).unwrap().len(), 1);
        assert_eq!(root_store(Some(&path)).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
