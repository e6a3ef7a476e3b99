//! Trust anchors for every TLS client in the agent (MQTT over TLS, HTTPS uploads): the configured CA
//! file, else the system's CA store. No compiled-in root store, which keeps the binary small; rustls
//! with the ring provider is the only TLS stack.

use std::path::{Path, PathBuf};

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
