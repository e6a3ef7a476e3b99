//! The local ingest backend: writes each group of messages in one SQLite transaction on the ingest
//! thread, with cached prepared statements. Idempotent on `(gateway, boot, seq)`: the
//! `ingest_receipts` primary key decides, inside the same transaction as the data it guards.

use std::collections::{BTreeMap, HashSet};

use rusqlite::{params, Connection, Transaction, TransactionBehavior};
use scs_protocol::{GatewayState, Inventory, MetricValue, SensorType, TelemetryBatch, Uplink};

use super::{Backend, Decoded, Item, Outcome};
use crate::commands::store::{apply_update, CommandStoreError};
use crate::rejection::Rejection;
use crate::store::boot_hex;

const MAX_STORED_TEXT: usize = 300;

/// Why one message could not be applied. SQL errors roll back that message only (it is not
/// receipted, so the agent retries); command-store errors reject it for good.
enum ItemError {
    Sql(rusqlite::Error),
    Command(CommandStoreError),
}

impl From<rusqlite::Error> for ItemError {
    fn from(e: rusqlite::Error) -> Self {
        ItemError::Sql(e)
    }
}

pub struct SqliteIngest {
    conn: Connection,
}

impl SqliteIngest {
    pub fn new(conn: Connection) -> SqliteIngest {
        SqliteIngest { conn }
    }
}

impl Backend for SqliteIngest {
    fn store(&mut self, items: &[Item]) -> Vec<Outcome> {
        match store_group(&mut self.conn, items) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                log::error!("ingest transaction of {} messages failed: {e}", items.len());
                vec![Outcome::Failed { error: format!("store: {e}") }; items.len()]
            }
        }
    }
}

/// Stores a group in one immediate transaction; one outcome per item. Outcomes are final only once
/// this returns `Ok` (the commit happened).
pub fn store_group(conn: &mut Connection, items: &[Item]) -> Result<Vec<Outcome>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        outcomes.push(store_item(&tx, item)?);
    }
    tx.commit()?;
    Ok(outcomes)
}

fn store_item(tx: &Transaction<'_>, item: &Item) -> Result<Outcome, rusqlite::Error> {
    let (gateway, msg) = match &item.decoded {
        Decoded::Invalid(r) => {
            record_rejection(tx, r, &item.topic, item.received_at)?;
            return Ok(Outcome::Rejected { reason: r.reason.to_owned(), error: r.error.clone() });
        }
        Decoded::Valid { gateway, msg } => (gateway.as_str(), msg),
    };
    // A savepoint per message: a failing message is undone alone and the rest of the group commits.
    tx.execute_batch("SAVEPOINT item")?;
    match apply(tx, gateway, msg, item.received_at) {
        Ok(outcome) => {
            tx.execute_batch("RELEASE item")?;
            Ok(outcome)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO item; RELEASE item")?;
            match e {
                ItemError::Sql(e) => Ok(Outcome::Failed { error: format!("store: {e}") }),
                ItemError::Command(e) => {
                    let r =
                        Rejection { gateway: gateway.to_owned(), reason: "command_update", error: e.to_string(), receipt: None };
                    record_rejection(tx, &r, &item.topic, item.received_at)?;
                    Ok(Outcome::Rejected { reason: r.reason.to_owned(), error: r.error })
                }
            }
        }
    }
}

fn apply(tx: &Transaction<'_>, gateway: &str, msg: &Uplink, now: i64) -> Result<Outcome, ItemError> {
    let (boot, seq, kind) = match msg {
        Uplink::Status(s) => {
            set_gateway_status(tx, gateway, s.state, now)?;
            return Ok(Outcome::Stored);
        }
        Uplink::Telemetry(m) => (m.boot, m.seq, "telemetry"),
        Uplink::Inventory(m) => (m.boot, m.seq, "inventory"),
        Uplink::Command(m) => (m.boot, m.seq, "command"),
    };
    let seq = i64::try_from(seq).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(2, seq as i64))?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO ingest_receipts (gateway_id, boot, seq, kind, received_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![gateway, boot_hex(boot), seq, kind, now])?;
    if inserted == 0 {
        return Ok(Outcome::Duplicate);
    }
    match msg {
        Uplink::Telemetry(b) => store_telemetry(tx, gateway, b, now)?,
        Uplink::Inventory(inv) => store_inventory(tx, gateway, inv, now)?,
        Uplink::Command(u) => apply_update(tx, gateway, u).map_err(ItemError::Command)?,
        Uplink::Status(_) => {}
    }
    Ok(Outcome::Stored)
}

