//! The addresses and limits a running `serve` records in its data dir (`run/endpoints.json`), which
//! `gateways add` and enrollment hand to gateways by default. A leaf of the identity module.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::IdentityError;

/// Where `serve` records the addresses and limits `gateways add` defaults to.
pub const ENDPOINTS_FILE: &str = "run/endpoints.json";

/// What a running `serve` records for the CLI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoints {
    pub broker_url: String,
    pub api_url: String,
    pub max_gateways: usize,
}

impl Endpoints {
    pub fn write(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let path = data_dir.join(ENDPOINTS_FILE);
        let io = |source| IdentityError::Io { path: path.clone(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&path, text).map_err(io)
    }

    pub fn read(data_dir: &Path) -> Option<Endpoints> {
        serde_json::from_slice(&std::fs::read(data_dir.join(ENDPOINTS_FILE)).ok()?).ok()
    }
}
