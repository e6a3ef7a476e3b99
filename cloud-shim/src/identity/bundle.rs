//! The provisioning bundle `gateways add` writes and `scs-agent provision` installs: TOML, field names
//! fixed by the identity design (the agent parses the same names). Written with mode 0600: it holds the
//! gateway's private key and MQTT password.

use std::path::Path;

use serde::Serialize;

use super::IdentityError;

#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    pub gateway_id: String,
    pub broker_url: String,
    pub api_url: String,
    pub mqtt_username: String,
    pub mqtt_password: String,
    /// Base64 (standard) of the gateway's PKCS#8 Ed25519 key. `None` in an enrollment answer: an
    /// enrolled gateway made its key itself and adds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Base64 (standard) of the cloud's 32-byte Ed25519 public key.
    pub cloud_public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_ca_pem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_pem: Option<String>,
}

impl Bundle {
    pub fn to_toml(&self) -> Result<String, IdentityError> {
        toml::to_string(self).map_err(IdentityError::Toml)
    }

    /// Writes the bundle to `path` with mode 0600 (replacing any older file there).
    pub fn write(&self, path: &Path) -> Result<(), IdentityError> {
        super::keys::write_private(path, self.to_toml()?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_agreed_ones() {
        let b = Bundle {
            gateway_id: "gw-1".into(),
            broker_url: "mqtt://127.0.0.1:1883".into(),
            api_url: "http://127.0.0.1:8080".into(),
            mqtt_username: "gw-1".into(),
            mqtt_password: "pw".into(),
            signing_key: Some("c2s=".into()),
            cloud_public_key: "cGs=".into(),
            broker_ca_pem: Some("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into()),
            client_cert_pem: None,
            client_key_pem: None,
        };
        let text = b.to_toml().unwrap();
        let parsed: toml::Table = text.parse().unwrap();
        let mut keys: Vec<&str> = parsed.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "api_url",
                "broker_ca_pem",
                "broker_url",
                "cloud_public_key",
                "gateway_id",
                "mqtt_password",
                "mqtt_username",
                "signing_key"
            ]
        );
        assert_eq!(parsed["broker_ca_pem"].as_str(), b.broker_ca_pem.as_deref());
    }
}
