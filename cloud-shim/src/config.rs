//! `scs-cloud-shim serve` options: command line plus environment (tokens).

use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

/// Share group used with an external broker unless `--share-group` says otherwise.
pub const DEFAULT_SHARE_GROUP: &str = "scs-shim";

pub const USAGE: &str = "\
scs-cloud-shim: MQTT broker + store + HTTP API for SCS gateways (one process is a whole cloud for a site)

USAGE:
    scs-cloud-shim serve [OPTIONS]
    scs-cloud-shim version
    scs-cloud-shim help

SERVE OPTIONS:
    --data-dir DIR         where scs.db (SQLite, D1 schema) and artifacts live      [default: ./scs-data]
    --http ADDR            HTTP API listen address                                 [default: 127.0.0.1:8080]
    --mqtt-listen ADDR     embedded MQTT broker listen address (loopback default)  [default: 127.0.0.1:1883]
    --broker URL           use an external broker (mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS)
                           instead of the embedded one
    --broker-ca FILE       PEM CA(s) to verify an mqtts:// broker [default: the public web roots]
    --broker-username USER  log in to the external broker as USER ...
    --broker-password PASS  ... with this password (or env SCS_BROKER_PASSWORD)
    --broker-client-cert FILE  PEM client certificate for an mqtts:// broker (Mosquitto mTLS, see
                           `scs-cloud-shim mosquitto-config`) ...
    --broker-client-key FILE   ... and its PEM private key
    --max-children N       sensors one gateway may own (inventory/telemetry beyond it is refused and
                           counted)                                               [default: 512]
    --max-gateways N       gateways `gateways add` may provision on this data dir  [default: 10000]
    --share-group NAME     subscribe to uplinks through $share/NAME/... so several shims split the load
                           [default: scs-shim with --broker; none with the embedded broker]
                           (--share-group none disables it)
    --worker-url URL       forward ingest to a Worker (or another shim) at URL/v1/ingest instead of
                           writing the local store; receipts follow the Worker's answers. The read API
                           of a forwarding shim shows only its local data: read from the Worker.
    --worker-ca FILE       trust this PEM CA for --worker-url (private CA) instead of the public roots
    --tls-cert FILE        serve the HTTP API over HTTPS with this PEM certificate chain
    --tls-key FILE         ... and this PEM private key
    --public-url URL       externally visible base URL (for download and upload links)
    --portal-dir DIR       serve the built operators' portal from DIR at /  (none: serve nothing)
                           [default: portal/dist if present, else /usr/share/scs-cloud-shim/portal]

ENVIRONMENT:
    SCS_API_TOKEN          bearer token clients (and forwarding shims) must send. If unset, the shim
                           generates a random token and prints it once at startup.
    SCS_WORKER_TOKEN       token sent to --worker-url [default: SCS_API_TOKEN]
    SCS_SIGNING_KEY        HMAC key for download/upload tokens (generated and saved in the data dir if unset)
    RUST_LOG               log filter [default: info]
";

#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("unknown option {0} (see scs-cloud-shim help)")]
    Unknown(String),
    #[error("option {0} needs a value")]
    MissingValue(String),
    #[error("invalid {option} {value:?}: {reason}")]
    Invalid { option: &'static str, value: String, reason: String },
    #[error("invalid {option} {value:?}: {source}")]
    Address { option: &'static str, value: String, source: std::net::AddrParseError },
}

/// Where the shim's MQTT connection goes.
#[derive(Debug, Clone, PartialEq)]
pub enum BrokerMode {
    /// In-process rumqttd on this address.
    Embedded(SocketAddr),
    /// Someone else's broker; `tls` for `mqtts://`.
    External { host: String, port: u16, tls: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub broker: BrokerMode,
    pub broker_ca: Option<PathBuf>,
    pub share_group: Option<String>,
    pub worker_url: Option<String>,
    pub worker_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub public_url: Option<String>,
    /// Built portal served at `/` (`api::portal`); `None` serves nothing there.
    pub portal_dir: Option<PathBuf>,
    pub broker_username: Option<String>,
    pub broker_password: Option<Secret>,
    pub broker_client_cert: Option<PathBuf>,
    pub broker_client_key: Option<PathBuf>,
    pub max_children: usize,
    pub max_gateways: usize,
}

/// A secret that never shows in `Debug` output (config dumps, logs).
#[derive(Clone, PartialEq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Sensors one gateway may own unless `--max-children` says otherwise.
pub const DEFAULT_MAX_CHILDREN: usize = 512;

fn count(option: &'static str, v: &str) -> Result<usize, ConfigError> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::Invalid { option, value: v.into(), reason: "expected a positive number".into() }),
    }
}

fn addr(option: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|source| ConfigError::Address { option, value: v.into(), source })
}