fn store_telemetry(tx: &Transaction<'_>, gateway: &str, b: &TelemetryBatch, now: i64) -> Result<(), rusqlite::Error> {
    let mut metric =
        tx.prepare_cached("INSERT INTO metrics (sensor_id, name, label, ts, value, gateway_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    let mut touched: HashSet<&str> = HashSet::new();
    for d in &b.devices {
        if touched.insert(&d.sensor) {
            touch_sensor(tx, gateway, &d.sensor, now)?;
        }
        let ts = i64::try_from(d.ts).unwrap_or(i64::MAX);
        for m in &d.metrics {
            let label = m.label.as_deref().unwrap_or("");
            let name = m.key.name();
            match m.value {
                MetricValue::Int(i) => metric.execute(params![d.sensor, name, label, ts, i, gateway])?,
                // SQLite stores NaN as NULL; a sample that is not a number carries no information.
                MetricValue::Float(f) if f.is_nan() => continue,
                MetricValue::Float(f) => metric.execute(params![d.sensor, name, label, ts, f, gateway])?,
            };
        }
    }
    if let Some(g) = b.gap {
        tx.prepare_cached(
            "INSERT INTO gaps (gateway_id, boot, seq, dropped, first_seq, last_seq, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            gateway,
            boot_hex(b.boot),
            i64::try_from(b.seq).unwrap_or(i64::MAX),
            i64::try_from(g.dropped).unwrap_or(i64::MAX),
            i64::try_from(g.first_seq).unwrap_or(i64::MAX),
            i64::try_from(g.last_seq).unwrap_or(i64::MAX),
            now
        ])?;
        log::warn!("gateway {gateway} reports {} dropped messages (seq {}..={})", g.dropped, g.first_seq, g.last_seq);
    }
    Ok(())
}

/// Marks a sensor seen, creating a placeholder row when telemetry arrives before inventory.
fn touch_sensor(tx: &Transaction<'_>, gateway: &str, sensor: &str, now: i64) -> Result<(), rusqlite::Error> {
    let placeholder_type = if sensor == gateway { SensorType::EDGE_CONTROLLER } else { "UNKNOWN" };
    tx.prepare_cached(
        "INSERT INTO sensors (id, type, gateway_id, status, last_seen, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'unknown', ?4, ?4, ?4)
         ON CONFLICT (id) DO UPDATE SET last_seen = max(coalesce(sensors.last_seen, 0), excluded.last_seen)",
    )?
    .execute(params![sensor, placeholder_type, gateway, now])?;
    Ok(())
}

fn store_inventory(tx: &Transaction<'_>, gateway: &str, inv: &Inventory, now: i64) -> Result<(), rusqlite::Error> {
    // A gateway's seqs grow across boots, so an inventory older than the one that last described the
    // sensor (a replay, or one processed late by another shim) does not overwrite it.
    let mut upsert = tx.prepare_cached(
        "INSERT INTO sensors (id, type, parent_sensor_id, name, attrs, gateway_id, status, last_seen, announced_seq,
                              created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'unknown', ?7, ?8, ?7, ?7)
         ON CONFLICT (id) DO UPDATE SET type = excluded.type, parent_sensor_id = excluded.parent_sensor_id,
             name = excluded.name, attrs = excluded.attrs, gateway_id = excluded.gateway_id,
             last_seen = max(coalesce(sensors.last_seen, 0), excluded.last_seen),
             announced_seq = excluded.announced_seq, updated_at = excluded.updated_at
         WHERE sensors.gateway_id <> excluded.gateway_id OR sensors.announced_seq IS NULL
             OR excluded.announced_seq >= sensors.announced_seq",
    )?;
    let seq = i64::try_from(inv.seq).unwrap_or(i64::MAX);
    for s in &inv.sensors {
        let mut attrs: BTreeMap<String, String> = s.attrs.clone().unwrap_or_default();
        // The agent's own description rides on the gateway's sensor row.
        if s.id == gateway {
            if let Some(a) = &inv.agent {
                attrs.insert("agentVersion".into(), a.version.clone());
                attrs.insert("arch".into(), a.arch.clone());
                if let Some(os) = &a.os {
                    attrs.insert("os".into(), os.clone());
                }
                if let Some(h) = &a.hostname {
                    attrs.insert("hostname".into(), h.clone());
                }
            }
        }
        let attrs = if attrs.is_empty() { None } else { serde_json::to_string(&attrs).ok() };
        upsert.execute(params![s.id, s.sensor_type, s.parent, s.name, attrs, gateway, now, seq])?;
    }
    Ok(())
}

