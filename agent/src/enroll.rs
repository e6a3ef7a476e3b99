//! First-boot enrollment. An image may carry a site enrollment token (`/etc/scs/enroll.toml`, see
//! [`DEFAULT_ENROLL_FILE`]) instead of a per-gateway bundle. When `scs-agent run` finds no
//! `identity.toml` but that file, it:
//!
//! 1. generates the gateway's Ed25519 key pair on the device (kept in `{data_dir}/enroll-key.pk8`, 0600,
//!    until enrolled, so every retry and restart presents the same key);
//! 2. sends `POST {api_url}/v1/enroll` with the token as bearer: gateway id, public key, optional site,
//!    and a signature by the new key (proof of possession); the private key never leaves the gateway;
//! 3. receives its identity (MQTT password, cloud key, broker URL and CA, optional client certificate
//!    over its own key), adds its key, and installs the result as `identity.toml` exactly as
//!    `scs-agent provision` does.
//!
//! Offline, it retries with jittered exponential backoff and keeps the watchdog fed. It needs no correct
//! clock: the cloud checks the token's expiry with its own, and TLS checks certificates at the floored
//! clock of [`crate::tls::FlooredClock`].

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use scs_protocol::cose::{self, Signer as _, SigningKey};
use serde::Deserialize;

use crate::context::Shutdown;
use crate::secret::Secret;

/// Where images and technicians put the enrollment file.
pub const DEFAULT_ENROLL_FILE: &str = "/etc/scs/enroll.toml";
/// The device key waiting for its enrollment, inside the data dir.
pub const KEY_FILE: &str = "enroll-key.pk8";
/// Domain separation of the proof-of-possession signature (the shim checks the same bytes).
const POP_CONTEXT: &[u8] = b"scs-enroll-v1";
const MAX_FILE_BYTES: u64 = 64 * 1024;
const MAX_ANSWER_BYTES: u64 = 256 * 1024;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_MAX_SECS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("enrollment file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("enrollment file {path}: {size} bytes is more than an enrollment file can be")]
    TooLarge { path: PathBuf, size: u64 },
    // Only the parser's message and position: its rendering would quote the line holding the token.
    #[error("enrollment file {path}: not valid: {} (at byte {})", source.message(), source.span().map_or(0, |s| s.start))]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("enrollment file {path}: field {field}: {reason}")]
    Invalid { path: PathBuf, field: &'static str, reason: String },
    #[error("device key {path}: {source}")]
    Key { path: PathBuf, source: Box<cose::CoseError> },
    #[error("device key {path}: {source}")]
    KeyIo { path: PathBuf, source: std::io::Error },
    #[error("enrollment of {gateway}: TLS set-up: {source}")]
    Tls { gateway: String, source: rustls::Error },
    #[error("enrollment of {gateway}: CA: {source}")]
    Ca { gateway: String, source: crate::tls::CaError },
    #[error("enrollment of {gateway} at {url}: {source}")]
    Http { gateway: String, url: String, source: Box<ureq::Error> },
    #[error("enrollment of {gateway} refused by {url} (HTTP {status}): {message}")]
    Refused { gateway: String, url: String, status: u16, message: String },
    #[error("enrollment of {gateway}: the cloud's answer is unusable: {reason}")]
    Answer { gateway: String, reason: String },
    #[error("enrollment of {gateway}: {source}")]
    Identity { gateway: String, source: Box<crate::identity::IdentityError> },
    #[error("enrollment of {gateway}: stopped before it completed")]
    Stopped { gateway: String },
}

impl EnrollError {
    /// A refusal by the cloud (bad or used token, wrong site, id taken): retrying soon cannot help, but the
    /// file may be replaced, so the agent retries at its slowest pace rather than giving up.
    fn refused(&self) -> bool {
        matches!(self, EnrollError::Refused { status, .. } if (400..500).contains(status) && *status != 408 && *status != 429)
    }
}

/// `enroll.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollFile {
    /// The cloud's HTTP API, `https://...` (`http://` only on loopback, for tests).
    api_url: String,
    token: Secret,
    /// The site the token was made for; the cloud refuses a mismatch.
    site: Option<String>,
    /// Fixed gateway id; without it the id is derived, see `gateway_id_from`.
    gateway_id: Option<String>,
    /// `machine-id` (`gw-` + 16 hex digits of /etc/machine-id) or `mac` (`gw-` + the first physical
    /// interface's MAC). Default: machine-id, else mac.
    gateway_id_from: Option<String>,
    /// CA certificate(s) for `api_url` (PEM); default: the system store.
    ca_pem: Option<String>,
    /// Broker URL to use instead of the one the cloud answers with (a site-local broker).
    broker_url: Option<String>,
    /// Longest pause between attempts, seconds.
    retry_max_secs: Option<u64>,
}