/// `mqtt://HOST:PORT` (port defaults to 1883) or `mqtts://HOST:PORT` (TLS, port defaults to 8883).
pub fn parse_broker_url(v: &str) -> Result<BrokerMode, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid { option: "--broker", value: v.into(), reason: reason.into() };
    let (rest, tls) = if let Some(r) = v.strip_prefix("mqtts://").or_else(|| v.strip_prefix("ssl://")) {
        (r, true)
    } else if let Some(r) = v.strip_prefix("mqtt://").or_else(|| v.strip_prefix("tcp://")) {
        (r, false)
    } else {
        return Err(invalid("expected mqtt://HOST:PORT or mqtts://HOST:PORT"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| invalid("bad port"))?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    Ok(BrokerMode::External { host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port, tls })
}

impl ServeConfig {
    /// Parses the arguments after `serve`.
    pub fn parse(args: &[String]) -> Result<ServeConfig, ConfigError> {
        let mut data_dir = PathBuf::from("scs-data");
        let mut http = addr("--http", "127.0.0.1:8080")?;
        let mut mqtt_listen = addr("--mqtt-listen", "127.0.0.1:1883")?;
        let mut broker = None;
        let mut broker_ca = None;
        let mut share_group: Option<String> = None;
        let mut worker_url = None;
        let mut worker_ca = None;
        let (mut tls_cert, mut tls_key, mut public_url) = (None, None, None);
        let mut portal_dir: Option<Option<PathBuf>> = None;
        let (mut broker_username, mut broker_client_cert, mut broker_client_key) = (None, None, None);
        let mut broker_password = std::env::var("SCS_BROKER_PASSWORD").ok().filter(|p| !p.is_empty()).map(Secret);
        let mut max_children = DEFAULT_MAX_CHILDREN;
        let mut max_gateways = crate::identity::cli::DEFAULT_MAX_GATEWAYS;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            // Both `--opt value` and `--opt=value`.
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
                _ => (a.as_str(), None),
            };
            let mut value =
                || inline.clone().or_else(|| it.next().cloned()).ok_or_else(|| ConfigError::MissingValue(name.to_owned()));
            match name {
                "--data-dir" => data_dir = PathBuf::from(value()?),
                "--http" => http = addr("--http", &value()?)?,
                "--mqtt-listen" => mqtt_listen = addr("--mqtt-listen", &value()?)?,
                "--broker" => broker = Some(parse_broker_url(&value()?)?),
                "--broker-ca" => broker_ca = Some(PathBuf::from(value()?)),
                "--broker-username" => broker_username = Some(value()?),
                "--broker-password" => broker_password = Some(Secret(value()?)),
                "--broker-client-cert" => broker_client_cert = Some(PathBuf::from(value()?)),
                "--broker-client-key" => broker_client_key = Some(PathBuf::from(value()?)),
                "--max-children" => max_children = count("--max-children", &value()?)?,
                "--max-gateways" => max_gateways = count("--max-gateways", &value()?)?,
                "--share-group" => share_group = Some(value()?),
                "--worker-url" => {
                    let v = value()?;
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        return Err(ConfigError::Invalid {
                            option: "--worker-url",
                            value: v,
                            reason: "expected http(s)://...".into(),
                        });
                    }
                    worker_url = Some(v.trim_end_matches('/').to_owned());
                }
                "--worker-ca" => worker_ca = Some(PathBuf::from(value()?)),
                "--tls-cert" => tls_cert = Some(PathBuf::from(value()?)),
                "--tls-key" => tls_key = Some(PathBuf::from(value()?)),
                "--public-url" => public_url = Some(value()?.trim_end_matches('/').to_owned()),
                "--portal-dir" => portal_dir = Some(Some(PathBuf::from(value()?)).filter(|p| p.as_os_str() != "none")),
                other => return Err(ConfigError::Unknown(other.to_owned())),
            }
        }
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(ConfigError::Invalid {
                option: "--tls-cert",
                value: String::new(),
                reason: "--tls-cert and --tls-key go together".into(),
            });
        }
        if broker_client_cert.is_some() != broker_client_key.is_some() {
            return Err(ConfigError::Invalid {
                option: "--broker-client-cert",
                value: String::new(),
                reason: "--broker-client-cert and --broker-client-key go together".into(),
            });
        }
        if broker.is_none() && (broker_username.is_some() || broker_client_cert.is_some()) {
            return Err(ConfigError::Invalid {
                option: "--broker-username",
                value: String::new(),
                reason: "broker credentials are for an external --broker; the embedded broker uses the shim's own secret".into(),
            });
        }
        let share_group = match (share_group, &broker) {
            (Some(g), _) if g.is_empty() || g == "none" => None,
            (Some(g), _) => {
                if g.contains(['/', '+', '#']) {
                    return Err(ConfigError::Invalid {
                        option: "--share-group",
                        value: g,
                        reason: "must not contain / + #".into(),
                    });
                }
                Some(g)
            }
            (None, Some(_)) => Some(DEFAULT_SHARE_GROUP.to_owned()),
            (None, None) => None,
        };
        Ok(ServeConfig {
            data_dir,
            http,
            broker: broker.unwrap_or(BrokerMode::Embedded(mqtt_listen)),
            broker_ca,
            share_group,
            worker_url,
            worker_ca,
            tls_cert,
            tls_key,
            public_url,
            portal_dir: portal_dir.unwrap_or_else(default_portal_dir),
            broker_username,
            broker_password,
            broker_client_cert,
            broker_client_key,
            max_children,
            max_gateways,
        })
    }

    /// Host and port the shim's own MQTT client connects to.
    pub fn mqtt_target(&self) -> (String, u16) {
        match &self.broker {
            BrokerMode::Embedded(a) => {
                // A wildcard listen address is reached through loopback.
                let ip = if a.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { a.ip() };
                (ip.to_string(), a.port())
            }
            BrokerMode::External { host, port, .. } => (host.clone(), *port),
        }
    }
}

