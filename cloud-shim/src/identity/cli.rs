//! `scs-cloud-shim gateways add|revoke|list` and `scs-cloud-shim mosquitto-config`. They work on the
//! data dir directly, also while `serve` runs on it (SQLite serialises the writes; the serving process
//! sees them within a second, see [`super::registry`]).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use scs_protocol::cose::SigningKey;
use thiserror::Error;

use super::bundle::Bundle;
use super::endpoints::Endpoints;
use super::keys::{cloud_signing_key, new_password, password_sha256};
use super::mosquitto::MqttCa;
use super::registry::{self, AddError};
use super::IdentityError;
use crate::store::{now_ms, Store, StoreError};

/// Gateways a shim accepts at most unless `--max-gateways` says otherwise.
pub const DEFAULT_MAX_GATEWAYS: usize = 10_000;

pub const USAGE: &str = "\
    scs-cloud-shim gateways add ID --data-dir DIR --out BUNDLE [--broker-url URL] [--api-url URL]
                                   [--max-gateways N]
        provision a gateway: new Ed25519 key pair and MQTT password (plus a client certificate when
        mosquitto-config created a CA); writes the bundle for `scs-agent provision` with mode 0600.
        URLs default to the addresses of the shim serving DIR.
    scs-cloud-shim gateways revoke ID --data-dir DIR
        cut a gateway off (MQTT login and uplinks refused within a second; no restart needed)
    scs-cloud-shim gateways list --data-dir DIR
    scs-cloud-shim enroll-tokens add --site SITE --data-dir DIR [--ttl 24h] [--max-uses 1]
                                     [--out ENROLL_TOML] [--api-url URL] [--ca-pem FILE]
        a site enrollment token for first-boot enrollment (`POST /v1/enroll`): printed once on stdout
        (only its SHA-256 is stored); --out also writes the /etc/scs/enroll.toml an image carries
        (mode 0600). TTL: 90s, 30m, 24h, 7d (at most 90d); checked with this machine's clock.
    scs-cloud-shim enroll-tokens revoke TOKEN_ID --data-dir DIR
    scs-cloud-shim enroll-tokens list --data-dir DIR
        tokens (id, site, uses/max, expiry, revocation) and which gateways each enrolled
    scs-cloud-shim mosquitto-config --data-dir DIR --out OUTDIR [--port 8883] [--bind 0.0.0.0]
                                    [--server-name NAME]...
        Mosquitto mTLS set-up: CA, server and shim certificates, ACL file and mosquitto.conf snippet
";

#[derive(Debug, Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Add(#[from] AddError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no active gateway {0}")]
    NotFound(String),
    #[error(transparent)]
    Enroll(#[from] super::enroll::EnrollError),
    #[error("no unrevoked enrollment token {0}")]
    TokenNotFound(String),
}

/// `--name value` / `--name=value` options and positional arguments of the shim's CLI subcommands.
pub(crate) struct Args {
    pub(crate) positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    pub(crate) fn parse(args: &[String]) -> Result<Args, CliError> {
        let (mut positional, mut options) = (Vec::new(), Vec::new());
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let (name, value) = match name.split_once('=') {
                    Some((n, v)) => (n.to_owned(), v.to_owned()),
                    None => {
                        let v = it.next().ok_or_else(|| CliError::Usage(format!("option --{name} needs a value")))?;
                        (name.to_owned(), v.clone())
                    }
                };
                options.push((name, value));
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Args { positional, options })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.options.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    pub(crate) fn require(&self, name: &str) -> Result<&str, CliError> {
        self.get(name).ok_or_else(|| CliError::Usage(format!("--{name} is required")))
    }

    pub(crate) fn only(&self, allowed: &[&str]) -> Result<(), CliError> {
        match self.options.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
            Some((n, _)) => Err(CliError::Usage(format!("unknown option --{n}"))),
            None => Ok(()),
        }
    }

    pub(crate) fn data_dir(&self) -> Result<PathBuf, CliError> {
        Ok(PathBuf::from(self.require("data-dir")?))
    }
}