struct Plan {
    file: EnrollFile,
    gateway: String,
    url: String,
}

fn read_file(path: &Path, root: &Path) -> Result<Plan, EnrollError> {
    let io = |source| EnrollError::Io { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(EnrollError::TooLarge { path: path.to_owned(), size });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let file: EnrollFile = toml::from_str(&text).map_err(|source| EnrollError::Parse { path: path.to_owned(), source })?;
    let invalid = |field, reason: String| EnrollError::Invalid { path: path.to_owned(), field, reason };
    check_api_url(&file.api_url).map_err(|r| invalid("api_url", r))?;
    if file.token.expose().trim().is_empty() {
        return Err(invalid("token", "empty".into()));
    }
    if let Some(ca) = &file.ca_pem {
        crate::tls::pem_certs(ca).map_err(|e| invalid("ca_pem", e))?;
    }
    if let Some(b) = &file.broker_url {
        crate::broker_url::BrokerUrl::parse(b).map_err(|e| invalid("broker_url", e))?;
    }
    let gateway = match &file.gateway_id {
        Some(id) => id.clone(),
        None => derive_gateway_id(file.gateway_id_from.as_deref(), root).map_err(|r| invalid("gateway_id_from", r))?,
    };
    scs_protocol::ids::validate_id("gateway id", &gateway).map_err(|e| invalid("gateway_id", e.to_string()))?;
    let url = format!("{}/v1/enroll", file.api_url.trim_end_matches('/'));
    Ok(Plan { file, gateway, url })
}

/// `https://` anywhere; `http://` only to this machine (tests, a local proxy), never across a network.
fn check_api_url(url: &str) -> Result<(), String> {
    if url.starts_with("https://") {
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("http://") else { return Err(format!("{url:?} is not an https:// URL")) };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!("{url:?}: plain http is allowed only to a loopback address; use https://"))
    }
}