/// Installed location of the portal (Debian package).
const SYSTEM_PORTAL_DIR: &str = "/usr/share/scs-cloud-shim/portal";
/// Development location, relative to the working directory.
const DEV_PORTAL_DIR: &str = "portal/dist";

/// The portal directory when `--portal-dir` is not given: `portal/dist` under the working directory if it
/// exists, else the installed copy if it exists, else none (nothing is served at `/`).
fn default_portal_dir() -> Option<PathBuf> {
    [DEV_PORTAL_DIR, SYSTEM_PORTAL_DIR].iter().map(PathBuf::from).find(|p| p.join("index.html").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<ServeConfig, ConfigError> {
        ServeConfig::parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_are_embedded_and_unshared() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.broker, BrokerMode::Embedded("127.0.0.1:1883".parse().unwrap()));
        assert_eq!(c.share_group, None);
    }

    #[test]
    fn external_broker_shares_by_default() {
        let c = parse(&["--broker", "mqtt://127.0.0.1:1999", "--http=127.0.0.1:9"]).unwrap();
        assert_eq!(c.broker, BrokerMode::External { host: "127.0.0.1".into(), port: 1999, tls: false });
        let t = parse(&["--broker", "mqtts://mq.example"]).unwrap();
        assert_eq!(t.broker, BrokerMode::External { host: "mq.example".into(), port: 8883, tls: true });
        assert_eq!(c.share_group.as_deref(), Some(DEFAULT_SHARE_GROUP));
        assert_eq!(parse(&["--broker", "mqtt://h", "--share-group", "none"]).unwrap().share_group, None);
        assert_eq!(parse(&["--broker", "mqtt://h"]).unwrap().mqtt_target(), ("h".into(), 1883));
    }

    #[test]
    fn bad_input_is_named() {
        assert_eq!(parse(&["--nope"]), Err(ConfigError::Unknown("--nope".into())));
        assert_eq!(parse(&["--http"]), Err(ConfigError::MissingValue("--http".into())));
        assert!(matches!(parse(&["--broker", "http://x"]), Err(ConfigError::Invalid { option: "--broker", .. })));
        assert!(matches!(parse(&["--share-group", "a/b"]), Err(ConfigError::Invalid { .. })));
        assert!(matches!(parse(&["--tls-cert", "c"]), Err(ConfigError::Invalid { .. })));
        assert!(matches!(parse(&["--broker-username", "u"]), Err(ConfigError::Invalid { .. })));
        assert!(matches!(parse(&["--broker", "mqtt://h", "--broker-client-cert", "c"]), Err(ConfigError::Invalid { .. })));
        assert!(matches!(parse(&["--max-children", "0"]), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn broker_password_is_not_in_debug_output() {
        let c = parse(&["--broker", "mqtt://h", "--broker-username", "u", "--broker-password", "hunter2"]).unwrap();
        assert_eq!(c.broker_password.as_ref().map(|s| s.0.as_str()), Some("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
