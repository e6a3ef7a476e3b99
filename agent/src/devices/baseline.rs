//! The identity baseline of each device (serial, firmware, uptime at a known gateway time), persisted in
//! `agent.db` table `device_baselines` (owned by this module). Device events (`events.rs`) compare each
//! management round against it: kept in memory only, a restart would forget a camera replaced while the
//! agent was down, or see every device for the first time again.
//!
//! A row is written only when its values change (a new unit, new firmware, a reboot, or the boot-time
//! estimate drifting by a minute): a few writes per device per year, not one per probe, which spares
//! the flash. The telemetry loop writes what changed once per interval, in one transaction on a
//! short-lived connection: writes are that rare, and an open connection would cost memory for the
//! agent's lifetime.

use std::path::{Path, PathBuf};

use rusqlite::params;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device_baselines (
    device_id TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    firmware TEXT NOT NULL,
    -- device uptime (s) read at gateway time seen_s (s since the Unix epoch); NULL when not reported
    uptime_s INTEGER,
    seen_s INTEGER,
    updated_ms INTEGER NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("device baselines in {path}: {source}")]
    Load { path: PathBuf, source: rusqlite::Error },
    #[error("device {device}: saving its baseline in {path}: {source}")]
    Save { device: String, path: PathBuf, source: rusqlite::Error },
}

/// What the identity events compare against. Empty strings: not reported by the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    pub serial: Box<str>,
    pub firmware: Box<str>,
    pub uptime_s: Option<u64>,
    pub seen_s: Option<u64>,
}

/// Baselines by device id.
pub type Rows = Vec<(Box<str>, Baseline)>;

/// Where baselines persist.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.and_then(|x| i64::try_from(x).ok())
}

