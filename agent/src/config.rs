//! Agent configuration: built-in defaults, then the TOML file, then command-line flags (each layer
//! overrides the one before). Secrets are wrapped in [`Secret`] so printing the effective config
//! (`print-config`, the remote "read config" command, log bundles) never shows them.
//! Values changed remotely at run time live in `settings.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use scs_protocol::ids::validate_id;
use scs_protocol::SensorType;
use serde::{Deserialize, Serialize};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/scs/agent.toml";
pub const MIN_INTERVAL_SECS: u64 = 1;
pub const MAX_INTERVAL_SECS: u64 = 86_400;
pub use crate::broker_url::BrokerUrl;
pub use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {0}")]
    Invalid(String),
    #[error("invalid config: {0}")]
    Id(#[source] scs_protocol::ProtocolError),
    #[error("invalid config: device {device}: {source}")]
    Device { device: String, source: scs_protocol::ProtocolError },
    #[error(transparent)]
    Identity(Box<crate::identity::IdentityError>),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    /// Identity of this gateway: MQTT topics, sensor id of the EDGE_CONTROLLER. Empty = hostname.
    pub gateway_id: String,
    /// Holds `agent.db` (queue, settings, commands, uploads), `logs/` and `spool/`.
    pub data_dir: PathBuf,
    /// Seconds between telemetry batches (a remote "set interval" command overrides it, persisted).
    pub interval_secs: u64,
    /// Base URL of the cloud HTTP API (artifact uploads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    pub mqtt: MqttConfig,
    pub queue: QueueConfig,
    pub log: LogConfig,
    pub collect: CollectConfig,
    pub commands: CommandsConfig,
    /// Artifact spool and uploads.
    pub upload: crate::upload::UploadConfig,
    /// Agent self-updates and image-update handoff.
    pub update: UpdateConfig,
    pub devices: Vec<DeviceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            gateway_id: String::new(),
            data_dir: PathBuf::from("/var/lib/scs-agent"),
            interval_secs: 10,
            api_url: None,
            mqtt: MqttConfig::default(),
            queue: QueueConfig::default(),
            log: LogConfig::default(),
            collect: CollectConfig::default(),
            commands: CommandsConfig::default(),
            upload: crate::upload::UploadConfig::default(),
            update: UpdateConfig::default(),
            devices: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS; default ports 1883 / 8883).
    pub broker: String,
    /// PEM file of the CA(s) that sign the broker's certificate; without it the system roots are used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that authenticate gateways by certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Default `scs-agent-{gateway_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub keep_alive_secs: u64,
    pub connect_timeout_secs: u64,
    /// Most queued messages published but not yet receipted by the cloud.
    pub inflight_window: usize,
    /// A published message without a receipt after this long is published again.
    pub receipt_timeout_secs: u64,
    pub reconnect_min_ms: u64,
    pub reconnect_max_secs: u64,
    /// No packet from the broker for this long (pings included) => drop and recreate the client.
    pub watchdog_secs: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: "mqtt://127.0.0.1:1883".into(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            username: None,
            password: None,
            client_id: None,
            keep_alive_secs: 30,
            connect_timeout_secs: 10,
            inflight_window: 64,
            receipt_timeout_secs: 30,
            reconnect_min_ms: 500,
            reconnect_max_secs: 30,
            watchdog_secs: 90,
        }
    }
}

