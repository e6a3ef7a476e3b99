//! A throwaway certificate authority and a server certificate it signed, for HTTPS and MQTT-over-TLS tests.

use std::path::{Path, PathBuf};

/// PEM files written by [`generate_tls`], plus the CA in DER for clients built in-process.
pub struct TestTls {
    /// `{dir}/ca.pem`: the CA a client must trust.
    pub ca: PathBuf,
    /// `{dir}/cert.pem`: the server certificate, signed by the CA.
    pub cert: PathBuf,
    /// `{dir}/key.pem`: the server certificate's private key.
    pub key: PathBuf,
    pub ca_der: Vec<u8>,
}

/// Generates a fresh CA and a server certificate for the DNS names / IP addresses in `names`, and writes
/// `ca.pem`, `cert.pem` and `key.pem` to `dir`.
pub fn generate_tls(dir: &Path, names: &[&str]) -> TestTls {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "scs test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let tls =
        TestTls { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem"), ca_der: ca_cert.der().to_vec() };
    std::fs::write(&tls.ca, ca_cert.pem()).expect("write ca");
    std::fs::write(&tls.cert, leaf.pem()).expect("write cert");
    std::fs::write(&tls.key, leaf_key.serialize_pem()).expect("write key");
    tls
}