/// An offline status (the Last Will, or a retained one replayed when the shim subscribes) says nothing
/// about when the gateway was last heard, so it leaves `last_seen` alone.
fn set_gateway_status(tx: &Transaction<'_>, gateway: &str, state: GatewayState, now: i64) -> Result<(), rusqlite::Error> {
    let seen = (state == GatewayState::Online).then_some(now);
    tx.prepare_cached(
        "INSERT INTO sensors (id, type, gateway_id, status, last_seen, created_at, updated_at)
         VALUES (?1, 'EDGE_CONTROLLER', ?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status,
             last_seen = CASE WHEN excluded.last_seen IS NULL THEN sensors.last_seen
                              ELSE max(coalesce(sensors.last_seen, 0), excluded.last_seen) END,
             updated_at = excluded.updated_at",
    )?
    .execute(params![gateway, state.as_str(), seen, now])?;
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_STORED_TEXT).collect()
}

fn record_rejection(tx: &Transaction<'_>, r: &Rejection, topic: &str, now: i64) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO rejections (gateway_id, reason, count, last_error, last_topic, first_at, last_at)
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?5)
         ON CONFLICT (gateway_id, reason) DO UPDATE SET count = rejections.count + 1,
             last_error = excluded.last_error, last_topic = excluded.last_topic, last_at = excluded.last_at",
    )?
    .execute(params![r.gateway, r.reason, clip(&r.error), clip(topic), now])?;
    Ok(())
}