impl Store {
    /// Creates the table if needed and reads every row.
    pub fn load(db: &Path) -> Result<(Store, Vec<(String, Baseline)>), BaselineError> {
        let err = |source| BaselineError::Load { path: db.to_owned(), source };
        let conn = crate::db::open(db).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let mut stmt = conn.prepare("SELECT device_id, serial, firmware, uptime_s, seen_s FROM device_baselines").map_err(err)?;
        let rows = stmt
            .query_map([], |r| {
                let u = |i| r.get::<_, Option<i64>>(i).map(|v| v.and_then(|x| u64::try_from(x).ok()));
                Ok((
                    r.get::<_, String>(0)?,
                    Baseline {
                        serial: r.get::<_, String>(1)?.into_boxed_str(),
                        firmware: r.get::<_, String>(2)?.into_boxed_str(),
                        uptime_s: u(3)?,
                        seen_s: u(4)?,
                    },
                ))
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok((Store { path: db.to_owned() }, rows))
    }

    /// Writes the baselines of several devices (insert or replace) in one transaction, on one
    /// short-lived connection.
    pub fn save_all(&self, rows: &Rows) -> Result<(), BaselineError> {
        let first = rows.first().map(|(id, _)| id.to_string()).unwrap_or_default();
        let err = |device: &str| {
            let path = self.path.clone();
            let device = device.to_owned();
            move |source| BaselineError::Save { device, path, source }
        };
        let mut conn = crate::db::open(&self.path).map_err(err(&first))?;
        conn.execute_batch(SCHEMA).map_err(err(&first))?;
        let tx = conn.transaction().map_err(err(&first))?;
        let now = i64::try_from(crate::clock::now_ms()).unwrap_or(i64::MAX);
        for (id, b) in rows {
            tx.execute(
                "INSERT INTO device_baselines (device_id, serial, firmware, uptime_s, seen_s, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (device_id) DO UPDATE SET serial = excluded.serial, firmware = excluded.firmware,
                     uptime_s = excluded.uptime_s, seen_s = excluded.seen_s, updated_ms = excluded.updated_ms",
                params![&**id, &*b.serial, &*b.firmware, to_i64(b.uptime_s), to_i64(b.seen_s), now],
            )
            .map_err(err(id))?;
        }
        tx.commit().map_err(err(&first))?;
        Ok(())
    }

    /// The stored row of one device, for tests and diagnostics.
    #[cfg(test)]
    pub fn get(&self, device: &str) -> Result<Option<(Baseline, i64)>, BaselineError> {
        use rusqlite::OptionalExtension;
        let err = |source| BaselineError::Load { path: self.path.clone(), source };
        let conn = crate::db::open(&self.path).map_err(err)?;
        conn.query_row(
            "SELECT serial, firmware, uptime_s, seen_s, updated_ms FROM device_baselines WHERE device_id = ?1",
            [device],
            |r| {
                Ok((
                    Baseline {
                        serial: r.get::<_, String>(0)?.into_boxed_str(),
                        firmware: r.get::<_, String>(1)?.into_boxed_str(),
                        uptime_s: r.get::<_, Option<i64>>(2)?.and_then(|x| u64::try_from(x).ok()),
                        seen_s: r.get::<_, Option<i64>>(3)?.and_then(|x| u64::try_from(x).ok()),
                    },
                    r.get(4)?,
                ))
            },
        )
        .optional()
        .map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::hikvision::Status;
    use crate::devices::{ErrorClass, Identity, ProbeResult, StateCache, Tier};
    use std::time::Duration;

    /// A management round of `cam-1` as the scheduler records it: identity and uptime, then the result.
    fn round(cache: &StateCache, serial: &str, uptime: u64, t_s: u64) -> Vec<String> {
        cache.update("cam-1", |s| {
            s.identity = Some(Box::new(Identity { serial: serial.into(), firmware: "V1".into(), ..Identity::default() }));
            s.health = Some(Box::new(Status { uptime_s: Some(uptime), ..Status::default() }));
        });
        let r =
            ProbeResult { tier: Tier::Management, class: ErrorClass::Ok, duration: Duration::from_millis(9), ts_ms: t_s * 1000 };
        cache.record("cam-1", r);
        cache.save_baselines();
        cache.drain_events(usize::MAX).into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn baselines_survive_a_restart_and_are_written_only_when_they_change() {
        let dir = std::env::temp_dir().join(format!("scs-baseline-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join(crate::db::DB_FILE);
        let t0 = 1_800_000_000;

        let cache = StateCache::with_baselines(&db);
        assert!(round(&cache, "SN1", 1000, t0).is_empty());
        let (store, _) = Store::load(&db).unwrap();
        let (b, written) = store.get("cam-1").unwrap().expect("first sight persisted");
        assert_eq!((&*b.serial, b.uptime_s, b.seen_s), ("SN1", Some(1000), Some(t0)));
        std::thread::sleep(Duration::from_millis(5));
        for i in 1..5 {
            assert!(round(&cache, "SN1", 1000 + i * 300, t0 + i * 300).is_empty());
        }
        assert_eq!(store.get("cam-1").unwrap().map(|r| r.1), Some(written), "unchanged values are not rewritten");
        drop(cache);

        // Restart without a change: nothing.
        let cache = StateCache::with_baselines(&db);
        assert!(round(&cache, "SN1", 1000 + 7200, t0 + 7200).is_empty());
        drop(cache);
        // Restart after the unit was swapped while the agent was down: `replaced`, once.
        let cache = StateCache::with_baselines(&db);
        assert_eq!(round(&cache, "SN2", 40, t0 + 7300), [scs_protocol::EventKind::REPLACED]);
        assert!(round(&cache, "SN2", 340, t0 + 7600).is_empty());
        drop(cache);
        assert_eq!(store.get("cam-1").unwrap().map(|r| r.0.serial), Some("SN2".into()));
        // And the restart after that one reports nothing again.
        let cache = StateCache::with_baselines(&db);
        assert!(round(&cache, "SN2", 940, t0 + 8200).is_empty());
        drop(cache);

        // A failed write keeps the change for the next tick.
        let cache = StateCache::with_baselines(&db);
        let aside = dir.join("moved.db");
        std::fs::rename(&db, &aside).unwrap();
        std::fs::create_dir(&db).unwrap(); // not a database: the write fails
        assert_eq!(round(&cache, "SN4", 10, t0 + 8300), [scs_protocol::EventKind::REPLACED]);
        std::fs::remove_dir(&db).unwrap();
        std::fs::rename(&aside, &db).unwrap();
        cache.save_baselines();
        assert_eq!(store.get("cam-1").unwrap().map(|r| r.0.serial), Some("SN4".into()));
        drop(cache);

        // An unreadable table: events run from memory, the agent does not stop.
        std::fs::write(&db, vec![0x42u8; 4096]).unwrap();
        let _ = std::fs::remove_file(dir.join("agent.db-wal"));
        let cache = StateCache::with_baselines(&db);
        assert!(round(&cache, "SN3", 10, t0 + 9000).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
