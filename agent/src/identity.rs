//! The gateway's identity: the provisioning bundle written by `scs-cloud-shim gateways add` and
//! installed by `scs-agent provision BUNDLE --data-dir ADIR` as `{data_dir}/identity.toml` (dir 0700,
//! file 0600).
//!
//! It holds the gateway id, where to connect (broker, HTTP API), the MQTT credentials, optional TLS
//! material (broker CA, client certificate and key), the gateway's Ed25519 signing key (PKCS#8) and the
//! cloud's public key. `scs-agent run` takes all of that from it; flags still override the URLs.
//!
//! Secrets (password, signing key, client key) are held in [`Secret`] or a ring key, so `Debug`, the
//! config dump and the log never show them; the file itself is never read into a log bundle.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use scs_protocol::cose::{self, SigningKey, VerifyingKey};
use scs_protocol::ids::validate_id;
use scs_protocol::topics::topic;
use scs_protocol::TopicKind;
use serde::Deserialize;

use crate::broker_url::BrokerUrl;
use crate::secret::Secret;

/// File name of the installed bundle inside the data dir.
pub const IDENTITY_FILE: &str = "identity.toml";
/// Largest bundle accepted: keys, a CA chain and a client certificate fit in a few KiB.
const MAX_BUNDLE_BYTES: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("identity {path}: {size} bytes is more than a bundle can be ({MAX_BUNDLE_BYTES})")]
    TooLarge { path: PathBuf, size: u64 },
    // Only the parser's message and position: its default rendering quotes the line, which may hold a key.
    #[error("identity {path}: not a valid provisioning bundle: {} (at byte {})", source.message(), source.span().map_or(0, |s| s.start))]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("identity {path} (gateway {gateway:?}): field {field}: {reason}")]
    Invalid { path: PathBuf, gateway: String, field: &'static str, reason: String },
    #[error("identity {path} (gateway {gateway:?}): field {field}: {source}")]
    Key { path: PathBuf, gateway: String, field: &'static str, source: Box<cose::CoseError> },
    #[error("identity {path} (gateway {gateway:?}): field {field}: not base64: {source}")]
    Base64 { path: PathBuf, gateway: String, field: &'static str, source: base64::DecodeError },
    #[error("identity {path}: mode {mode:04o} lets other users read the gateway's keys; run `chmod 600` on it")]
    Permissions { path: PathBuf, mode: u32 },
}

/// The bundle as written on disk; field names are the shared contract with the shim's writer.
#[derive(Deserialize)]
struct BundleFile {
    gateway_id: String,
    broker_url: String,
    api_url: String,
    mqtt_username: String,
    mqtt_password: Secret,
    signing_key: Secret,
    cloud_public_key: String,
    broker_ca_pem: Option<String>,
    client_cert_pem: Option<String>,
    client_key_pem: Option<Secret>,
}

/// A validated identity.
#[derive(Clone)]
pub struct Identity {
    pub gateway_id: String,
    pub broker_url: String,
    pub api_url: String,
    pub mqtt_username: String,
    pub mqtt_password: Secret,
    pub signing_key: Arc<SigningKey>,
    pub cloud_key: VerifyingKey,
    pub broker_ca_pem: Option<String>,
    pub client_cert_pem: Option<String>,
    pub client_key_pem: Option<Secret>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("gateway_id", &self.gateway_id)
            .field("broker_url", &self.broker_url)
            .field("api_url", &self.api_url)
            .field("mqtt_username", &self.mqtt_username)
            .field("public_key", &self.signing_key.verifying_key())
            .field("cloud_key", &self.cloud_key)
            .field("client_cert", &self.client_cert_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Parses and validates bundle text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Identity, IdentityError> {
        let b: BundleFile = toml::from_str(text).map_err(|source| IdentityError::Parse { path: path.to_owned(), source })?;
        let gateway = b.gateway_id.clone();
        let invalid =
            |field, reason: String| IdentityError::Invalid { path: path.to_owned(), gateway: gateway.clone(), field, reason };
        validate_id("gateway id", &b.gateway_id).map_err(|e| invalid("gateway_id", e.to_string()))?;
        let url = BrokerUrl::parse(&b.broker_url).map_err(|e| invalid("broker_url", e))?;
        if !(b.api_url.starts_with("http://") || b.api_url.starts_with("https://")) {
            return Err(invalid("api_url", format!("{:?} is not an http:// or https:// URL", b.api_url)));
        }
        if b.mqtt_username.is_empty() {
            return Err(invalid("mqtt_username", "empty".into()));
        }
        if b.mqtt_password.expose().is_empty() {
            return Err(invalid("mqtt_password", "empty".into()));
        }
        let b64 = |field, text: &str| {
            base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|source| IdentityError::Base64 {
                path: path.to_owned(),
                gateway: gateway.clone(),
                field,
                source,
            })
        };
        let key_err = |field, source| IdentityError::Key {
            path: path.to_owned(),
            gateway: gateway.clone(),
            field,
            source: Box::new(source),
        };
        let pkcs8 = b64("signing_key", b.signing_key.expose())?;
        let signing_key = SigningKey::from_pkcs8(&pkcs8).map_err(|e| key_err("signing_key", e))?;
        let cloud_key = VerifyingKey::from_slice(&b64("cloud_public_key", &b.cloud_public_key)?)
            .map_err(|e| key_err("cloud_public_key", e))?;
        if cloud_key == signing_key.verifying_key() {
            return Err(invalid("cloud_public_key", "equals the gateway's own public key".into()));
        }
        if b.broker_ca_pem.is_some() && !url.tls {
            return Err(invalid("broker_ca_pem", format!("set, but {} is not mqtts://", b.broker_url)));
        }
        if b.client_cert_pem.is_some() != b.client_key_pem.is_some() {
            return Err(invalid("client_cert_pem", "client_cert_pem and client_key_pem go together".into()));
        }
        if b.client_cert_pem.is_some() && !url.tls {
            return Err(invalid("client_cert_pem", format!("a client certificate needs mqtts://, not {}", b.broker_url)));
        }
        if let Some(ca) = &b.broker_ca_pem {
            crate::tls::pem_certs(ca).map_err(|e| invalid("broker_ca_pem", e))?;
        }
        if let (Some(cert), Some(key)) = (&b.client_cert_pem, &b.client_key_pem) {
            crate::tls::pem_certs(cert).map_err(|e| invalid("client_cert_pem", e))?;
            crate::tls::pem_key(key.expose()).map_err(|e| invalid("client_key_pem", e))?;
        }
        Ok(Identity {
            gateway_id: b.gateway_id,
            broker_url: b.broker_url,
            api_url: b.api_url,
            mqtt_username: b.mqtt_username,
            mqtt_password: b.mqtt_password,
            signing_key: Arc::new(signing_key),
            cloud_key,
            broker_ca_pem: b.broker_ca_pem,
            client_cert_pem: b.client_cert_pem,
            client_key_pem: b.client_key_pem,
        })
    }

    /// Reads and validates a bundle file (size-capped).
    pub fn read(path: &Path) -> Result<Identity, IdentityError> {
        let text = read_capped(path)?;
        Identity::parse(&text, path)
    }

    /// Signs this gateway's uplink messages.
    pub fn sealer(&self) -> Sealer {
        Sealer::for_key(&self.gateway_id, self.signing_key.clone())
    }
}

fn read_capped(path: &Path) -> Result<String, IdentityError> {
    let io = |source| IdentityError::Io { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_BUNDLE_BYTES {
        return Err(IdentityError::TooLarge { path: path.to_owned(), size });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// `{data_dir}/identity.toml`.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

/// The installed identity of `data_dir`; `None` when none is installed. A file readable by group or
/// others is refused: it holds the gateway's private key.
pub fn load(data_dir: &Path) -> Result<Option<Identity>, IdentityError> {
    let path = path_in(data_dir);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IdentityError::Io { path, source }),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Permissions { path, mode });
    }
    Identity::read(&path).map(Some)
}

/// `scs-agent provision BUNDLE --data-dir ADIR`: validates the bundle, then installs it as
/// `ADIR/identity.toml` (ADIR 0700, file 0600) atomically: a temp file in ADIR, fsynced, renamed over
/// the old one, directory fsynced. A bad bundle changes nothing.
pub fn provision(bundle: &Path, data_dir: &Path) -> Result<Identity, IdentityError> {
    let text = read_capped(bundle)?;
    install(&text, bundle, data_dir)
}

/// Validates bundle `text` (`source` names it in errors) and installs it as `data_dir/identity.toml`,
/// as [`provision`] describes; first-boot enrollment installs what it assembled the same way.
pub fn install(text: &str, source: &Path, data_dir: &Path) -> Result<Identity, IdentityError> {
    let identity = Identity::parse(text, source)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| IdentityError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(io(data_dir))?;
    let target = path_in(data_dir);
    let tmp = data_dir.join(format!(".{IDENTITY_FILE}.tmp"));
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(IdentityError::Io { path: tmp, source }),
    }
    {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
        // The mode given at creation is filtered by the umask; set it explicitly.
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        // Run as root for an agent that runs as its own user: the file belongs to the data dir's owner,
        // or the agent could not read its own key.
        use std::os::unix::fs::MetadataExt;
        let dir = std::fs::metadata(data_dir).map_err(io(data_dir))?;
        let mine = f.metadata().map_err(io(&tmp))?;
        if (mine.uid(), mine.gid()) != (dir.uid(), dir.gid()) {
            std::os::unix::fs::fchown(&f, Some(dir.uid()), Some(dir.gid())).map_err(io(&tmp))?;
        }
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(io(data_dir))?;
    Ok(identity)
}

/// Signs uplink payloads as this gateway, bound to their topic. Without a key (development mode,
/// `--insecure-no-identity`) payloads pass unsigned.
#[derive(Clone)]
pub struct Sealer {
    gateway: String,
    key: Option<Arc<SigningKey>>,
}

impl Sealer {
    /// Signs as `gateway` with `key`.
    pub fn for_key(gateway: &str, key: Arc<SigningKey>) -> Sealer {
        Sealer { gateway: gateway.to_owned(), key: Some(key) }
    }

    /// Development mode: messages go out as bare CBOR.
    pub fn insecure(gateway: &str) -> Sealer {
        Sealer { gateway: gateway.to_owned(), key: None }
    }

    pub fn signs(&self) -> bool {
        self.key.is_some()
    }

    /// The COSE_Sign1 of `payload` for this gateway's `kind` topic (or `payload` itself without a key).
    pub fn seal(&self, kind: TopicKind, payload: Vec<u8>) -> Vec<u8> {
        match &self.key {
            Some(key) => cose::sign1(key, self.gateway.as_bytes(), topic(&self.gateway, kind).as_bytes(), &payload),
            None => payload,
        }
    }

    /// True if `payload` already is an envelope (rows queued before an upgrade are not).
    pub fn is_sealed(payload: &[u8]) -> bool {
        cose::peek_kid(payload).is_ok()
    }
}

/// Checks downlink messages against the cloud's key and the topic they came on.
#[derive(Clone)]
pub struct Opener {
    cloud_key: Option<VerifyingKey>,
}

impl Opener {
    pub fn new(cloud_key: VerifyingKey) -> Opener {
        Opener { cloud_key: Some(cloud_key) }
    }

    /// Development mode: downlinks are taken as bare CBOR, unverified.
    pub fn insecure() -> Opener {
        Opener { cloud_key: None }
    }

    /// The verified payload of a downlink on `topic`; only an envelope signed by the cloud's key
    /// (kid "cloud") for exactly this topic passes.
    pub fn open<'a>(&self, topic: &str, bytes: &'a [u8]) -> Result<&'a [u8], cose::CoseError> {
        let Some(key) = self.cloud_key else { return Ok(bytes) };
        cose::verify1(bytes, topic.as_bytes(), |kid| (kid == cose::KID_CLOUD).then_some(key)).map(|v| v.payload)
    }
}

#[cfg(test)]
#[path = "identity_tests.rs"]
pub(crate) mod tests;