/// `gateways ...`; prints what it did on stdout.
pub fn gateways(args: &[String]) -> Result<(), CliError> {
    let a = Args::parse(args)?;
    match a.positional.first().map(String::as_str) {
        Some("add") => {
            a.only(&["data-dir", "out", "broker-url", "api-url", "max-gateways"])?;
            let id = a.positional.get(1).ok_or_else(|| CliError::Usage("gateways add needs an ID".into()))?;
            let data_dir = a.data_dir()?;
            let out = PathBuf::from(a.require("out")?);
            let recorded = Endpoints::read(&data_dir);
            let pick = |opt: &str, from: Option<String>| -> Result<String, CliError> {
                a.get(opt)
                    .map(str::to_owned)
                    .or(from)
                    .ok_or_else(|| CliError::Usage(format!("--{opt} is required: no shim has served {} yet", data_dir.display())))
            };
            let broker_url = pick("broker-url", recorded.as_ref().map(|e| e.broker_url.clone()))?;
            let api_url = pick("api-url", recorded.as_ref().map(|e| e.api_url.clone()))?;
            let max = match a.get("max-gateways") {
                Some(v) => v.parse().map_err(|_| CliError::Usage(format!("--max-gateways {v:?}: not a number")))?,
                None => recorded.map_or(DEFAULT_MAX_GATEWAYS, |e| e.max_gateways),
            };
            add(&data_dir, id, &out, broker_url, api_url, max)?;
            println!("gateway {id} provisioned; bundle written to {} (mode 0600)", out.display());
            Ok(())
        }
        Some("revoke") => {
            a.only(&["data-dir"])?;
            let id = a.positional.get(1).ok_or_else(|| CliError::Usage("gateways revoke needs an ID".into()))?;
            let store = Store::open(&a.data_dir()?)?;
            let conn = store.connect()?;
            if !registry::revoke(&conn, id, now_ms())? {
                return Err(CliError::NotFound(id.clone()));
            }
            println!("gateway {id} revoked");
            Ok(())
        }
        Some("list") => {
            a.only(&["data-dir"])?;
            let store = Store::open(&a.data_dir()?)?;
            for g in registry::list(&store.connect()?)? {
                println!("{}\t{}\tcreated_ms={}\trevoked_ms={}", g.id, g.status, g.created_ms, g.revoked_ms.unwrap_or(0));
            }
            Ok(())
        }
        _ => Err(CliError::Usage(format!("usage:\n{USAGE}"))),
    }
}

/// `enroll-tokens ...`; prints what it did on stdout (the token alone on its line, for scripts).
pub fn enroll_tokens(args: &[String]) -> Result<(), CliError> {
    use super::enroll;
    let a = Args::parse(args)?;
    match a.positional.first().map(String::as_str) {
        Some("add") if a.positional.len() == 1 => {
            a.only(&["data-dir", "site", "ttl", "max-uses", "out", "api-url", "ca-pem"])?;
            let data_dir = a.data_dir()?;
            let site = a.require("site")?;
            let ttl = a.get("ttl").unwrap_or("24h");
            let ttl_ms =
                enroll::parse_ttl(ttl).ok_or_else(|| CliError::Usage(format!("--ttl {ttl:?}: use e.g. 90s, 30m, 24h, 7d")))?;
            let max_uses = match a.get("max-uses") {
                Some(v) => v.parse().map_err(|_| CliError::Usage(format!("--max-uses {v:?}: not a number")))?,
                None => 1,
            };
            // Everything the enroll file needs is checked before a token exists.
            let file = match a.get("out") {
                Some(out) => {
                    let api_url = match a.get("api-url") {
                        Some(u) => u.to_owned(),
                        None => Endpoints::read(&data_dir).map(|e| e.api_url).ok_or_else(|| {
                            CliError::Usage(format!("--api-url is required: no shim has served {} yet", data_dir.display()))
                        })?,
                    };
                    let ca_pem = match a.get("ca-pem") {
                        Some(p) => {
                            Some(std::fs::read_to_string(p).map_err(|source| IdentityError::Io { path: p.into(), source })?)
                        }
                        None => None,
                    };
                    Some((PathBuf::from(out), api_url, ca_pem))
                }
                None => None,
            };
            let store = Store::open(&data_dir)?;
            let (id, token) = enroll::add_token(&store.connect()?, site, ttl_ms, max_uses, now_ms())?;
            if let Some((out, api_url, ca_pem)) = file {
                let f = enroll::EnrollFile { api_url, token: token.clone(), site: site.to_owned(), ca_pem };
                let text = toml::to_string(&f).map_err(IdentityError::Toml)?;
                super::keys::write_private(&out, text.as_bytes())?;
                eprintln!("wrote {} (mode 0600): install it as /etc/scs/enroll.toml", out.display());
            }
            eprintln!("enrollment token {id} for site {site}: {max_uses} use(s), expires in {ttl}; shown once:");
            println!("{token}");
            Ok(())
        }
        Some("revoke") => {
            a.only(&["data-dir"])?;
            let id = a.positional.get(1).ok_or_else(|| CliError::Usage("enroll-tokens revoke needs a TOKEN_ID".into()))?;
            let store = Store::open(&a.data_dir()?)?;
            if !enroll::revoke_token(&store.connect()?, id, now_ms())? {
                return Err(CliError::TokenNotFound(id.clone()));
            }
            println!("enrollment token {id} revoked");
            Ok(())
        }
        Some("list") => {
            a.only(&["data-dir"])?;
            let store = Store::open(&a.data_dir()?)?;
            let conn = store.connect()?;
            let now = now_ms();
            for t in enroll::list_tokens(&conn)? {
                let state = match t.usable(now) {
                    Ok(()) => "usable".to_owned(),
                    Err(e) => e.to_string(),
                };
                println!(
                    "{}\tsite={}\tuses={}/{}\texpires_ms={}\trevoked_ms={}\t{state}",
                    t.id,
                    t.site,
                    t.uses,
                    t.max_uses,
                    t.expires_ms,
                    t.revoked_ms.unwrap_or(0)
                );
            }
            for e in enroll::list_enrollments(&conn)? {
                println!("enrolled\t{}\ttoken={}\tsite={}\tenrolled_ms={}", e.gateway_id, e.token_id, e.site, e.enrolled_ms);
            }
            Ok(())
        }
        _ => Err(CliError::Usage(format!("usage:\n{USAGE}"))),
    }
}