/// How hard an enqueue commit pushes to stable storage (see `queue.rs` for the trade-off).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Full,
    Normal,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct QueueConfig {
    /// Upper bounds of the outbox; past them the oldest messages are dropped (and reported as a gap).
    pub max_rows: u64,
    pub max_bytes: u64,
    pub sync: SyncMode,
    /// SQLite page size of `agent.db` (512..=65536, a power of two); a database with another size is
    /// rewritten at start. Small pages wear flash less (see `db::DEFAULT_PAGE_SIZE`).
    pub page_size: u32,
    /// Receipted messages are deleted by the next enqueue's commit, or after this many seconds if none
    /// comes; 0 deletes each receipt in a write of its own (more flash wear, fewer re-sends after a crash).
    pub receipt_linger_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        // 64 MiB holds about two days of a 64-device site at 10 s intervals.
        QueueConfig {
            max_rows: 200_000,
            max_bytes: 64 * 1024 * 1024,
            sync: SyncMode::Full,
            page_size: crate::db::DEFAULT_PAGE_SIZE,
            receipt_linger_secs: DEFAULT_RECEIPT_LINGER_SECS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogConfig {
    /// env_logger filter syntax (`info`, `scs_agent=debug,rumqttc=warn`); `RUST_LOG` overrides it.
    pub level: String,
    /// Also write `{data_dir}/logs/agent.log`, rotated to `agent.log.1` at `max_bytes`.
    pub file: bool,
    pub max_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), file: true, max_bytes: 2 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CollectConfig {
    /// Roots of procfs and sysfs (tests and containers point them elsewhere).
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    /// Mount points to report; empty = every mounted block-device filesystem.
    pub mounts: Vec<String>,
    /// Interfaces to report; empty = all but loopback.
    pub interfaces: Vec<String>,
    /// TCP reachability probe of each child device.
    pub probe_timeout_ms: u64,
    pub probe_concurrency: usize,
    /// Interval of the management tier (ONVIF/vendor identity, disks, channels), seconds.
    pub probe_management_secs: u64,
    /// Interval of the stream tier (RTSP DESCRIBE), seconds.
    pub probe_stream_secs: u64,
    /// Camera/NVR application probes (management, stream, sample) start spread over this many
    /// seconds after the agent starts, so a restart does not log in to every device at once.
    pub probe_stagger_secs: u64,
}

impl Default for CollectConfig {
    fn default() -> Self {
        CollectConfig {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            mounts: Vec::new(),
            interfaces: Vec::new(),
            probe_timeout_ms: 1000,
            probe_concurrency: 16,
            probe_management_secs: 300,
            probe_stream_secs: 600,
            probe_stagger_secs: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CommandsConfig {
    /// argv run by the "reboot gateway" command (never through a shell).
    pub reboot_command: Vec<String>,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        CommandsConfig { reboot_command: vec!["/sbin/reboot".into()] }
    }
}

/// A child device of this gateway (camera, NVR, radar, ANPR unit, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default)]
pub struct DeviceConfig {
    pub id: String,
    /// Platform sensor type: CAMERA, NVR, RADAR, ANPR or another `[A-Z0-9_]` name.
    #[serde(rename = "type")]
    pub device_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `host` or `host:port`; probed with a TCP connect each interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port when `address` has none (default 80).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Probe driver: `onvif`, `hikvision`, `dahua`, `rtsp` or `auto`; absent = reachability only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Credentials for the device's own API (used by device probes and commands).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Free-form attributes announced in the inventory.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
}

impl DeviceConfig {
    /// `host:port` to probe, if the device has an address.
    pub fn probe_target(&self) -> Option<String> {
        let addr = self.address.as_deref()?.trim();
        if addr.is_empty() {
            return None;
        }
        let has_port = if let Some(rest) = addr.strip_prefix('[') { rest.contains("]:") } else { addr.matches(':').count() == 1 };
        if has_port {
            Some(addr.to_owned())
        } else {
            Some(crate::net_probe::host_port(addr, self.port.unwrap_or(80)))
        }
    }
}

/// Command-line values; `Some` overrides the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub gateway_id: Option<String>,
    pub broker: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub interval_secs: Option<u64>,
    pub api_url: Option<String>,
    pub log_level: Option<String>,
    /// `--insecure-no-identity`: run without a provisioned identity (unsigned messages; development only).
    pub insecure_no_identity: bool,
    /// `--enroll-file`: the first-boot enrollment file (default `/etc/scs/enroll.toml`).
    pub enroll_file: Option<PathBuf>,
}

/// Where the effective configuration came from, for the startup log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    File(PathBuf),
    DefaultsOnly,
}

/// Loads defaults < file < flags and validates the result ([`load_with_identity`] adds the identity).
/// Default for `queue.receipt_linger_secs`: how long receipted outbox rows may wait for the next commit.
pub const DEFAULT_RECEIPT_LINGER_SECS: u64 = 30;

#[cfg(test)]
pub fn load(o: &Overrides) -> Result<(Config, Source), ConfigError> {
    load_with(o, |_| Ok(()))
}

/// Like [`load`], with `between` applied after the file and before the flags (the installed identity).
pub fn load_with(
    o: &Overrides,
    between: impl FnOnce(&mut Config) -> Result<(), ConfigError>,
) -> Result<(Config, Source), ConfigError> {
    let (mut cfg, source) = match &o.config {
        Some(p) => (read_file(p)?, Source::File(p.clone())),
        None => {
            let p = Path::new(DEFAULT_CONFIG_PATH);
            if p.exists() {
                (read_file(p)?, Source::File(p.to_path_buf()))
            } else {
                (Config::default(), Source::DefaultsOnly)
            }
        }
    };
    between(&mut cfg)?;
    apply(&mut cfg, o);
    if cfg.gateway_id.is_empty() {
        cfg.gateway_id = hostname_id(&cfg.collect.proc_root).unwrap_or_default();
    }
    validate(&cfg)?;
    Ok((cfg, source))
}

pub fn read_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })
}

pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

/// Keys in a config file that no setting reads (typos, settings of another version). They are
/// ignored rather than refused, so an older agent still starts with a newer file, but the agent
/// logs them. Free-form tables (`devices.attrs`) and sections owned by other modules are not checked.
pub fn unknown_keys(text: &str) -> Vec<String> {
    let Ok(user) = text.parse::<toml::Table>() else { return Vec::new() };
    let mut reference = Config { api_url: Some(String::new()), ..Default::default() };
    reference.mqtt = MqttConfig {
        ca_file: Some(PathBuf::new()),
        client_cert_file: Some(PathBuf::new()),
        client_key_file: Some(PathBuf::new()),
        username: Some(String::new()),
        password: Some(Secret::default()),
        client_id: Some(String::new()),
        ..Default::default()
    };
    let device = DeviceConfig {
        name: Some(String::new()),
        address: Some(String::new()),
        port: Some(0),
        vendor: Some(String::new()),
        model: Some(String::new()),
        serial: Some(String::new()),
        driver: Some(String::new()),
        username: Some(String::new()),
        password: Some(Secret::default()),
        ..Default::default()
    };
    let Ok(known) = toml::Table::try_from(&reference) else { return Vec::new() };
    let Ok(device_keys) = toml::Table::try_from(&device) else { return Vec::new() };
    let mut out = Vec::new();
    for (k, v) in &user {
        match (k.as_str(), known.get(k)) {
            ("devices", _) => {
                for (i, d) in v.as_array().map(Vec::as_slice).unwrap_or(&[]).iter().enumerate() {
                    for dk in d.as_table().map(|t| t.keys().collect::<Vec<_>>()).unwrap_or_default() {
                        if dk != "attrs" && !device_keys.contains_key(dk) {
                            out.push(format!("devices[{i}].{dk}"));
                        }
                    }
                }
            }
            (_, None) => out.push(k.clone()),
            (section, Some(toml::Value::Table(known_section))) if section != "upload" => {
                for sk in v.as_table().map(|t| t.keys().collect::<Vec<_>>()).unwrap_or_default() {
                    if !known_section.contains_key(sk) {
                        out.push(format!("{section}.{sk}"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn apply(cfg: &mut Config, o: &Overrides) {
    if let Some(v) = &o.gateway_id {
        cfg.gateway_id = v.clone();
    }
    if let Some(v) = &o.broker {
        cfg.mqtt.broker = v.clone();
    }
    if let Some(v) = &o.ca_file {
        cfg.mqtt.ca_file = Some(v.clone());
    }
    if let Some(v) = &o.data_dir {
        cfg.data_dir = v.clone();
    }
    if let Some(v) = o.interval_secs {
        cfg.interval_secs = v;
    }
    if let Some(v) = &o.api_url {
        cfg.api_url = Some(v.clone());
    }
    if let Some(v) = &o.log_level {
        cfg.log.level = v.clone();
    }
}

/// The kernel hostname reduced to id characters, so a demo agent needs no config at all.
fn hostname_id(proc_root: &Path) -> Option<String> {
    let raw = std::fs::read_to_string(proc_root.join("sys/kernel/hostname")).ok()?;
    let id: String =
        raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')).take(64).collect();
    (!id.is_empty()).then_some(id)
}

pub fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let bad = |m: String| Err(ConfigError::Invalid(m));
    if cfg.gateway_id.is_empty() {
        return bad("gateway_id is not set (config file, --gateway-id, or a usable hostname)".into());
    }
    validate_id("gateway id", &cfg.gateway_id).map_err(ConfigError::Id)?;
    if !(MIN_INTERVAL_SECS..=MAX_INTERVAL_SECS).contains(&cfg.interval_secs) {
        return bad(format!("interval_secs must be {MIN_INTERVAL_SECS}..={MAX_INTERVAL_SECS}, got {}", cfg.interval_secs));
    }
    BrokerUrl::parse(&cfg.mqtt.broker).map_err(ConfigError::Invalid)?;
    if cfg.mqtt.ca_file.is_some() && !cfg.mqtt.broker.starts_with("mqtts://") {
        return bad("mqtt.ca_file is set but the broker URL is not mqtts://".into());
    }
    if cfg.mqtt.client_cert_file.is_some() != cfg.mqtt.client_key_file.is_some() {
        return bad("mqtt.client_cert_file and mqtt.client_key_file go together".into());
    }
    if !(1..=1024).contains(&cfg.mqtt.inflight_window) {
        return bad(format!("mqtt.inflight_window must be 1..=1024, got {}", cfg.mqtt.inflight_window));
    }
    if cfg.mqtt.keep_alive_secs < 5 || cfg.mqtt.watchdog_secs <= cfg.mqtt.keep_alive_secs {
        return bad("mqtt.keep_alive_secs must be >= 5 and mqtt.watchdog_secs greater than it".into());
    }
    let m = &cfg.mqtt;
    for (name, v, max) in [
        ("keep_alive_secs", m.keep_alive_secs, 3600),
        ("connect_timeout_secs", m.connect_timeout_secs, 300),
        ("receipt_timeout_secs", m.receipt_timeout_secs, 86_400),
        ("reconnect_max_secs", m.reconnect_max_secs, 3600),
        ("watchdog_secs", m.watchdog_secs, 86_400),
        ("reconnect_min_ms", m.reconnect_min_ms.max(1), 3_600_000),
    ] {
        if v == 0 || v > max {
            return bad(format!("mqtt.{name} must be 1..={max}, got {v}"));
        }
    }
    if cfg.queue.max_rows == 0 || cfg.queue.max_bytes < scs_protocol::limits::MAX_UPLINK_BYTES as u64 {
        return bad(format!(
            "queue.max_rows must be positive and queue.max_bytes at least {} (one largest message)",
            scs_protocol::limits::MAX_UPLINK_BYTES
        ));
    }
    if cfg.queue.receipt_linger_secs > 3600 {
        return bad(format!("queue.receipt_linger_secs must be 0..=3600, got {}", cfg.queue.receipt_linger_secs));
    }
    if !(512..=65536).contains(&cfg.queue.page_size) || !cfg.queue.page_size.is_power_of_two() {
        return bad(format!("queue.page_size must be a power of two in 512..=65536, got {}", cfg.queue.page_size));
    }
    if cfg.collect.probe_concurrency == 0 {
        return bad("collect.probe_concurrency must be positive".into());
    }
    let mut seen = std::collections::HashSet::new();
    for d in &cfg.devices {
        validate_id("device id", &d.id).map_err(ConfigError::Id)?;
        SensorType::validate(&d.device_type).map_err(|source| ConfigError::Device { device: d.id.clone(), source })?;
        if d.id == cfg.gateway_id || !seen.insert(d.id.as_str()) {
            return bad(format!("device id {:?} is used twice (or equals the gateway id)", d.id));
        }
        if Driver::parse(d.driver.as_deref().unwrap_or("")).is_none() {
            return bad(format!("device {}: driver must be onvif, hikvision, dahua, rtsp or auto", d.id));
        }
        if d.attrs.len() > scs_protocol::limits::MAX_ATTRS_PER_SENSOR - 8 {
            return bad(format!("device {}: too many attrs", d.id));
        }
    }
    Ok(())
}

/// Which tool installs image bundles.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ImageTool {
    Rauc,
    Swupdate,
    /// The image has no A/B update tool: `image.install` fails with a clear error.
    None,
}

/// `[update]` section of the agent config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct UpdateConfig {
    /// Ed25519 public key of the release key (32 raw bytes, base64), shipped in the image. Separate
    /// from the cloud's command key: a compromised cloud cannot push a binary.
    pub release_key: PathBuf,
    /// A new agent binary must connect to the broker and get a receipt within this many seconds,
    /// or it is abandoned and the previous binary runs again.
    pub health_timeout_secs: u64,
    pub image_tool: ImageTool,
    /// Program run as `rauc install BUNDLE` / `rauc status --output-format=json`.
    pub rauc_command: String,
    /// Program run as `swupdate -i BUNDLE`.
    pub swupdate_command: String,
    /// argv printing SWUpdate's bootloader state after a reboot (`ustate`: 0 ok, 2 testing, 3 failed).
    pub swupdate_state_command: Vec<String>,
    /// Changes at every boot; tells "the agent restarted" from "the gateway rebooted".
    pub boot_id_file: PathBuf,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            release_key: PathBuf::from("/etc/scs/release-key.pub"),
            health_timeout_secs: 120,
            image_tool: ImageTool::Rauc,
            rauc_command: "rauc".into(),
            swupdate_command: "swupdate".into(),
            swupdate_state_command: vec!["fw_printenv".into(), "-n".into(), "ustate".into()],
            boot_id_file: PathBuf::from("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// Which protocol family talks to a device (`driver = ...` in `[[devices]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Onvif,
    Hikvision,
    Dahua,
    Rtsp,
    /// ONVIF first; vendor APIs are tried when ONVIF is absent.
    Auto,
    /// No driver configured: reachability only.
    Reach,
}

impl Driver {
    pub fn parse(s: &str) -> Option<Driver> {
        Some(match s {
            "onvif" => Driver::Onvif,
            "hikvision" => Driver::Hikvision,
            "dahua" => Driver::Dahua,
            "rtsp" => Driver::Rtsp,
            "auto" => Driver::Auto,
            "" | "none" | "tcp" => Driver::Reach,
            _ => return None,
        })
    }
}

/// The effective config as TOML with every secret shown as `<redacted>`.
pub fn redacted_toml(cfg: &Config) -> String {
    toml::to_string(cfg).unwrap_or_else(|e| format!("# config could not be rendered: {e}\n"))
}

/// Loads the configuration with the installed identity layered in: defaults < config file < identity
/// < flags. The identity lives in the data dir the file and flags name. A `--gateway-id` other than the
/// identity's is refused: the keys only speak for their own gateway.
pub fn load_with_identity(o: &Overrides) -> Result<(Config, Source, Option<crate::identity::Identity>), ConfigError> {
    let mut found: Option<crate::identity::Identity> = None;
    let (cfg, source) = load_with(o, |cfg| {
        let dir = o.data_dir.clone().unwrap_or_else(|| cfg.data_dir.clone());
        let Some(id) = crate::identity::load(&dir).map_err(|e| ConfigError::Identity(Box::new(e)))? else { return Ok(()) };
        cfg.gateway_id = id.gateway_id.clone();
        cfg.mqtt.broker = id.broker_url.clone();
        cfg.api_url = Some(id.api_url.clone());
        cfg.mqtt.username = Some(id.mqtt_username.clone());
        cfg.mqtt.password = Some(id.mqtt_password.clone());
        found = Some(id);
        Ok(())
    })?;
    if let Some(id) = &found {
        if cfg.gateway_id != id.gateway_id {
            return Err(ConfigError::Invalid(format!(
                "gateway id {:?} differs from the installed identity's {:?} ({})",
                cfg.gateway_id,
                id.gateway_id,
                crate::identity::path_in(&cfg.data_dir).display()
            )));
        }
    }
    Ok((cfg, source, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../agent.example.toml");

    #[test]
    fn example_config_parses_and_validates() {
        let cfg = parse(EXAMPLE).expect("example parses");
        validate(&cfg).expect("example validates");
        assert!(cfg.devices.len() >= 2);
        assert!(cfg.devices.iter().any(|d| d.device_type == "CAMERA"));
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = std::env::temp_dir().join(format!("scs-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.toml");
        std::fs::write(&path, "gateway_id = \"from-file\"\ninterval_secs = 30\n[mqtt]\nbroker = \"mqtt://file:1\"\n").unwrap();
        let o = Overrides { config: Some(path.clone()), interval_secs: Some(5), ..Default::default() };
        let (cfg, src) = load(&o).unwrap();
        assert_eq!(src, Source::File(path.clone()));
        assert_eq!(cfg.gateway_id, "from-file"); // file over default
        assert_eq!(cfg.mqtt.broker, "mqtt://file:1");
        assert_eq!(cfg.interval_secs, 5); // flag over file
        assert_eq!(cfg.mqtt.keep_alive_secs, MqttConfig::default().keep_alive_secs); // default kept
        let o = Overrides {
            config: Some(path),
            gateway_id: Some("gw-flag".into()),
            broker: Some("mqtts://h:8884".into()),
            ..Default::default()
        };
        let (cfg, _) = load(&o).unwrap();
        assert_eq!(cfg.gateway_id, "gw-flag");
        assert_eq!(cfg.mqtt.broker, "mqtts://h:8884");
        assert_eq!(cfg.interval_secs, 30);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn explicit_missing_config_is_an_error() {
        let o = Overrides { config: Some("/nonexistent/agent.toml".into()), ..Default::default() };
        assert!(matches!(load(&o), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn secrets_are_redacted() {
        let cfg = parse(
            "gateway_id = \"gw\"\n[mqtt]\npassword = \"hunter2\"\n[[devices]]\nid = \"cam-1\"\ntype = \"CAMERA\"\npassword = \"pw-cam\"\n",
        )
        .unwrap();
        assert_eq!(cfg.mqtt.password.as_ref().unwrap().expose(), "hunter2");
        let shown = redacted_toml(&cfg);
        assert!(!shown.contains("hunter2") && !shown.contains("pw-cam"), "{shown}");
        assert!(shown.contains(crate::secret::REDACTED));
        assert!(!format!("{cfg:?}").contains("hunter2"));
        // what is printed parses back (secrets become the placeholder)
        assert!(parse(&shown).is_ok());
    }

    #[test]
    fn invalid_values_are_refused() {
        for text in [
            "gateway_id = \"a/b\"",
            "gateway_id = \"gw\"\ninterval_secs = 0",
            "gateway_id = \"gw\"\n[mqtt]\nbroker = \"http://x\"",
            "gateway_id = \"gw\"\n[[devices]]\nid = \"c\"\ntype = \"camera\"",
            "gateway_id = \"gw\"\n[[devices]]\nid = \"c\"\ntype = \"CAMERA\"\n[[devices]]\nid = \"c\"\ntype = \"NVR\"",
        ] {
            let cfg = parse(text).unwrap();
            assert!(validate(&cfg).is_err(), "{text}");
        }
        assert!(parse("gateway_id = 5").is_err());
    }

    #[test]
    fn unknown_keys_are_listed_not_fatal() {
        assert!(unknown_keys(EXAMPLE).is_empty(), "{:?}", unknown_keys(EXAMPLE));
        let text = "gateway_id = \"gw\"\nintervall_secs = 5\n[mqtt]\nbrokr = \"x\"\npassword = \"p\"\n[[devices]]\nid = \"c\"\ntype = \"CAMERA\"\nadress = \"h\"\n[devices.attrs]\nanything = \"ok\"\n";
        assert_eq!(unknown_keys(text), vec!["devices[0].adress", "intervall_secs", "mqtt.brokr"]);
        assert!(parse(text).is_ok());
    }

    #[test]
    fn broker_urls() {
        assert_eq!(BrokerUrl::parse("mqtt://h").unwrap(), BrokerUrl { tls: false, host: "h".into(), port: 1883 });
        assert_eq!(BrokerUrl::parse("mqtts://h:1").unwrap(), BrokerUrl { tls: true, host: "h".into(), port: 1 });
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:9").unwrap(), BrokerUrl { tls: false, host: "::1".into(), port: 9 });
        assert!(BrokerUrl::parse("tcp://h").is_err());
        assert!(BrokerUrl::parse("mqtt://h:x").is_err());
    }

    #[test]
    fn probe_targets() {
        let d = |a: &str, p: Option<u16>| DeviceConfig { address: Some(a.into()), port: p, ..Default::default() };
        assert_eq!(d("10.0.0.5", None).probe_target().unwrap(), "10.0.0.5:80");
        assert_eq!(d("10.0.0.5", Some(554)).probe_target().unwrap(), "10.0.0.5:554");
        assert_eq!(d("cam.local:8000", Some(554)).probe_target().unwrap(), "cam.local:8000");
        assert_eq!(d("fe80::1", Some(554)).probe_target().unwrap(), "[fe80::1]:554");
        assert_eq!(d("[fe80::1]:81", None).probe_target().unwrap(), "[fe80::1]:81");
    }
}
