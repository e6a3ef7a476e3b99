//! `GET /v1/fleet`: one row per gateway with what an operator's fleet view needs (status, last seen, queue
//! backlog, gaps, rejections, open commands, children counted by status), so a fleet of 1,000 gateways
//! renders from one request instead of several per gateway.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json_};

use super::error::ApiError;
use crate::state::AppState;
pub use crate::store::devices::ChildCounts;
use crate::store::{devices, queries, StoreError};

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/fleet", get(fleet)).route("/v1/gateways/{id}/devices", get(devices))
}

#[derive(Debug, Deserialize)]
struct FleetParams {
    /// Only gateways whose id or name contains this text (case-insensitive).
    q: Option<String>,
    /// Only gateways with this stored status (online, offline, unknown).
    status: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GapTotals {
    /// Gap reports received.
    pub reports: i64,
    /// Messages the agent dropped, summed over the reports.
    pub dropped: i64,
    pub last_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backlog {
    /// Latest `agent.queue_depth` sample: messages waiting in the agent's outbox.
    pub queue_depth: Option<Json_>,
    /// Latest `agent.queue_bytes` sample.
    pub queue_bytes: Option<Json_>,
    pub ts: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetRow {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
    pub last_seen: Option<i64>,
    pub attrs: Json_,
    pub backlog: Option<Backlog>,
    pub gaps: GapTotals,
    pub rejected: i64,
    pub open_commands: i64,
    pub children: ChildCounts,
}

fn json_number(v: ValueRef<'_>) -> Option<Json_> {
    match v {
        ValueRef::Integer(i) => Some(Json_::from(i)),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map(Json_::Number),
        _ => None,
    }
}

/// Every gateway (a sensor without a parent) with its summary, ordered by id. A handful of grouped
/// queries over the whole store rather than one query per gateway.
pub fn fleet_rows(conn: &Connection) -> Result<Vec<FleetRow>, StoreError> {
    // Children's counts and problems: the shared rules over one samples query for every child.
    let samples = queries::latest_samples(conn, devices::Scope::AllChildren, None)?;
    let children_j: String = conn.prepare_cached(devices::CHILDREN_SQL)?.query_row([], |r| r.get(0))?;
    let mut children = devices::child_counts(&children_j, &samples).map_err(StoreError::Json)?;
    let mut gaps: HashMap<String, GapTotals> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT gateway_id, count(*), coalesce(sum(dropped), 0), max(received_at) FROM gaps GROUP BY gateway_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            gaps.insert(r.get(0)?, GapTotals { reports: r.get(1)?, dropped: r.get(2)?, last_at: r.get(3)? });
        }
    }
    let mut rejected: HashMap<String, i64> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached("SELECT gateway_id, sum(count) FROM rejections GROUP BY gateway_id")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            rejected.insert(r.get(0)?, r.get(1)?);
        }
    }
    let mut open: HashMap<String, i64> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT gateway_id, count(*) FROM commands WHERE state IN ('queued', 'delivered', 'accepted', 'running')
             GROUP BY gateway_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            open.insert(r.get(0)?, r.get(1)?);
        }
    }
    // Latest backlog samples through the (sensor_id, name, ts) index: one index seek per gateway.
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.name, s.status, s.last_seen, s.attrs,
            (SELECT m.ts FROM metrics m WHERE m.sensor_id = s.id AND m.name = 'agent.queue_depth' ORDER BY m.ts DESC LIMIT 1),
            (SELECT m.value FROM metrics m WHERE m.sensor_id = s.id AND m.name = 'agent.queue_depth' ORDER BY m.ts DESC LIMIT 1),
            (SELECT m.value FROM metrics m WHERE m.sensor_id = s.id AND m.name = 'agent.queue_bytes' ORDER BY m.ts DESC LIMIT 1)
         FROM sensors s WHERE s.parent_sensor_id IS NULL ORDER BY s.id",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let attrs: Option<String> = r.get(4)?;
        let backlog_ts: Option<i64> = r.get(5)?;
        let backlog = backlog_ts.map(|ts| Backlog {
            queue_depth: r.get_ref(6).ok().and_then(json_number),
            queue_bytes: r.get_ref(7).ok().and_then(json_number),
            ts,
        });
        out.push(FleetRow {
            name: r.get(1)?,
            status: r.get(2)?,
            last_seen: r.get(3)?,
            attrs: attrs.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_else(|| json!({})),
            backlog,
            gaps: gaps.remove(&id).unwrap_or(GapTotals { reports: 0, dropped: 0, last_at: None }),
            rejected: rejected.remove(&id).unwrap_or(0),
            open_commands: open.remove(&id).unwrap_or(0),
            children: children.remove(&id).unwrap_or_default(),
            id,
        });
    }
    Ok(out)
}

async fn fleet(State(state): State<AppState>, Query(p): Query<FleetParams>) -> Result<Json<Json_>, ApiError> {
    let mut rows = state.store.call(|c| fleet_rows(c)).await?;
    if let Some(q) = p.q.as_deref().map(str::to_lowercase).filter(|q| !q.is_empty()) {
        rows.retain(|g| g.id.to_lowercase().contains(&q) || g.name.as_deref().is_some_and(|n| n.to_lowercase().contains(&q)));
    }
    if let Some(s) = p.status.as_deref().filter(|s| !s.is_empty()) {
        rows.retain(|g| g.status == s);
    }
    let online = state.presence.online();
    let gateways: Vec<Json_> = rows
        .into_iter()
        .map(|g| {
            let presence = state.presence.get(&g.id);
            let mut v = serde_json::to_value(&g).unwrap_or_else(|_| json!({ "id": g.id }));
            if let Some(obj) = v.as_object_mut() {
                obj.insert("presence".into(), json!(presence));
            }
            v
        })
        .collect();
    Ok(Json(json!({ "count": gateways.len(), "online": online.len(), "gateways": gateways })))
}

const MAX_DEVICE_ROWS: u32 = 10_000;

/// A gateway's child devices with their health (latest `device.online` and `device.latency_ms`, and the
/// shared rules of [`devices::with_tree_health`]), for the gateway page's device tree.
pub fn device_rows(conn: &Connection, gateway: &str) -> Result<Vec<Json_>, StoreError> {
    let filter = queries::SensorFilter { gateway: Some(gateway.to_owned()), ..Default::default() };
    // A gateway's children are bounded by --max-children at ingest; this cap only keeps one answer finite.
    let sensors = queries::list_sensors_page(conn, &filter, None, MAX_DEVICE_ROWS)?;
    let samples = queries::latest_samples(conn, devices::Scope::Gateway, Some(gateway))?;
    Ok(sensors
        .into_iter()
        .filter(|s| s.id != gateway)
        .map(|s| devices::with_tree_health(serde_json::to_value(&s).unwrap_or_else(|_| json!({ "id": s.id })), &samples))
        .collect())
}

async fn devices(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Json_>, ApiError> {
    let gw = id.clone();
    let devices = state.store.call(move |c| device_rows(c, &gw)).await?;
    Ok(Json(json!({ "gatewayId": id, "count": devices.len(), "devices": devices })))
}