/// The gateway id from the machine: `gw-` + the first 16 hex digits of `/etc/machine-id`, or `gw-` + the
/// MAC of the first interface (by name) that is a real device (has `device/`) with a non-zero address.
pub fn derive_gateway_id(from: Option<&str>, root: &Path) -> Result<String, String> {
    let machine = || -> Option<String> {
        let text = std::fs::read_to_string(root.join("etc/machine-id")).ok()?;
        let id = text.trim();
        (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0'))
            .then(|| format!("gw-{}", id.get(..16).unwrap_or(id).to_ascii_lowercase()))
    };
    let mac = || -> Option<String> {
        let net = root.join("sys/class/net");
        let mut names: Vec<String> =
            std::fs::read_dir(&net).ok()?.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names.into_iter().filter(|n| n != "lo" && net.join(n).join("device").exists()).find_map(|n| {
            let text = std::fs::read_to_string(net.join(&n).join("address")).ok()?;
            let hex: String = text.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
            (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && hex.bytes().any(|b| b != b'0'))
                .then(|| format!("gw-{hex}"))
        })
    };
    match from {
        Some("machine-id") => machine().ok_or_else(|| format!("no usable {}", root.join("etc/machine-id").display())),
        Some("mac") => mac().ok_or_else(|| "no physical network interface with a MAC address".to_owned()),
        Some(other) => Err(format!("{other:?}: use machine-id or mac")),
        None => machine().or_else(mac).ok_or_else(|| "no usable /etc/machine-id and no MAC address; set gateway_id".to_owned()),
    }
}

/// The waiting device key, created on first need (0600, fsynced before it is used: a gateway that
/// enrolled must still hold its key after a power cut).
fn device_key(data_dir: &Path) -> Result<(SigningKey, Vec<u8>), EnrollError> {
    let path = data_dir.join(KEY_FILE);
    let key_err = |source| EnrollError::Key { path: path.clone(), source: Box::new(source) };
    let io = |source| EnrollError::KeyIo { path: path.clone(), source };
    match std::fs::read(&path) {
        Ok(pkcs8) => return Ok((SigningKey::from_pkcs8(&pkcs8).map_err(key_err)?, pkcs8)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let (key, pkcs8) = SigningKey::generate().map_err(key_err)?;
    std::fs::create_dir_all(data_dir).map_err(io)?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    let tmp = data_dir.join(format!(".{KEY_FILE}.tmp"));
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        f.write_all(&pkcs8).and_then(|()| f.sync_all()).map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok((key, pkcs8))
}

/// The bytes the proof-of-possession signature covers: context, id and public key, NUL-separated.
fn pop_message(gateway: &str, public_key: &[u8; 32]) -> Vec<u8> {
    [POP_CONTEXT, b"\0", gateway.as_bytes(), b"\0", public_key.as_slice()].concat()
}

/// The CBOR request body: a map with text keys gatewayId, publicKey, signature and optional site.
fn request_body(gateway: &str, key: &SigningKey, site: Option<&str>) -> Vec<u8> {
    let public_key = key.public_key();
    let signature = key.sign_ed25519(&pop_message(gateway, &public_key));
    let mut e = minicbor::Encoder::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = encode_request(&mut e, gateway, &public_key, &signature, site);
    e.into_writer()
}

fn encode_request(
    e: &mut minicbor::Encoder<Vec<u8>>,
    gateway: &str,
    public_key: &[u8],
    signature: &[u8],
    site: Option<&str>,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    e.map(if site.is_some() { 4 } else { 3 })?;
    e.str("gatewayId")?.str(gateway)?;
    e.str("publicKey")?.bytes(public_key)?;
    e.str("signature")?.bytes(signature)?;
    if let Some(s) = site {
        e.str("site")?.str(s)?;
    }
    Ok(())
}

/// The private key as PEM (PKCS#8), for the TLS client certificate issued over it.
fn pkcs8_pem(pkcs8: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(pkcs8);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// Completes the cloud's answer (a bundle without `signing_key`) into the identity file's text.
fn complete_answer(plan: &Plan, answer: &str, pkcs8: &[u8]) -> Result<String, EnrollError> {
    let bad = |reason: String| EnrollError::Answer { gateway: plan.gateway.clone(), reason };
    let mut table: toml::Table = toml::from_str(answer).map_err(|e| bad(format!("not a bundle: {}", e.message())))?;
    match table.get("gateway_id").and_then(|v| v.as_str()) {
        Some(id) if id == plan.gateway => {}
        other => return Err(bad(format!("it names gateway {other:?}"))),
    }
    if table.contains_key("signing_key") || table.contains_key("client_key_pem") {
        return Err(bad("it carries a private key; an enrolled gateway uses only its own".into()));
    }
    table.insert("signing_key".into(), base64::engine::general_purpose::STANDARD.encode(pkcs8).into());
    if table.contains_key("client_cert_pem") {
        table.insert("client_key_pem".into(), pkcs8_pem(pkcs8).into());
    }
    if let Some(b) = &plan.file.broker_url {
        table.insert("broker_url".into(), b.clone().into());
    }
    toml::to_string(&table).map_err(|e| bad(format!("cannot write it back: {e}")))
}

fn https_agent(plan: &Plan) -> Result<ureq::Agent, EnrollError> {
    let roots = match &plan.file.ca_pem {
        Some(pem) => crate::tls::root_store_from_pem(pem),
        None => crate::tls::root_store(None).or_else(|e| match e {
            // Plain http on loopback needs no roots; https then fails with "unknown issuer".
            crate::tls::CaError::NoSystemRoots => Ok(rustls::RootCertStore::empty()),
            e => Err(e),
        }),
    }
    .map_err(|source| EnrollError::Ca { gateway: plan.gateway.clone(), source })?;
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_connect(Some(Duration::from_secs(10)))
        // Bounded, so the watchdog is fed between attempts.
        .timeout_global(Some(Duration::from_secs(30)))
        .user_agent(concat!("scs-agent/", env!("CARGO_PKG_VERSION")))
        .build();
    crate::tls::https_agent(config, roots).map_err(|source| EnrollError::Tls { gateway: plan.gateway.clone(), source })
}

/// One enrollment attempt; on success the identity is installed.
fn attempt(plan: &Plan, data_dir: &Path, key: &SigningKey, pkcs8: &[u8]) -> Result<crate::identity::Identity, EnrollError> {
    let agent = https_agent(plan)?;
    let body = request_body(&plan.gateway, key, plan.file.site.as_deref());
    let http = |source| EnrollError::Http { gateway: plan.gateway.clone(), url: plan.url.clone(), source: Box::new(source) };
    let mut resp = agent
        .post(&plan.url)
        .header("Authorization", &format!("Bearer {}", plan.file.token.expose().trim()))
        .header("Content-Type", "application/cbor")
        .send(&body[..])
        .map_err(http)?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().with_config().limit(MAX_ANSWER_BYTES).read_to_string().map_err(http)?;
    if status != 201 {
        let message: String = text.chars().take(400).collect();
        return Err(EnrollError::Refused { gateway: plan.gateway.clone(), url: plan.url.clone(), status, message });
    }
    let full = complete_answer(plan, &text, pkcs8)?;
    let source = PathBuf::from(format!("enrollment answer from {}", plan.url));
    crate::identity::install(&full, &source, data_dir)
        .map_err(|e| EnrollError::Identity { gateway: plan.gateway.clone(), source: Box::new(e) })
}

/// Pauses about `d` (uniformly in its upper half, so a site's gateways that lost power together do not
/// retry in lockstep), feeding the watchdog. True if shutdown was requested.
fn pause(d: Duration, shutdown: &Shutdown) -> bool {
    let jittered = d / 2 + Duration::from_millis(crate::clock::random_u64() % (d.as_millis() as u64 / 2 + 1));
    let until = Instant::now() + jittered;
    let feed_every = crate::sd_notify::watchdog_interval().unwrap_or(Duration::from_secs(10)).min(Duration::from_secs(10));
    loop {
        crate::sd_notify::notify_watchdog();
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return shutdown.requested();
        }
        if shutdown.sleep(left.min(feed_every)) {
            return true;
        }
    }
}

/// Enrolls with the enrollment file at `path` until it succeeds or shutdown is requested, and returns
/// the installed identity. An unreadable or invalid enrollment file is an error (nothing to retry with);
/// a cloud that cannot be reached or refuses is retried.
pub fn enroll(path: &Path, data_dir: &Path, shutdown: &Shutdown) -> Result<crate::identity::Identity, EnrollError> {
    let plan = read_file(path, Path::new("/"))?;
    let (key, pkcs8) = device_key(data_dir)?;
    log::info!(
        "gateway {}: no identity yet; enrolling at {} with {} (device key {:?})",
        plan.gateway,
        plan.url,
        path.display(),
        key.verifying_key()
    );
    // Started, if not yet connected: being offline while enrolling is a normal state.
    crate::sd_notify::notify_ready();
    let mut backoff = FIRST_RETRY;
    let mut plan = plan;
    loop {
        crate::sd_notify::notify_status(&format!("gateway {}: enrolling at {}", plan.gateway, plan.url));
        crate::sd_notify::notify_watchdog();
        let e = match attempt(&plan, data_dir, &key, &pkcs8) {
            Ok(identity) => {
                log::info!("gateway {}: enrolled; identity installed in {}", identity.gateway_id, data_dir.display());
                if let Err(e) = std::fs::remove_file(data_dir.join(KEY_FILE)) {
                    log::warn!("removing {}: {e}", data_dir.join(KEY_FILE).display());
                }
                return Ok(identity);
            }
            Err(e) => e,
        };
        let max = Duration::from_secs(plan.file.retry_max_secs.unwrap_or(DEFAULT_RETRY_MAX_SECS).max(1));
        let wait = if e.refused() { max } else { backoff.min(max) };
        if e.refused() {
            log::error!("{e}; retrying in about {} s (replace {} to change the token)", wait.as_secs(), path.display());
        } else {
            log::warn!("{e}; retrying in about {} s", wait.as_secs());
        }
        backoff = (backoff * 2).min(max);
        if pause(wait, shutdown) {
            return Err(EnrollError::Stopped { gateway: plan.gateway.clone() });
        }
        // A technician may have replaced the file (new token); a file broken meanwhile keeps the old plan.
        match read_file(path, Path::new("/")) {
            Ok(p) => plan = p,
            Err(e) => log::error!("{e}; keeping the previous enrollment settings"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scs_protocol::cose::Verifier as _;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scs-enroll-{name}-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn api_url_must_be_https_unless_loopback() {
        for ok in ["https://cloud.example", "http://127.0.0.1:8080", "http://localhost:1/x", "http://[::1]:80"] {
            assert!(check_api_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1:8080", "http://cloud.example", "ftp://x", "127.0.0.1:80"] {
            assert!(check_api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gateway_id_from_machine_id_or_mac() {
        let root = tmp("ids");
        assert!(derive_gateway_id(None, &root).is_err());
        let eth = root.join("sys/class/net/eth0");
        std::fs::create_dir_all(eth.join("device")).unwrap();
        std::fs::write(eth.join("address"), "02:42:AC:11:00:02\n").unwrap();
        // A virtual interface (no device/) that sorts first is skipped.
        std::fs::create_dir_all(root.join("sys/class/net/br0")).unwrap();
        std::fs::write(root.join("sys/class/net/br0/address"), "aa:aa:aa:aa:aa:aa\n").unwrap();
        assert_eq!(derive_gateway_id(None, &root).unwrap(), "gw-0242ac110002");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/machine-id"), "0123456789ABCDEF0123456789abcdef\n").unwrap();
        assert_eq!(derive_gateway_id(None, &root).unwrap(), "gw-0123456789abcdef");
        assert_eq!(derive_gateway_id(Some("mac"), &root).unwrap(), "gw-0242ac110002");
        assert!(derive_gateway_id(Some("serial"), &root).is_err());
        std::fs::write(root.join("etc/machine-id"), "uninitialized\n").unwrap();
        assert!(derive_gateway_id(Some("machine-id"), &root).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn enroll_file_is_validated_and_never_quotes_the_token() {
        let dir = tmp("file");
        let path = dir.join("enroll.toml");
        std::fs::write(
            &path,
            "api_url = \"https://c.example\"\ntoken = \"scs_enroll_secret\"\ngateway_id = \"gw-9\"\nsite = \"s1\"\n",
        )
        .unwrap();
        let plan = read_file(&path, &dir).unwrap();
        assert_eq!((plan.gateway.as_str(), plan.url.as_str()), ("gw-9", "https://c.example/v1/enroll"));
        std::fs::write(&path, "api_url = \"http://10.1.1.1\"\ntoken = \"scs_enroll_secret\"\ngateway_id = \"gw-9\"\n").unwrap();
        assert!(matches!(read_file(&path, &dir), Err(EnrollError::Invalid { field: "api_url", .. })));
        std::fs::write(&path, "api_url = \"https://c\"\ntoken = \"scs_enroll_secret\"\ngateway_id = \"gw-9\"\ntokne = 1\n")
            .unwrap();
        let e = read_file(&path, &dir).err().unwrap().to_string();
        assert!(!e.contains("scs_enroll_secret"), "{e}");
        std::fs::write(&path, "api_url = \"https://c\"\ntoken = \"scs_enroll_secret\ngateway_id = \"gw-9\"\n").unwrap();
        let e = read_file(&path, &dir).err().unwrap().to_string();
        assert!(!e.contains("scs_enroll_secret"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn device_key_survives_retries_and_the_answer_is_completed() {
        let dir = tmp("key");
        let (k1, p1) = device_key(&dir).unwrap();
        let (k2, p2) = device_key(&dir).unwrap();
        assert_eq!((k1.public_key(), &p1), (k2.public_key(), &p2));
        assert_eq!(std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        let file = EnrollFile {
            api_url: "https://c".into(),
            token: Secret::default(),
            site: None,
            gateway_id: None,
            gateway_id_from: None,
            ca_pem: None,
            broker_url: Some("mqtt://10.0.0.5:1883".into()),
            retry_max_secs: None,
        };
        let plan = Plan { file, gateway: "gw-1".into(), url: "https://c/v1/enroll".into() };
        let (cloud, _) = SigningKey::generate().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let answer = format!(
            "gateway_id = \"gw-1\"\nbroker_url = \"mqtt://x:1\"\napi_url = \"https://c\"\nmqtt_username = \"gw-1\"\n\
             mqtt_password = \"pw\"\ncloud_public_key = \"{}\"\n",
            b64.encode(cloud.public_key())
        );
        let full = complete_answer(&plan, &answer, &p1).unwrap();
        let id = crate::identity::Identity::parse(&full, Path::new("x")).unwrap();
        assert_eq!(id.signing_key.public_key(), k1.public_key());
        assert_eq!(id.broker_url, "mqtt://10.0.0.5:1883");
        assert!(complete_answer(&plan, &answer.replace("gw-1", "gw-2"), &p1).is_err());
        assert!(complete_answer(&plan, &format!("{answer}signing_key = \"AAAA\"\n"), &p1).is_err());
        // The proof of possession verifies with the public key alone.
        let body = request_body("gw-1", &k1, Some("s1"));
        assert!(body.len() > 100);
        let sig = k1.sign_ed25519(&pop_message("gw-1", &k1.public_key()));
        assert!(cose::RingVerifier.verify_ed25519(&k1.verifying_key(), &pop_message("gw-1", &k1.public_key()), &sig));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