/// Used by tests and benches that feed the store directly.
#[cfg(test)]
pub fn ingest_now(conn: &mut Connection, topic: &str, payload: Vec<u8>) -> Outcome {
    let item = Item::decode(topic.to_owned(), payload, super::Origin::Mqtt, crate::clock::now_ms());
    store_group(conn, std::slice::from_ref(&item)).unwrap().remove(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::TestDir;
    use crate::store::Store;
    use scs_protocol::telemetry::Gap;
    use scs_protocol::topics::topic;
    use scs_protocol::{encode, DeviceReport, Metric, SensorInfo, TopicKind};

    fn batch(seq: u64) -> TelemetryBatch {
        let mut b = TelemetryBatch::new("gw-1", 0xdead_beef_0000_0001, seq, 1_700_000_000_000);
        b.devices.push(DeviceReport {
            sensor: "gw-1".into(),
            ts: 1_700_000_000_000 + seq,
            metrics: vec![Metric::new("cpu.usage_pct", 12.5), Metric::labelled("net.rx_bytes", "eth0", 123_456_789u64)],
        });
        b.devices.push(DeviceReport {
            sensor: "cam-1".into(),
            ts: 1_700_000_000_000,
            metrics: vec![Metric::new("camera.fps", 25i64)],
        });
        b
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn telemetry_is_stored_once_and_replays_are_duplicates() {
        let dir = TestDir::new("ingest");
        let store = Store::open(dir.path()).unwrap();
        let mut conn = store.connect().unwrap();
        let t = topic("gw-1", TopicKind::Telemetry);
        assert_eq!(ingest_now(&mut conn, &t, encode(&batch(1))), Outcome::Stored);
        assert_eq!(ingest_now(&mut conn, &t, encode(&batch(1))), Outcome::Duplicate);
        assert_eq!(ingest_now(&mut conn, &t, encode(&batch(2))), Outcome::Stored);
        assert_eq!(count(&conn, "SELECT count(*) FROM metrics"), 6);
        assert_eq!(count(&conn, "SELECT count(*) FROM ingest_receipts"), 2);
        let v: i64 = conn
            .query_row("SELECT value FROM metrics WHERE name = 'net.rx_bytes' AND label = 'eth0' LIMIT 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 123_456_789, "integer samples stay exact");
        let (ty, gw): (String, String) =
            conn.query_row("SELECT type, gateway_id FROM sensors WHERE id = 'gw-1'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((ty.as_str(), gw.as_str()), ("EDGE_CONTROLLER", "gw-1"));
    }

    #[test]
    fn duplicates_inside_one_group_store_once() {
        let dir = TestDir::new("ingest-group");
        let store = Store::open(dir.path()).unwrap();
        let mut conn = store.connect().unwrap();
        let t = topic("gw-1", TopicKind::Telemetry);
        let items: Vec<Item> =
            [1u64, 1, 2].iter().map(|s| Item::decode(t.clone(), encode(&batch(*s)), crate::ingest::Origin::Mqtt, 1)).collect();
        let out = store_group(&mut conn, &items).unwrap();
        assert_eq!(out, vec![Outcome::Stored, Outcome::Duplicate, Outcome::Stored]);
        assert_eq!(count(&conn, "SELECT count(*) FROM metrics"), 6);
    }

    #[test]
    fn inventory_gap_status_and_rejections() {
        let dir = TestDir::new("ingest-inv");
        let store = Store::open(dir.path()).unwrap();
        let mut conn = store.connect().unwrap();
        let inv = Inventory {
            v: 1,
            gateway: "gw-1".into(),
            boot: 1,
            seq: 10,
            ts: 1,
            sensors: vec![
                SensorInfo {
                    id: "gw-1".into(),
                    sensor_type: "EDGE_CONTROLLER".into(),
                    parent: None,
                    name: Some("Gateway".into()),
                    attrs: None,
                },
                SensorInfo {
                    id: "cam-1".into(),
                    sensor_type: "CAMERA".into(),
                    parent: Some("gw-1".into()),
                    name: None,
                    attrs: Some([("vendor".to_owned(), "acme".to_owned())].into()),
                },
            ],
            agent: Some(scs_protocol::AgentInfo { version: "0.1.0".into(), arch: "armv7".into(), os: None, hostname: None }),
        };
        assert_eq!(ingest_now(&mut conn, &topic("gw-1", TopicKind::Inventory), encode(&inv)), Outcome::Stored);
        let (parent, attrs): (String, String) = conn
            .query_row("SELECT parent_sensor_id, attrs FROM sensors WHERE id = 'cam-1'", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(parent, "gw-1");
        assert_eq!(attrs, r#"{"vendor":"acme"}"#);

        // An older inventory (lower seq) arriving late changes nothing; a newer one does.
        let mut old = inv.clone();
        old.seq = 5;
        old.sensors[1].name = Some("stale".into());
        assert_eq!(ingest_now(&mut conn, &topic("gw-1", TopicKind::Inventory), encode(&old)), Outcome::Stored);
        let name: Option<String> = conn.query_row("SELECT name FROM sensors WHERE id = 'cam-1'", [], |r| r.get(0)).unwrap();
        assert_eq!(name, None);
        let mut newer = inv.clone();
        newer.seq = 12;
        newer.sensors[1].name = Some("Gate".into());
        assert_eq!(ingest_now(&mut conn, &topic("gw-1", TopicKind::Inventory), encode(&newer)), Outcome::Stored);
        let name: Option<String> = conn.query_row("SELECT name FROM sensors WHERE id = 'cam-1'", [], |r| r.get(0)).unwrap();
        assert_eq!(name.as_deref(), Some("Gate"));

        let mut b = batch(11);
        b.gap = Some(Gap { dropped: 3, first_seq: 4, last_seq: 6 });
        assert_eq!(ingest_now(&mut conn, &topic("gw-1", TopicKind::Telemetry), encode(&b)), Outcome::Stored);
        assert_eq!(count(&conn, "SELECT dropped FROM gaps"), 3);

        let st =
            scs_protocol::Status { v: 1, gateway: "gw-1".into(), state: GatewayState::Online, boot: 1, ts: 1, version: None };
        assert_eq!(ingest_now(&mut conn, &topic("gw-1", TopicKind::Status), encode(&st)), Outcome::Stored);
        let status: String = conn.query_row("SELECT status FROM sensors WHERE id = 'gw-1'", [], |r| r.get(0)).unwrap();
        assert_eq!(status, "online");

        for _ in 0..2 {
            let o = ingest_now(&mut conn, &topic("gw-1", TopicKind::Telemetry), b"garbage".to_vec());
            assert!(matches!(o, Outcome::Rejected { ref reason, .. } if reason == "malformed"), "{o:?}");
        }
        assert_eq!(count(&conn, "SELECT count FROM rejections WHERE gateway_id = 'gw-1' AND reason = 'malformed'"), 2);
    }
}
