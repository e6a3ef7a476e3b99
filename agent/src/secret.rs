//! A value that must never be printed (passwords, keys): its `Debug` and serde forms are `<redacted>`.
//! A leaf module, so the config, the identity and the transports can all hold secrets without depending
//! on each other.

use serde::{Deserialize, Serialize, Serializer};

/// What every secret prints as.
pub const REDACTED: &str = "<redacted>";

/// A value that must not be printed: serializes and debug-prints as `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The real value, for the one place that needs it (e.g. the MQTT login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}
