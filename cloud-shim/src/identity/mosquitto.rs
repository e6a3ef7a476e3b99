//! The documented production broker set-up: Mosquitto with mutual TLS. `mosquitto-config` creates the
//! shim's MQTT CA (kept in `{data_dir}/mqtt-ca/`, so `gateways add` can issue client certificates with
//! CN = gateway id) and writes, into an output directory: the CA certificate, a server certificate and
//! key, the shim's client certificate and key (CN `scs-shim`), an ACL file of `pattern` rules keyed on
//! `%u` (the certificate CN, through `use_identity_as_username`), and a `mosquitto.conf` snippet.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use super::keys::{private_dir, write_private, SHIM_MQTT_USER};
use super::IdentityError;

pub const CA_DIR: &str = "mqtt-ca";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// A client or server certificate and its private key, PEM.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The shim's MQTT CA, if `mosquitto-config` created one.
pub struct MqttCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io { path: path.to_owned(), source }
}

impl MqttCa {
    /// Loads `{data_dir}/mqtt-ca/`; `Ok(None)` when there is none (embedded-broker set-up).
    pub fn load(data_dir: &Path) -> Result<Option<MqttCa>, IdentityError> {
        let dir = data_dir.join(CA_DIR);
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !cert_path.exists() {
            return Ok(None);
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(IdentityError::Cert)?;
        // Certificates chain to the stored CA certificate through its subject and key (the issuer name
        // and authority key id), both rebuilt here exactly as `load_or_create` made them.
        Ok(Some(MqttCa { cert_pem, issuer: Issuer::new(ca_params()?, key) }))
    }

    /// Loads the CA or creates it (CA key 0600 in a 0700 directory).
    pub fn load_or_create(data_dir: &Path) -> Result<MqttCa, IdentityError> {
        if let Some(ca) = MqttCa::load(data_dir)? {
            return Ok(ca);
        }
        let dir = data_dir.join(CA_DIR);
        private_dir(&dir)?;
        let key = KeyPair::generate().map_err(IdentityError::Cert)?;
        let params = ca_params()?;
        let cert = params.self_signed(&key).map_err(IdentityError::Cert)?;
        write_private(&dir.join(CA_KEY), key.serialize_pem().as_bytes())?;
        write_private(&dir.join(CA_CERT), cert.pem().as_bytes())?;
        Ok(MqttCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) })
    }

    /// A client certificate with CN = `name` (a gateway id, or `scs-shim`).
    pub fn issue_client(&self, name: &str) -> Result<IssuedCert, IdentityError> {
        let key = KeyPair::generate().map_err(IdentityError::Cert)?;
        let cert = client_params(name)?.signed_by(&key, &self.issuer).map_err(IdentityError::Cert)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// A client certificate (CN = `name`) over a gateway's own Ed25519 public key: an enrolled gateway
    /// authenticates to Mosquitto with the key it generated, which never leaves it.
    pub fn issue_client_for_key(&self, name: &str, public_key: &[u8; 32]) -> Result<String, IdentityError> {
        let cert = client_params(name)?.signed_by(&Ed25519Public(*public_key), &self.issuer).map_err(IdentityError::Cert)?;
        Ok(cert.pem())
    }

    /// A server certificate for the broker's DNS names / IP addresses.
    pub fn issue_server(&self, names: &[String]) -> Result<IssuedCert, IdentityError> {
        let key = KeyPair::generate().map_err(IdentityError::Cert)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(IdentityError::Cert)?;
        params.distinguished_name.push(DnType::CommonName, names.first().map(String::as_str).unwrap_or("scs-mqtt"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(IdentityError::Cert)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn client_params(name: &str) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(IdentityError::Cert)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// A raw Ed25519 public key as rcgen's certificate subject key.
struct Ed25519Public([u8; 32]);

impl rcgen::PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

fn ca_params() -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(IdentityError::Cert)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, "SCS MQTT CA");
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// The ACL: the shim reads every uplink and status and writes every downlink; a gateway (username =
/// its certificate CN) writes only its own uplink and status and reads only its own downlink.
pub fn acl_text() -> String {
    format!(
        "# SCS gateway ACL, generated by scs-cloud-shim mosquitto-config. %u is the client certificate CN.\n\
         user {SHIM_MQTT_USER}\n\
         topic read scs/v1/+/up/#\n\
         topic read $share/+/scs/v1/+/up/#\n\
         topic read scs/v1/+/status\n\
         topic write scs/v1/+/down/#\n\
         \n\
         pattern write scs/v1/%u/up/#\n\
         pattern write scs/v1/%u/status\n\
         pattern read scs/v1/%u/down/#\n"
    )
}

/// The listener section for mosquitto.conf, naming the files in `out`.
pub fn conf_text(out: &Path, port: u16, bind: &str) -> String {
    let p = |f: &str| out.join(f).display().to_string();
    format!(
        "# SCS gateway broker, generated by scs-cloud-shim mosquitto-config. Include from mosquitto.conf.\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         acl_file {acl}\n\
         listener {port} {bind}\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         tls_version tlsv1.2\n",
        acl = p("acl"),
        ca = p("ca.pem"),
        cert = p("server.pem"),
        key = p("server.key"),
    )
}

/// Files `mosquitto-config` writes into `out`.
pub struct Written {
    pub conf: PathBuf,
}

/// Creates (or reuses) the CA and writes every file of the Mosquitto set-up into `out`.
pub fn write_config(data_dir: &Path, out: &Path, names: &[String], port: u16, bind: &str) -> Result<Written, IdentityError> {
    let ca = MqttCa::load_or_create(data_dir)?;
    private_dir(out)?;
    let server = ca.issue_server(names)?;
    let shim = ca.issue_client(SHIM_MQTT_USER)?;
    let public = |name: &str, text: &str| -> Result<(), IdentityError> {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(io(&path))
    };
    public("ca.pem", &ca.cert_pem)?;
    public("server.pem", &server.cert_pem)?;
    write_private(&out.join("server.key"), server.key_pem.as_bytes())?;
    public("shim.pem", &shim.cert_pem)?;
    write_private(&out.join("shim.key"), shim.key_pem.as_bytes())?;
    public("acl", &acl_text())?;
    let conf = out.join("mosquitto.conf");
    public("mosquitto.conf", &conf_text(out, port, bind))?;
    Ok(Written { conf })
}
