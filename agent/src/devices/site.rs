//! The child devices of this gateway: the configured `[[devices]]` plus those adopted at run time by
//! `site.adopt`, persisted in `agent.db` table `adopted_devices`. Commands resolve their target here;
//! the telemetry loop watches [`SiteDevices::generation`] to announce and probe an adopted device
//! without a restart.
//!
//! An adopted device's credentials are never stored or sent: the row names a configured device
//! (`credentials_from`) whose username and password it shares, resolved when the row is loaded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::params;
use scs_protocol::ids::validate_id;
use scs_protocol::SensorType;

use crate::config::{DeviceConfig, Driver};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS adopted_devices (
    id TEXT PRIMARY KEY,
    device_type TEXT NOT NULL,
    name TEXT,
    address TEXT NOT NULL,
    driver TEXT,
    -- id of a configured device whose credentials this one uses; never the secret itself
    credentials_from TEXT,
    adopted_ms INTEGER NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("adopted devices table {path}: {source}")]
    Db { path: PathBuf, source: rusqlite::Error },
    #[error("device {id}: {reason}")]
    Invalid { id: String, reason: String },
}

/// What `site.adopt` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adoption {
    pub id: String,
    pub device_type: String,
    pub address: String,
    pub driver: String,
    pub name: Option<String>,
    pub credentials_from: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Configured devices; adopted ones are appended.
    devices: Vec<DeviceConfig>,
    generation: u64,
}

/// Shared list of child devices. Cheap to clone.
#[derive(Clone, Default)]
pub struct SiteDevices {
    inner: Arc<Mutex<Inner>>,
    gateway_id: Arc<str>,
}

