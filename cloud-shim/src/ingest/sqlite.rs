//! The local ingest backend: writes each group of messages in one SQLite transaction on the ingest
//! thread, with cached prepared statements. Idempotent on `(gateway, boot, seq)`: the
//! `ingest_receipts` primary key decides, inside the same transaction as the data it guards.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
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

/// Store rules that bound what one gateway can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sensors one gateway may own, its own row not counted.
    pub max_children: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_children: crate::config::DEFAULT_MAX_CHILDREN }
    }
}

pub struct SqliteIngest {
    conn: Connection,
    limits: Limits,
}

impl SqliteIngest {
    pub fn new(conn: Connection, limits: Limits) -> SqliteIngest {
        SqliteIngest { conn, limits }
    }
}

impl Backend for SqliteIngest {
    fn store(&mut self, items: &[Item]) -> Vec<Outcome> {
        match store_group(&mut self.conn, items, self.limits) {
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
pub fn store_group(conn: &mut Connection, items: &[Item], limits: Limits) -> Result<Vec<Outcome>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        outcomes.push(store_item(&tx, item, limits)?);
    }
    tx.commit()?;
    Ok(outcomes)
}

fn store_item(tx: &Transaction<'_>, item: &Item, limits: Limits) -> Result<Outcome, rusqlite::Error> {
    let (gateway, msg) = match &item.decoded {
        Decoded::Invalid(r) => {
            record_rejection(tx, r, &item.topic, item.received_at)?;
            return Ok(Outcome::Rejected { reason: r.reason.to_owned(), error: r.error.clone() });
        }
        Decoded::Valid { gateway, msg } => (gateway.as_str(), msg),
    };
    // A savepoint per message: a failing message is undone alone and the rest of the group commits.
    tx.execute_batch("SAVEPOINT item")?;
    let mut ctx = Ctx { tx, gateway, now: item.received_at, topic: &item.topic, limits };
    match apply(&mut ctx, msg) {
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

/// What storing one message needs to know.
struct Ctx<'a, 't> {
    tx: &'a Transaction<'t>,
    gateway: &'a str,
    now: i64,
    topic: &'a str,
    limits: Limits,
}

/// May `ctx.gateway` write about `sensor`?
enum Claim {
    /// Its own sensor (or a new one within its limit).
    Own,
    /// Refused: counted under `reason`.
    Refused { reason: &'static str, error: String },
}

/// A sensor belongs to the gateway that first announced it (a gateway's own id belongs to that gateway
/// even before it is first heard); another gateway can neither write its samples nor take it over.
fn claim_sensor(ctx: &Ctx<'_, '_>, sensor: &str) -> Result<Claim, rusqlite::Error> {
    let gateway = ctx.gateway;
    let owner: Option<String> =
        ctx.tx.prepare_cached("SELECT gateway_id FROM sensors WHERE id = ?1")?.query_row([sensor], |r| r.get(0)).optional()?;
    match owner {
        Some(o) if o == gateway => Ok(Claim::Own),
        Some(o) => {
            Ok(Claim::Refused { reason: "sensor_owner", error: format!("sensor {sensor} belongs to gateway {o}, not {gateway}") })
        }
        None if sensor == gateway => Ok(Claim::Own),
        None => {
            if crate::identity::registry::is_gateway(ctx.tx, sensor)? {
                return Ok(Claim::Refused {
                    reason: "sensor_owner",
                    error: format!("sensor id {sensor} is another gateway's id; {gateway} cannot announce it"),
                });
            }
            let owned: i64 = ctx
                .tx
                .prepare_cached("SELECT count(*) FROM sensors WHERE gateway_id = ?1 AND id <> ?1")?
                .query_row([gateway], |r| r.get(0))?;
            if usize::try_from(owned).unwrap_or(usize::MAX) >= ctx.limits.max_children {
                return Ok(Claim::Refused {
                    reason: "too_many_sensors",
                    error: format!(
                        "gateway {gateway} already has {owned} sensors (limit {}); new sensor {sensor} refused",
                        ctx.limits.max_children
                    ),
                });
            }
            Ok(Claim::Own)
        }
    }
}

/// Counts a refused part of a message (the rest of the message is stored).
fn refuse_part(ctx: &Ctx<'_, '_>, reason: &'static str, error: String) -> Result<(), rusqlite::Error> {
    log::warn!("{error} (topic {:.200})", ctx.topic);
    let r = Rejection { gateway: ctx.gateway.to_owned(), reason, error, receipt: None };
    record_rejection(ctx.tx, &r, ctx.topic, ctx.now)
}

fn apply(ctx: &mut Ctx<'_, '_>, msg: &Uplink) -> Result<Outcome, ItemError> {
    let (tx, gateway, now) = (ctx.tx, ctx.gateway, ctx.now);
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
        Uplink::Telemetry(b) => store_telemetry(ctx, b)?,
        Uplink::Inventory(inv) => store_inventory(ctx, inv)?,
        Uplink::Command(u) => apply_update(tx, gateway, u).map_err(ItemError::Command)?,
        Uplink::Status(_) => {}
    }
    Ok(Outcome::Stored)
}

fn store_telemetry(ctx: &Ctx<'_, '_>, b: &TelemetryBatch) -> Result<(), rusqlite::Error> {
    let (tx, gateway, now) = (ctx.tx, ctx.gateway, ctx.now);
    let mut metric =
        tx.prepare_cached("INSERT INTO metrics (sensor_id, name, label, ts, value, gateway_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
    // Per sensor of this batch: may its samples be stored?
    let mut claimed: HashMap<&str, bool> = HashMap::new();
    let allowed = |sensor: &str, claimed: &HashMap<&str, bool>| -> Result<bool, rusqlite::Error> {
        if let Some(a) = claimed.get(sensor) {
            return Ok(*a);
        }
        let a = match claim_sensor(ctx, sensor)? {
            Claim::Own => {
                touch_sensor(tx, gateway, sensor, now)?;
                true
            }
            Claim::Refused { reason, error } => {
                refuse_part(ctx, reason, error)?;
                false
            }
        };
        Ok(a)
    };
    for d in &b.devices {
        let ok = allowed(&d.sensor, &claimed)?;
        claimed.insert(&d.sensor, ok);
        if !ok {
            continue;
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
    if let Some(events) = &b.events {
        let mut insert = tx.prepare_cached(
            "INSERT INTO device_events (gateway_id, boot, seq, idx, sensor_id, ts, kind, detail, attrs, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
        )?;
        let (boot, seq) = (boot_hex(b.boot), i64::try_from(b.seq).unwrap_or(i64::MAX));
        for (idx, e) in events.iter().enumerate() {
            let ok = allowed(&e.sensor, &claimed)?;
            claimed.insert(&e.sensor, ok);
            if !ok {
                continue;
            }
            let attrs = e.attrs.as_ref().and_then(|a| serde_json::to_string(a).ok());
            insert.execute(params![
                gateway,
                boot,
                seq,
                i64::try_from(idx).unwrap_or(i64::MAX),
                e.sensor,
                i64::try_from(e.ts).unwrap_or(i64::MAX),
                e.kind,
                e.detail,
                attrs,
                now
            ])?;
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
         ON CONFLICT (id) DO UPDATE SET last_seen = max(coalesce(sensors.last_seen, 0), excluded.last_seen)
         WHERE sensors.gateway_id = excluded.gateway_id",
    )?
    .execute(params![sensor, placeholder_type, gateway, now])?;
    Ok(())
}

fn store_inventory(ctx: &Ctx<'_, '_>, inv: &Inventory) -> Result<(), rusqlite::Error> {
    let (tx, gateway, now) = (ctx.tx, ctx.gateway, ctx.now);
    // A gateway's seqs grow across boots, so an inventory older than the one that last described the
    // sensor (a replay, or one processed late by another shim) does not overwrite it.
    let mut upsert = tx.prepare_cached(
        "INSERT INTO sensors (id, type, parent_sensor_id, name, attrs, gateway_id, status, last_seen, announced_seq,
                              created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'unknown', ?7, ?8, ?7, ?7)
         ON CONFLICT (id) DO UPDATE SET type = excluded.type, parent_sensor_id = excluded.parent_sensor_id,
             name = excluded.name, attrs = excluded.attrs,
             last_seen = max(coalesce(sensors.last_seen, 0), excluded.last_seen),
             announced_seq = excluded.announced_seq, updated_at = excluded.updated_at
         WHERE sensors.gateway_id = excluded.gateway_id
             AND (sensors.announced_seq IS NULL OR excluded.announced_seq >= sensors.announced_seq)",
    )?;
    let seq = i64::try_from(inv.seq).unwrap_or(i64::MAX);
    for s in &inv.sensors {
        // Never re-parents across gateways: the sensor and its parent must both be this gateway's.
        if let Claim::Refused { reason, error } = claim_sensor(ctx, &s.id)? {
            refuse_part(ctx, reason, error)?;
            continue;
        }
        if let Some(parent) = s.parent.as_deref().filter(|p| *p != s.id) {
            if let Claim::Refused { error, .. } = claim_sensor(ctx, parent)? {
                refuse_part(ctx, "sensor_owner", format!("sensor {} under parent {parent}: {error}", s.id))?;
                continue;
            }
        }
        let attrs = inv.stored_attrs(s);
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
             updated_at = excluded.updated_at
         WHERE sensors.gateway_id = excluded.gateway_id",
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

/// Used by tests that feed the store directly: signs `payload` as the gateway in `topic` (provisioning
/// it with a test key first) and stores it with the default limits.
#[cfg(test)]
pub fn ingest_now(conn: &mut Connection, topic: &str, payload: Vec<u8>) -> Outcome {
    let item = crate::identity::test_support::signed_item(conn, topic, &payload, 1);
    store_group(conn, std::slice::from_ref(&item), Limits::default()).unwrap().remove(0)
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
    fn device_events_are_stored_once_and_only_for_own_sensors() {
        let dir = TestDir::new("ingest-events");
        let store = Store::open(dir.path()).unwrap();
        let mut conn = store.connect().unwrap();
        let inv = inventory("gw-2", 1, vec![sensor("gw-2", "EDGE_CONTROLLER", None), sensor("cam-x", "CAMERA", Some("gw-2"))]);
        assert_eq!(ingest_now(&mut conn, &topic("gw-2", TopicKind::Inventory), encode(&inv)), Outcome::Stored);
        let t = topic("gw-1", TopicKind::Telemetry);
        let mut b = batch(1);
        let mut replaced = scs_protocol::DeviceEvent::new("cam-1", 1_700_000_000_500, scs_protocol::EventKind::REPLACED);
        replaced.detail = Some("serial A -> B".into());
        replaced.attrs = Some([("old".to_owned(), "A".to_owned()), ("new".to_owned(), "B".to_owned())].into());
        // An event for a sensor without samples in the batch (nvr-1), and one for another gateway's.
        b.events = Some(vec![
            replaced,
            scs_protocol::DeviceEvent::new("nvr-1", 1_700_000_000_600, scs_protocol::EventKind::HDD_FAILED),
            scs_protocol::DeviceEvent::new("cam-x", 1_700_000_000_700, scs_protocol::EventKind::WENT_DOWN),
        ]);
        assert_eq!(ingest_now(&mut conn, &t, encode(&b)), Outcome::Stored);
        assert_eq!(ingest_now(&mut conn, &t, encode(&b)), Outcome::Duplicate);
        assert_eq!(count(&conn, "SELECT count(*) FROM device_events"), 2);
        let (kind, detail, attrs): (String, String, String) = conn
            .query_row("SELECT kind, detail, attrs FROM device_events WHERE sensor_id = 'cam-1'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((kind.as_str(), detail.as_str()), ("device.replaced", "serial A -> B"));
        assert_eq!(attrs, r#"{"new":"B","old":"A"}"#);
        assert_eq!(count(&conn, "SELECT count(*) FROM sensors WHERE id = 'nvr-1' AND gateway_id = 'gw-1'"), 1);
        assert_eq!(count(&conn, "SELECT count(*) FROM device_events WHERE sensor_id = 'cam-x'"), 0);
        assert_eq!(count(&conn, "SELECT count FROM rejections WHERE gateway_id = 'gw-1' AND reason = 'sensor_owner'"), 1);
    }

    #[test]
    fn duplicates_inside_one_group_store_once() {
        let dir = TestDir::new("ingest-group");
        let store = Store::open(dir.path()).unwrap();
        let mut conn = store.connect().unwrap();
        let t = topic("gw-1", TopicKind::Telemetry);
        let items: Vec<Item> = [1u64, 1, 2]
            .iter()
            .map(|s| crate::identity::test_support::signed_item(&mut conn, &t, &encode(&batch(*s)), 1))
            .collect();
        let out = store_group(&mut conn, &items, Limits::default()).unwrap();
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

    fn inventory(gw: &str, seq: u64, sensors: Vec<SensorInfo>) -> Inventory {
        Inventory { v: 1, gateway: gw.into(), boot: 1, seq, ts: 1, sensors, agent: None }
    }

    fn sensor(id: &str, ty: &str, parent: Option<&str>) -> SensorInfo {
        SensorInfo { id: id.into(), sensor_type: ty.into(), parent: parent.map(str::to_owned), name: None, attrs: None }
    }

    #[test]
    fn sensors_belong_to_one_gateway() {
        let dir = TestDir::new("ingest-owner");
        let store = Store::open(dir.path()).unwrap();
        let mut conn = store.connect().unwrap();
        crate::identity::test_support::provision(&mut conn, "gw-3");
        let inv1 = inventory("gw-1", 1, vec![sensor("gw-1", "EDGE_CONTROLLER", None), sensor("cam-1", "CAMERA", Some("gw-1"))]);
        assert_eq!(ingest_now(&mut conn, &topic("gw-1", TopicKind::Inventory), encode(&inv1)), Outcome::Stored);
        // "evil" writes samples for gw-1 and cam-1 plus its own sensor: only its own are stored.
        let mut b = TelemetryBatch::new("evil", 7, 1, 1);
        for s in ["gw-1", "cam-1", "evil"] {
            b.devices.push(DeviceReport { sensor: s.into(), ts: 1, metrics: vec![Metric::new("cpu.usage_pct", 99.0)] });
        }
        assert_eq!(ingest_now(&mut conn, &topic("evil", TopicKind::Telemetry), encode(&b)), Outcome::Stored);
        assert_eq!(count(&conn, "SELECT count(*) FROM metrics WHERE gateway_id = 'evil'"), 1);
        assert_eq!(count(&conn, "SELECT count(*) FROM metrics WHERE sensor_id IN ('gw-1', 'cam-1')"), 0);
        // Its inventory cannot re-parent or retype them, nor claim a provisioned gateway's id.
        let takeover = inventory(
            "evil",
            2,
            vec![
                sensor("gw-1", "CAMERA", Some("evil")),
                sensor("cam-1", "CAMERA", Some("evil")),
                sensor("gw-3", "CAMERA", None),
                sensor("cam-9", "CAMERA", Some("cam-1")),
            ],
        );
        assert_eq!(ingest_now(&mut conn, &topic("evil", TopicKind::Inventory), encode(&takeover)), Outcome::Stored);
        let (ty, gw): (String, String) =
            conn.query_row("SELECT type, gateway_id FROM sensors WHERE id = 'gw-1'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((ty.as_str(), gw.as_str()), ("EDGE_CONTROLLER", "gw-1"));
        let parent: String = conn.query_row("SELECT parent_sensor_id FROM sensors WHERE id = 'cam-1'", [], |r| r.get(0)).unwrap();
        assert_eq!(parent, "gw-1");
        assert_eq!(count(&conn, "SELECT count(*) FROM sensors WHERE id IN ('gw-3', 'cam-9')"), 0);
        assert_eq!(count(&conn, "SELECT count FROM rejections WHERE gateway_id = 'evil' AND reason = 'sensor_owner'"), 6);
    }

    #[test]
    fn children_per_gateway_are_limited() {
        let dir = TestDir::new("ingest-limit");
        let store = Store::open(dir.path()).unwrap();
        let mut conn = store.connect().unwrap();
        let t = topic("gw-1", TopicKind::Inventory);
        let sensors: Vec<SensorInfo> = std::iter::once(sensor("gw-1", "EDGE_CONTROLLER", None))
            .chain((0..5).map(|i| sensor(&format!("cam-{i}"), "CAMERA", Some("gw-1"))))
            .collect();
        let item = crate::identity::test_support::signed_item(&mut conn, &t, &encode(&inventory("gw-1", 1, sensors)), 1);
        let out = store_group(&mut conn, &[item], Limits { max_children: 3 }).unwrap();
        assert_eq!(out, vec![Outcome::Stored]);
        assert_eq!(count(&conn, "SELECT count(*) FROM sensors WHERE gateway_id = 'gw-1'"), 4, "itself + 3 children");
        assert_eq!(count(&conn, "SELECT count FROM rejections WHERE reason = 'too_many_sensors'"), 2);
    }
}