/// Provisions `id` and writes its bundle to `out`.
pub fn add(data_dir: &Path, id: &str, out: &Path, broker_url: String, api_url: String, max: usize) -> Result<(), CliError> {
    let store = Store::open(data_dir)?;
    let cloud = cloud_signing_key(data_dir)?;
    let (key, pkcs8) = SigningKey::generate().map_err(|source| IdentityError::Key { what: "gateway key", source })?;
    let password = new_password()?;
    let ca = MqttCa::load(data_dir)?;
    let client = match &ca {
        Some(ca) => Some(ca.issue_client(id)?),
        None => None,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let bundle = Bundle {
        gateway_id: id.to_owned(),
        broker_url,
        api_url,
        mqtt_username: id.to_owned(),
        mqtt_password: password.clone(),
        signing_key: Some(b64.encode(&pkcs8)),
        cloud_public_key: b64.encode(cloud.public_key()),
        broker_ca_pem: ca.as_ref().map(|c| c.cert_pem.clone()),
        client_cert_pem: client.as_ref().map(|c| c.cert_pem.clone()),
        client_key_pem: client.map(|c| c.key_pem),
    };
    // Registered first: a bundle on disk for a gateway the shim refuses would mislead the installer.
    registry::add(&mut store.connect()?, id, &key.public_key(), &password_sha256(&password), now_ms(), max)?;
    if let Err(e) = bundle.write(out) {
        // Nobody holds the credentials: take the registration back so the id can be added again.
        let _ = store.connect().map(|c| c.execute("DELETE FROM gateways WHERE id = ?1", [id]));
        return Err(e.into());
    }
    Ok(())
}

/// `mosquitto-config ...`.
pub fn mosquitto_config(args: &[String]) -> Result<(), CliError> {
    let a = Args::parse(args)?;
    a.only(&["data-dir", "out", "port", "bind", "server-name"])?;
    if !a.positional.is_empty() {
        return Err(CliError::Usage(format!("usage:\n{USAGE}")));
    }
    let data_dir = a.data_dir()?;
    let out = PathBuf::from(a.require("out")?);
    let port = match a.get("port") {
        Some(p) => p.parse().map_err(|_| CliError::Usage(format!("--port {p:?}: not a port")))?,
        None => 8883,
    };
    let mut names = a.all("server-name");
    if names.is_empty() {
        names = vec!["localhost".into(), "127.0.0.1".into()];
    }
    let w = super::mosquitto::write_config(&data_dir, &out, &names, port, a.get("bind").unwrap_or("0.0.0.0"))?;
    println!(
        "wrote the Mosquitto mTLS set-up to {}; include {} in mosquitto.conf. Gateways added from now on get \
         client certificates. Run the shim with --broker mqtts://HOST:{port} --broker-ca {}/ca.pem \
         --broker-client-cert {}/shim.pem --broker-client-key {}/shim.key",
        out.display(),
        w.conf.display(),
        out.display(),
        out.display(),
        out.display()
    );
    Ok(())
}