impl SiteDevices {
    pub fn new(gateway_id: &str, configured: &[DeviceConfig]) -> SiteDevices {
        SiteDevices {
            inner: Arc::new(Mutex::new(Inner { devices: configured.to_vec(), generation: 0 })),
            gateway_id: gateway_id.into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn find(&self, id: &str) -> Option<DeviceConfig> {
        self.lock().devices.iter().find(|d| d.id == id).cloned()
    }

    pub fn all(&self) -> Vec<DeviceConfig> {
        self.lock().devices.clone()
    }

    /// Changes whenever a device is added.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Adds the adopted devices recorded in `agent.db` (at start). Rows that no longer fit (an id now
    /// configured, a credentials source removed from the config) are skipped with a warning.
    pub fn load_adopted(&self, db: &Path) -> Result<usize, SiteError> {
        let err = |source| SiteError::Db { path: db.to_owned(), source };
        let conn = crate::db::open(db).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let mut stmt = conn
            .prepare(
                "SELECT id, device_type, name, address, driver, credentials_from FROM adopted_devices ORDER BY adopted_ms, id",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Adoption {
                    id: r.get(0)?,
                    device_type: r.get(1)?,
                    name: r.get(2)?,
                    address: r.get(3)?,
                    driver: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    credentials_from: r.get(5)?,
                })
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut n = 0;
        for a in rows {
            match self.build(&a) {
                Ok(d) => {
                    let mut inner = self.lock();
                    inner.devices.push(d);
                    inner.generation += 1;
                    n += 1;
                }
                Err(e) => log::warn!("adopted device not loaded: {e}"),
            }
        }
        Ok(n)
    }

    /// Checks an adoption against the devices already known and builds its config entry.
    fn build(&self, a: &Adoption) -> Result<DeviceConfig, SiteError> {
        let bad = |reason: String| SiteError::Invalid { id: a.id.clone(), reason };
        validate_id("device id", &a.id).map_err(|e| bad(e.to_string()))?;
        SensorType::validate(&a.device_type).map_err(|e| bad(e.to_string()))?;
        if Driver::parse(&a.driver).is_none() {
            return Err(bad(format!("unknown driver {:?}", a.driver)));
        }
        if a.id == *self.gateway_id {
            return Err(bad("is the gateway's own id".into()));
        }
        let inner = self.lock();
        if inner.devices.iter().any(|d| d.id == a.id) {
            return Err(bad("already a device of this gateway".into()));
        }
        let mut d = DeviceConfig {
            id: a.id.clone(),
            device_type: a.device_type.clone(),
            name: a.name.clone(),
            address: Some(a.address.clone()),
            driver: Some(a.driver.clone()),
            ..DeviceConfig::default()
        };
        if d.probe_target().is_none() {
            return Err(bad(format!("address {:?} is not host or host:port", a.address)));
        }
        if let Some(from) = &a.credentials_from {
            let src = inner
                .devices
                .iter()
                .find(|x| &x.id == from)
                .ok_or_else(|| bad(format!("credentialsFrom names {from}, which is not a device of this gateway")))?;
            d.username = src.username.clone();
            d.password = src.password.clone();
        }
        d.attrs.insert("adopted".into(), "true".into());
        Ok(d)
    }

    /// Persists and adds a device; it is announced and probed from the telemetry loop's next turn.
    pub fn adopt(&self, db: &Path, a: &Adoption) -> Result<DeviceConfig, SiteError> {
        let d = self.build(a)?;
        let err = |source| SiteError::Db { path: db.to_owned(), source };
        let conn = crate::db::open(db).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute(
            "INSERT INTO adopted_devices (id, device_type, name, address, driver, credentials_from, adopted_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![a.id, a.device_type, a.name, a.address, a.driver, a.credentials_from, crate::clock::now_ms() as i64],
        )
        .map_err(err)?;
        let mut inner = self.lock();
        inner.devices.push(d.clone());
        inner.generation += 1;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scs-site-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("agent.db")
    }

    fn configured() -> Vec<DeviceConfig> {
        let d: DeviceConfig = toml::from_str(
            "id = \"cam-1\"\ntype = \"CAMERA\"\naddress = \"10.0.0.5\"\nusername = \"admin\"\npassword = \"pw-cam\"\n",
        )
        .unwrap();
        vec![d]
    }

    fn adoption(id: &str) -> Adoption {
        Adoption {
            id: id.into(),
            device_type: "CAMERA".into(),
            address: "127.0.0.1:8080".into(),
            driver: "onvif".into(),
            name: Some("Door".into()),
            credentials_from: Some("cam-1".into()),
        }
    }

    #[test]
    fn adopted_devices_persist_and_share_credentials_by_reference() {
        let db = tmp();
        let site = SiteDevices::new("gw", &configured());
        let g0 = site.generation();
        let d = site.adopt(&db, &adoption("cam-9")).unwrap();
        assert_eq!(d.password.as_ref().map(|p| p.expose().to_owned()).as_deref(), Some("pw-cam"));
        assert!(site.generation() > g0);
        assert!(site.find("cam-9").is_some());
        // The secret is not in the database, only the reference.
        let raw = std::fs::read(&db).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"pw-cam"));
        // A restart loads it again.
        let again = SiteDevices::new("gw", &configured());
        assert_eq!(again.load_adopted(&db).unwrap(), 1);
        assert_eq!(again.find("cam-9").unwrap().address.as_deref(), Some("127.0.0.1:8080"));
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[test]
    fn duplicates_and_unknown_sources_are_refused() {
        let db = tmp();
        let site = SiteDevices::new("gw", &configured());
        assert!(site.adopt(&db, &adoption("cam-1")).unwrap_err().to_string().contains("already"));
        assert!(site.adopt(&db, &adoption("gw")).unwrap_err().to_string().contains("gateway"));
        let mut a = adoption("cam-2");
        a.credentials_from = Some("nope".into());
        assert!(site.adopt(&db, &a).unwrap_err().to_string().contains("credentialsFrom"));
        a.credentials_from = None;
        a.address = " ".into();
        assert!(site.adopt(&db, &a).unwrap_err().to_string().contains("address"));
        assert!(site.find("cam-2").is_none());
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }
}
