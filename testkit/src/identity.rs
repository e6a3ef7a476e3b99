//! Provisioned gateways for tests: `scs-cloud-shim gateways add` through the real binary, the bundle it
//! writes, and signing uplinks the way an agent does (COSE_Sign1, external_aad = topic).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use scs_protocol::cose::{sign1, SigningKey};

use crate::bin_path;
use crate::mqtt_cli::{try_publish_opts, MqttAuth, PubOpts};

/// What a provisioning bundle gives a gateway.
pub struct GatewayCreds {
    pub id: String,
    /// The bundle file `gateways add` wrote.
    pub bundle: PathBuf,
    pub broker_url: String,
    pub api_url: String,
    pub password: String,
    pub cloud_public_key: [u8; 32],
    pub client_cert_pem: Option<String>,
    pub client_key_pem: Option<String>,
    pub broker_ca_pem: Option<String>,
    key: SigningKey,
}

impl GatewayCreds {
    /// Reads a bundle file.
    pub fn read(bundle: &Path) -> GatewayCreds {
        let text = std::fs::read_to_string(bundle).unwrap_or_else(|e| panic!("read bundle {}: {e}", bundle.display()));
        let t: toml::Table = text.parse().unwrap_or_else(|e| panic!("bundle {} is not TOML: {e}", bundle.display()));
        let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let need = |k: &str| s(k).unwrap_or_else(|| panic!("bundle {} lacks {k}", bundle.display()));
        let b64 = base64::engine::general_purpose::STANDARD;
        let pkcs8 = b64.decode(need("signing_key")).expect("signing_key is base64");
        let cloud = b64.decode(need("cloud_public_key")).expect("cloud_public_key is base64");
        GatewayCreds {
            id: need("gateway_id"),
            bundle: bundle.to_owned(),
            broker_url: need("broker_url"),
            api_url: need("api_url"),
            password: need("mqtt_password"),
            cloud_public_key: cloud.try_into().expect("cloud_public_key is 32 bytes"),
            client_cert_pem: s("client_cert_pem"),
            client_key_pem: s("client_key_pem"),
            broker_ca_pem: s("broker_ca_pem"),
            key: SigningKey::from_pkcs8(&pkcs8).expect("signing_key is an Ed25519 PKCS#8 document"),
        }
    }

    /// `payload` as this gateway sends it on `topic`.
    pub fn sign(&self, topic: &str, payload: &[u8]) -> Vec<u8> {
        sign1(&self.key, self.id.as_bytes(), topic.as_bytes(), payload)
    }

    /// The gateway's public key, to verify what it sent.
    pub fn verifying_key(&self) -> scs_protocol::cose::VerifyingKey {
        self.key.verifying_key()
    }

    /// The payload of a message this gateway signed for `topic`, `None` if it does not verify.
    pub fn open<'a>(&self, topic: &str, signed: &'a [u8]) -> Option<&'a [u8]> {
        let key = self.verifying_key();
        scs_protocol::cose::verify1(signed, topic.as_bytes(), |kid| (kid == self.id.as_bytes()).then_some(key))
            .ok()
            .map(|v| v.payload)
    }

    /// Signs with this gateway's key but names `kid` (for forgery tests).
    pub fn sign_as(&self, kid: &str, topic: &str, payload: &[u8]) -> Vec<u8> {
        sign1(&self.key, kid.as_bytes(), topic.as_bytes(), payload)
    }

    /// Login as this gateway on the embedded broker (client id `scs-agent-{id}` unless `client_id`).
    pub fn auth(&self, client_id: Option<&str>) -> MqttAuth {
        let id = client_id.map(str::to_owned).unwrap_or_else(|| format!("scs-agent-{}", self.id));
        MqttAuth::password(&self.id, &self.password, Some(&id))
    }

    /// Signs and publishes `payload` on `topic` as this gateway (QoS 1); panics if the broker refuses.
    pub fn publish(&self, port: u16, topic: &str, payload: &[u8]) {
        let opts = PubOpts { auth: Some(self.auth(Some(&self.id))), ..PubOpts::default() };
        try_publish_opts(port, topic, &self.sign(topic, payload), &opts)
            .unwrap_or_else(|e| panic!("publish to {topic} as {} failed: {e}", self.id));
    }
}

/// `scs-cloud-shim gateways add ID --data-dir DIR --out BUNDLE [--broker-url U --api-url U]`; panics on
/// failure. URLs default to those of the shim serving `data_dir`.
pub fn gateways_add(data_dir: &Path, id: &str, out: &Path, urls: Option<(&str, &str)>) -> GatewayCreds {
    let mut cmd = Command::new(bin_path("scs-cloud-shim"));
    cmd.args(["gateways", "add", id, "--data-dir"]).arg(data_dir).arg("--out").arg(out);
    if let Some((broker, api)) = urls {
        cmd.args(["--broker-url", broker, "--api-url", api]);
    }
    let o = cmd.output().expect("run scs-cloud-shim gateways add");
    assert!(
        o.status.success(),
        "gateways add {id} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    GatewayCreds::read(out)
}

/// `scs-cloud-shim gateways revoke ID --data-dir DIR`; panics on failure.
pub fn gateways_revoke(data_dir: &Path, id: &str) {
    let o = Command::new(bin_path("scs-cloud-shim"))
        .args(["gateways", "revoke", id, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run scs-cloud-shim gateways revoke");
    assert!(o.status.success(), "gateways revoke {id} failed: {}", String::from_utf8_lossy(&o.stderr));
}

/// The shim's own MQTT login on its embedded broker (username `scs-shim`, the secret in its data dir):
/// what tests use to watch traffic.
pub fn shim_observer_auth(data_dir: &Path) -> Option<MqttAuth> {
    let secret = std::fs::read_to_string(data_dir.join("keys").join("shim-mqtt.secret")).ok()?;
    Some(MqttAuth::password("scs-shim", secret.trim(), Some("scs-shim-testkit")))
}

/// Copies gateway `id`'s row of the `gateways` table from one shim data dir to another (both migrated),
/// for set-ups where several shims verify the same gateways (forwarding shims and their Worker).
pub fn copy_gateway(from_data_dir: &Path, to_data_dir: &Path, id: &str) {
    let from = rusqlite::Connection::open(from_data_dir.join("scs.db")).expect("open source scs.db");
    let row: (Vec<u8>, String, String, i64) = from
        .query_row("SELECT public_key, mqtt_password_sha256, status, created_ms FROM gateways WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap_or_else(|e| panic!("gateway {id} in {}: {e}", from_data_dir.display()));
    let to = rusqlite::Connection::open(to_data_dir.join("scs.db")).expect("open target scs.db");
    to.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
    to.execute(
        "INSERT OR REPLACE INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![id, row.0, row.1, row.2, row.3],
    )
    .unwrap_or_else(|e| panic!("copy gateway {id} to {}: {e}", to_data_dir.display()));
}
