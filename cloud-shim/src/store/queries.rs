//! Read queries behind the HTTP API. JSON shapes are camelCase, as the portal expects.

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value as Json;

use super::{devices, StoreError};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SensorRow {
    pub id: String,
    #[serde(rename = "type")]
    pub sensor_type: String,
    pub parent_sensor_id: Option<String>,
    pub name: Option<String>,
    pub gateway_id: String,
    pub status: String,
    pub last_seen: Option<i64>,
    pub attrs: Json,
}

const SENSOR_COLUMNS: &str = "id, type, parent_sensor_id, name, gateway_id, status, last_seen, attrs";

fn sensor_row(r: &Row<'_>) -> rusqlite::Result<SensorRow> {
    let attrs: Option<String> = r.get(7)?;
    Ok(SensorRow {
        id: r.get(0)?,
        sensor_type: r.get(1)?,
        parent_sensor_id: r.get(2)?,
        name: r.get(3)?,
        gateway_id: r.get(4)?,
        status: r.get(5)?,
        last_seen: r.get(6)?,
        attrs: attrs.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_else(|| Json::Object(Default::default())),
    })
}

#[derive(Debug, Default, Clone)]
pub struct SensorFilter {
    pub gateway: Option<String>,
    pub sensor_type: Option<String>,
    pub parent: Option<String>,
}

/// At most `limit` sensors matching `f` with an id after `after` (keyset pagination), in id order.
pub fn list_sensors_page(
    conn: &Connection,
    f: &SensorFilter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<SensorRow>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SENSOR_COLUMNS} FROM sensors
         WHERE (?1 IS NULL OR gateway_id = ?1) AND (?2 IS NULL OR type = ?2) AND (?3 IS NULL OR parent_sensor_id = ?3)
           AND (?4 IS NULL OR id > ?4)
         ORDER BY id LIMIT ?5"
    ))?;
    let rows = stmt.query_map(params![f.gateway, f.sensor_type, f.parent, after, limit], sensor_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn get_sensor(conn: &Connection, id: &str) -> Result<Option<SensorRow>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {SENSOR_COLUMNS} FROM sensors WHERE id = ?1"))?
        .query_row([id], sensor_row)
        .optional()?)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    pub value: Json,
}

#[derive(Debug, Clone)]
pub struct MetricQuery {
    pub name: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: u32,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
}

/// Samples of one sensor in `[from, to]` (inclusive, ms), optionally one metric name.
pub fn metrics(conn: &Connection, sensor: &str, q: &MetricQuery) -> Result<Vec<Sample>, StoreError> {
    let order = if q.newest_first { "DESC" } else { "ASC" };
    // Two statements rather than `(?2 IS NULL OR name = ?2)`, which would keep SQLite off the
    // (sensor_id, name, ts) index and scan every metric of the sensor.
    let name_clause = if q.name.is_some() { "AND name = ?5" } else { "" };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT name, label, ts, value FROM metrics
         WHERE sensor_id = ?1 {name_clause} AND ts >= ?2 AND ts <= ?3
         ORDER BY ts {order}, rowid {order} LIMIT ?4"
    ))?;
    let from = q.from.unwrap_or(i64::MIN);
    let to = q.to.unwrap_or(i64::MAX);
    let row = |r: &Row<'_>| {
        let label: String = r.get(1)?;
        let value = match r.get_ref(3)? {
            ValueRef::Integer(i) => Json::from(i),
            ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Json::Number).unwrap_or(Json::Null),
            _ => Json::Null,
        };
        Ok(Sample { name: r.get(0)?, label: if label.is_empty() { None } else { Some(label) }, ts: r.get(2)?, value })
    };
    let rows = match &q.name {
        Some(name) => stmt.query_map(params![sensor, from, to, q.limit, name], row)?.collect::<Result<Vec<_>, _>>()?,
        None => stmt.query_map(params![sensor, from, to, q.limit], row)?.collect::<Result<Vec<_>, _>>()?,
    };
    Ok(rows)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectionRow {
    pub reason: String,
    pub count: i64,
    pub last_error: String,
    pub last_topic: String,
    pub first_at: i64,
    pub last_at: i64,
}

/// Durable rejection counts of one gateway (all shims sharing this store).
pub fn rejections(conn: &Connection, gateway: &str) -> Result<Vec<RejectionRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT reason, count, last_error, last_topic, first_at, last_at FROM rejections WHERE gateway_id = ?1 ORDER BY reason",
    )?;
    let rows = stmt.query_map([gateway], |r| {
        Ok(RejectionRow {
            reason: r.get(0)?,
            count: r.get(1)?,
            last_error: r.get(2)?,
            last_topic: r.get(3)?,
            first_at: r.get(4)?,
            last_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GapRow {
    pub boot: String,
    pub seq: i64,
    pub dropped: i64,
    pub first_seq: i64,
    pub last_seq: i64,
    pub received_at: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestTotals {
    /// Receipted messages stored for this gateway.
    pub messages: i64,
    pub gaps: Vec<GapRow>,
}

pub fn ingest_totals(conn: &Connection, gateway: &str) -> Result<IngestTotals, StoreError> {
    let messages =
        conn.prepare_cached("SELECT count(*) FROM ingest_receipts WHERE gateway_id = ?1")?.query_row([gateway], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(
        "SELECT boot, seq, dropped, first_seq, last_seq, received_at FROM gaps WHERE gateway_id = ?1
         ORDER BY received_at DESC LIMIT 100",
    )?;
    let gaps = stmt
        .query_map([gateway], |r| {
            Ok(GapRow {
                boot: r.get(0)?,
                seq: r.get(1)?,
                dropped: r.get(2)?,
                first_seq: r.get(3)?,
                last_seq: r.get(4)?,
                received_at: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(IngestTotals { messages, gaps })
}

/// Cheap liveness probe of the database.
pub fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("SELECT count(*) FROM d1_migrations", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// Device events of a sensor or gateway (`GET /v1/sensors/{id}/events`, `GET /v1/gateways/{id}/events`),
/// newest first: the answer body, `None` when neither the sensor nor any event exists.
pub fn events(
    conn: &Connection,
    of: devices::EventsOf,
    id: &str,
    since: Option<i64>,
    limit: u32,
) -> Result<Option<Json>, StoreError> {
    let j: String =
        conn.prepare_cached(&devices::events_sql(of))?.query_row(params![id, since.unwrap_or(i64::MIN), limit], |r| r.get(0))?;
    devices::events_body(of, id, since, limit, &j).map_err(StoreError::Json)
}

/// The newest health samples of the sensors in `scope` (`param`: its `?1`, see [`devices::Scope`]).
pub fn latest_samples(conn: &Connection, scope: devices::Scope, param: Option<&str>) -> Result<devices::Samples, StoreError> {
    let mut stmt = conn.prepare_cached(&devices::latest_samples_sql(scope))?;
    let j: String = match param {
        Some(p) => stmt.query_row([p], |r| r.get(0))?,
        None => stmt.query_row([], |r| r.get(0))?,
    };
    devices::parse_samples(&j).map_err(StoreError::Json)
}
