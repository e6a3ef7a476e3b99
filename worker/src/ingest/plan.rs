//! What one Queue consumer batch writes to D1, decided in Rust and written as one D1 batch (one
//! transaction), with the shim's store rules (`cloud-shim/src/ingest/sqlite.rs`): idempotent on
//! `(gateway, boot, seq)`, a sensor belongs to the gateway that first announced it, a bounded number of
//! sensors per gateway, inventories never overwrite a newer one, rejections counted per reason.
//!
//! D1 has no interactive transactions, so the consumer first reads a [`Snapshot`] of what the rules
//! need (four read statements), then [`Plan::build`] decides every message in order, and the writes go
//! out as bulk statements that each take one JSON array parameter (`json_each`), keeping a batch of
//! hundreds of messages to a handful of statements. `ingest_receipts` is inserted without
//! `ON CONFLICT`: if another consumer stored the same key since the snapshot, the whole transaction
//! fails and the batch is retried, when the snapshot names it a duplicate.

use std::collections::{BTreeMap, HashMap, HashSet};

use scs_protocol::{CommandUpdate, GatewayState, Inventory, MetricValue, SensorType, TelemetryBatch, Uplink};
use serde_json::{json, Value};

use super::boot_hex;
use crate::sessions::store::UpdateVerdict;

/// Shim default: sensors one gateway may own besides itself.
pub const DEFAULT_MAX_CHILDREN: usize = 512;
/// Stored error and topic texts are clipped to this many characters.
const MAX_STORED_TEXT: usize = 300;
/// Largest JSON parameter of one statement (D1 allows 2 MB per value).
const MAX_PARAM_BYTES: usize = 900 * 1024;

/// A statement with one JSON text parameter (`?1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    pub sql: &'static str,
    pub json: String,
}

/// A message taken from the Queue, decoded again.
#[derive(Debug, Clone)]
pub enum Input {
    Valid { gateway: String, topic: String, msg: Uplink, received_at: i64 },
    Rejected { gateway: String, reason: String, error: String, topic: String, at: i64 },
}

pub const SNAPSHOT_RECEIPTS: &str = "SELECT json_group_array(json_array(r.gateway_id, r.boot, r.seq)) AS j
 FROM ingest_receipts r
 JOIN (SELECT DISTINCT json_extract(value, '$[0]') AS g, json_extract(value, '$[1]') AS b, json_extract(value, '$[2]') AS s
       FROM json_each(?1)) k ON r.gateway_id = k.g AND r.boot = k.b AND r.seq = k.s";
pub const SNAPSHOT_OWNERS: &str = "SELECT json_group_array(json_array(id, gateway_id)) AS j FROM sensors
 WHERE id IN (SELECT value FROM json_each(?1))";
pub const SNAPSHOT_GATEWAYS: &str =
    "SELECT json_group_array(id) AS j FROM gateways WHERE id IN (SELECT value FROM json_each(?1))";
pub const SNAPSHOT_CHILDREN: &str = "SELECT json_group_array(json_array(gateway_id, n)) AS j FROM
 (SELECT gateway_id, count(*) AS n FROM sensors WHERE gateway_id IN (SELECT value FROM json_each(?1)) AND id <> gateway_id
  GROUP BY gateway_id)";

const INSERT_RECEIPTS: &str = "INSERT INTO ingest_receipts (gateway_id, boot, seq, kind, received_at)
 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
        json_extract(value, '$[4]') FROM json_each(?1)";
const UPSERT_STATUS: &str = "INSERT INTO sensors (id, type, gateway_id, status, last_seen, created_at, updated_at)
 SELECT json_extract(value, '$[0]'), 'EDGE_CONTROLLER', json_extract(value, '$[0]'), json_extract(value, '$[1]'),
        json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[3]') FROM json_each(?1) WHERE true
 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
     last_seen = CASE WHEN excluded.last_seen IS NULL THEN sensors.last_seen
                      ELSE max(coalesce(sensors.last_seen, 0), excluded.last_seen) END,
     updated_at = excluded.updated_at
 WHERE sensors.gateway_id = excluded.gateway_id";
const TOUCH_SENSORS: &str = "INSERT INTO sensors (id, type, gateway_id, status, last_seen, created_at, updated_at)
 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), 'unknown',
        json_extract(value, '$[3]'), json_extract(value, '$[3]'), json_extract(value, '$[3]') FROM json_each(?1) WHERE true
 ON CONFLICT (id) DO UPDATE SET last_seen = max(coalesce(sensors.last_seen, 0), excluded.last_seen)
 WHERE sensors.gateway_id = excluded.gateway_id";
const UPSERT_INVENTORY: &str = "INSERT INTO sensors (id, type, parent_sensor_id, name, attrs, gateway_id, status, last_seen,
                      announced_seq, created_at, updated_at)
 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
        json_extract(value, '$[4]'), json_extract(value, '$[5]'), 'unknown', json_extract(value, '$[6]'),
        json_extract(value, '$[7]'), json_extract(value, '$[6]'), json_extract(value, '$[6]') FROM json_each(?1) WHERE true
 ON CONFLICT (id) DO UPDATE SET type = excluded.type, parent_sensor_id = excluded.parent_sensor_id,
     name = excluded.name, attrs = excluded.attrs,
     last_seen = max(coalesce(sensors.last_seen, 0), excluded.last_seen),
     announced_seq = excluded.announced_seq, updated_at = excluded.updated_at
 WHERE sensors.gateway_id = excluded.gateway_id
     AND (sensors.announced_seq IS NULL OR excluded.announced_seq >= sensors.announced_seq)";
const INSERT_METRICS: &str = "INSERT INTO metrics (sensor_id, name, label, ts, value, gateway_id)
 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
        json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each(?1)";
/// Device events, keyed by `(gateway, boot, seq, position in the batch)` like the shim stores them.
const INSERT_EVENTS: &str =
    "INSERT INTO device_events (gateway_id, boot, seq, idx, sensor_id, ts, kind, detail, attrs, received_at)
 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
        json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'),
        json_extract(value, '$[8]'), json_extract(value, '$[9]') FROM json_each(?1) WHERE true
 ON CONFLICT DO NOTHING";
const INSERT_GAPS: &str = "INSERT INTO gaps (gateway_id, boot, seq, dropped, first_seq, last_seq, received_at)
 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
        json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]') FROM json_each(?1) WHERE true
 ON CONFLICT DO NOTHING";
const UPSERT_REJECTIONS: &str = "INSERT INTO rejections (gateway_id, reason, count, last_error, last_topic, first_at, last_at)
 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'),
        json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]') FROM json_each(?1) WHERE true
 ON CONFLICT (gateway_id, reason) DO UPDATE SET count = rejections.count + excluded.count,
     last_error = excluded.last_error, last_topic = excluded.last_topic, last_at = max(rejections.last_at, excluded.last_at)";

/// What the rules need to know from D1 before deciding a batch.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// `(gateway, boot hex, seq)` already stored.
    pub stored: HashSet<(String, String, i64)>,
    /// Sensor id → owning gateway.
    pub owners: HashMap<String, String>,
    /// Sensor ids that are provisioned gateways.
    pub gateways: HashSet<String>,
    /// Gateway → number of sensors it owns besides itself.
    pub children: HashMap<String, i64>,
}

fn receipt_key(gateway: &str, msg: &Uplink) -> Option<(String, String, i64)> {
    let (boot, seq) = msg.boot_seq()?;
    Some((gateway.to_owned(), boot_hex(boot), i64::try_from(seq).ok()?))
}

/// Sensor ids the inputs write about (for the owner and gateway lookups).
fn sensors_named(inputs: &[Input]) -> Vec<String> {
    let mut out = Vec::new();
    for i in inputs {
        let Input::Valid { gateway, msg, .. } = i else { continue };
        out.push(gateway.clone());
        match msg {
            Uplink::Telemetry(b) => {
                out.extend(b.devices.iter().map(|d| d.sensor.clone()));
                out.extend(b.events.iter().flatten().map(|e| e.sensor.clone()));
            }
            Uplink::Inventory(inv) => {
                for s in &inv.sensors {
                    out.push(s.id.clone());
                    out.extend(s.parent.clone());
                }
            }
            Uplink::Command(_) | Uplink::Status(_) => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The four read statements whose results [`Snapshot::parse`] takes, in order.
pub fn snapshot_queries(inputs: &[Input]) -> [Stmt; 4] {
    let keys: Vec<Value> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Valid { gateway, msg, .. } => receipt_key(gateway, msg).map(|(g, b, s)| json!([g, b, s])),
            Input::Rejected { .. } => None,
        })
        .collect();
    let sensors = Value::from(sensors_named(inputs)).to_string();
    let mut gws: Vec<&str> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Valid { gateway, .. } => Some(gateway.as_str()),
            Input::Rejected { .. } => None,
        })
        .collect();
    gws.sort_unstable();
    gws.dedup();
    [
        Stmt { sql: SNAPSHOT_RECEIPTS, json: Value::from(keys).to_string() },
        Stmt { sql: SNAPSHOT_OWNERS, json: sensors.clone() },
        Stmt { sql: SNAPSHOT_GATEWAYS, json: sensors },
        Stmt { sql: SNAPSHOT_CHILDREN, json: json!(gws).to_string() },
    ]
}

impl Snapshot {
    /// From the `j` column of the four [`snapshot_queries`] (JSON arrays built by SQLite).
    pub fn parse(results: [&str; 4]) -> Result<Snapshot, serde_json::Error> {
        let [receipts, owners, gateways, children] = results;
        let receipts: Vec<(String, String, i64)> = serde_json::from_str(receipts)?;
        let owners: Vec<(String, String)> = serde_json::from_str(owners)?;
        let gateways: Vec<String> = serde_json::from_str(gateways)?;
        let children: Vec<(String, i64)> = serde_json::from_str(children)?;
        Ok(Snapshot {
            stored: receipts.into_iter().collect(),
            owners: owners.into_iter().collect(),
            gateways: gateways.into_iter().collect(),
            children: children.into_iter().collect(),
        })
    }
}

/// Per-message result of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    Rejected,
}

/// One rejection counter update.
#[derive(Debug, Clone, PartialEq)]
struct RejectionRow {
    count: i64,
    last_error: String,
    last_topic: String,
    first_at: i64,
    last_at: i64,
}

/// Rows to write, in the order the rules decided them.
#[derive(Debug, Default)]
pub struct Plan {
    receipts: Vec<Value>,
    status: Vec<Value>,
    touch: Vec<Value>,
    inventory: Vec<Value>,
    metrics: Vec<Value>,
    events: Vec<Value>,
    gaps: Vec<Value>,
    rejections: BTreeMap<(String, String), RejectionRow>,
    /// Command updates to hand to the command sessions, in order, with their gateway.
    pub command_updates: Vec<(String, CommandUpdate)>,
    pub outcomes: Vec<Outcome>,
    /// Sensor rows were created or their description or status changed: cached sensor lists are stale.
    pub sensors_changed: bool,
}

enum Claim {
    Own,
    Refused { reason: &'static str, error: String },
}

struct Rules<'a> {
    snap: &'a mut Snapshot,
    max_children: usize,
}

impl Rules<'_> {
    /// A sensor belongs to the gateway that first announced it (a gateway's own id belongs to it before it
    /// is first heard); another gateway can neither write its samples nor take it over. `create` records
    /// a new sensor as owned (the caller is about to write its row).
    fn claim(&mut self, gateway: &str, sensor: &str) -> Claim {
        match self.snap.owners.get(sensor) {
            Some(o) if o == gateway => Claim::Own,
            Some(o) => {
                Claim::Refused { reason: "sensor_owner", error: format!("sensor {sensor} belongs to gateway {o}, not {gateway}") }
            }
            None if sensor == gateway => {
                self.snap.owners.insert(sensor.to_owned(), gateway.to_owned());
                Claim::Own
            }
            None if self.snap.gateways.contains(sensor) => Claim::Refused {
                reason: "sensor_owner",
                error: format!("sensor id {sensor} is another gateway's id; {gateway} cannot announce it"),
            },
            None => {
                let owned = self.snap.children.entry(gateway.to_owned()).or_insert(0);
                if usize::try_from(*owned).unwrap_or(usize::MAX) >= self.max_children {
                    return Claim::Refused {
                        reason: "too_many_sensors",
                        error: format!(
                            "gateway {gateway} already has {owned} sensors (limit {}); new sensor {sensor} refused",
                            self.max_children
                        ),
                    };
                }
                *owned += 1;
                self.snap.owners.insert(sensor.to_owned(), gateway.to_owned());
                Claim::Own
            }
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_STORED_TEXT).collect()
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Plan {
    /// Decides every input in order against `snap` (which it updates as messages create sensors).
    pub fn build(inputs: &[Input], mut snap: Snapshot, max_children: usize) -> Plan {
        let mut plan = Plan::default();
        let mut rules = Rules { snap: &mut snap, max_children };
        for input in inputs {
            let outcome = match input {
                Input::Rejected { gateway, reason, error, topic, at } => {
                    plan.reject(gateway, reason, error, topic, *at);
                    Outcome::Rejected
                }
                Input::Valid { gateway, topic, msg, received_at } => plan.apply(&mut rules, gateway, topic, msg, *received_at),
            };
            plan.outcomes.push(outcome);
        }
        plan
    }

    /// Counts a refused message (or part of one) under `reason`.
    pub fn reject(&mut self, gateway: &str, reason: &str, error: &str, topic: &str, at: i64) {
        let row = self.rejections.entry((gateway.to_owned(), reason.to_owned())).or_insert_with(|| RejectionRow {
            count: 0,
            last_error: String::new(),
            last_topic: String::new(),
            first_at: at,
            last_at: at,
        });
        row.count += 1;
        row.last_error = clip(error);
        row.last_topic = clip(topic);
        row.first_at = row.first_at.min(at);
        row.last_at = row.last_at.max(at);
    }

    fn apply(&mut self, rules: &mut Rules<'_>, gateway: &str, topic: &str, msg: &Uplink, now: i64) -> Outcome {
        let (kind, key) = match msg {
            Uplink::Status(s) => {
                let seen = (s.state == GatewayState::Online).then_some(now);
                self.status.push(json!([gateway, s.state.as_str(), seen, now]));
                rules.snap.owners.entry(gateway.to_owned()).or_insert_with(|| gateway.to_owned());
                self.sensors_changed = true;
                return Outcome::Stored;
            }
            Uplink::Telemetry(_) => ("telemetry", receipt_key(gateway, msg)),
            Uplink::Inventory(_) => ("inventory", receipt_key(gateway, msg)),
            Uplink::Command(_) => ("command", receipt_key(gateway, msg)),
        };
        // Ingest refused seqs beyond i64 before they reached the Queue.
        let Some(key) = key else { return Outcome::Rejected };
        if !rules.snap.stored.insert(key.clone()) {
            return Outcome::Duplicate;
        }
        let (g, boot, seq) = key;
        self.receipts.push(json!([g, boot, seq, kind, now]));
        match msg {
            Uplink::Telemetry(b) => self.telemetry(rules, gateway, topic, b, now),
            Uplink::Inventory(inv) => self.inventory(rules, gateway, topic, inv, now),
            Uplink::Command(u) => self.command_updates.push((gateway.to_owned(), u.clone())),
            Uplink::Status(_) => {}
        }
        Outcome::Stored
    }

    /// May `gateway` write about `sensor`? Claims it (and touches its row) the first time this batch names it.
    fn allowed<'b>(
        &mut self,
        rules: &mut Rules<'_>,
        seen: &mut HashMap<&'b str, bool>,
        gateway: &str,
        topic: &str,
        sensor: &'b str,
        now: i64,
    ) -> bool {
        if let Some(a) = seen.get(sensor) {
            return *a;
        }
        let known = rules.snap.owners.contains_key(sensor);
        let a = match rules.claim(gateway, sensor) {
            Claim::Own => {
                let placeholder = if sensor == gateway { SensorType::EDGE_CONTROLLER } else { "UNKNOWN" };
                self.touch.push(json!([sensor, placeholder, gateway, now]));
                self.sensors_changed |= !known;
                true
            }
            Claim::Refused { reason, error } => {
                self.reject(gateway, reason, &error, topic, now);
                false
            }
        };
        seen.insert(sensor, a);
        a
    }

    fn telemetry(&mut self, rules: &mut Rules<'_>, gateway: &str, topic: &str, b: &TelemetryBatch, now: i64) {
        let mut seen: HashMap<&str, bool> = HashMap::new();
        for d in &b.devices {
            if !self.allowed(rules, &mut seen, gateway, topic, &d.sensor, now) {
                continue;
            }
            let ts = i64_of(d.ts);
            for m in &d.metrics {
                let label = m.label.as_deref().unwrap_or("");
                let value = match m.value {
                    MetricValue::Int(i) => json!(i),
                    // The protocol refuses non-finite floats; NaN would carry no information anyway.
                    MetricValue::Float(f) if !f.is_finite() => continue,
                    MetricValue::Float(f) => json!(f),
                };
                self.metrics.push(json!([d.sensor, m.key.name(), label, ts, value, gateway]));
            }
        }
        // Events of sensors this gateway may write about, in the same transaction as the samples.
        for (idx, e) in b.events.iter().flatten().enumerate() {
            if !self.allowed(rules, &mut seen, gateway, topic, &e.sensor, now) {
                continue;
            }
            let attrs = e.attrs.as_ref().and_then(|a| serde_json::to_string(a).ok());
            self.events.push(json!([
                gateway,
                boot_hex(b.boot),
                i64_of(b.seq),
                idx,
                e.sensor,
                i64_of(e.ts),
                e.kind,
                e.detail,
                attrs,
                now
            ]));
        }
        if let Some(g) = b.gap {
            self.gaps.push(json!([
                gateway,
                boot_hex(b.boot),
                i64_of(b.seq),
                i64_of(g.dropped),
                i64_of(g.first_seq),
                i64_of(g.last_seq),
                now
            ]));
        }
    }

    fn inventory(&mut self, rules: &mut Rules<'_>, gateway: &str, topic: &str, inv: &Inventory, now: i64) {
        let seq = i64_of(inv.seq);
        for s in &inv.sensors {
            if let Claim::Refused { reason, error } = rules.claim(gateway, &s.id) {
                self.reject(gateway, reason, &error, topic, now);
                continue;
            }
            if let Some(parent) = s.parent.as_deref().filter(|p| *p != s.id) {
                if let Claim::Refused { error, .. } = rules.claim(gateway, parent) {
                    self.reject(gateway, "sensor_owner", &format!("sensor {} under parent {parent}: {error}", s.id), topic, now);
                    continue;
                }
            }
            let attrs = inv.stored_attrs(s);
            let attrs = if attrs.is_empty() { None } else { serde_json::to_string(&attrs).ok() };
            self.inventory.push(json!([s.id, s.sensor_type, s.parent, s.name, attrs, gateway, now, seq]));
            self.sensors_changed = true;
        }
    }

    /// Takes the command sessions' verdicts on [`Plan::command_updates`], in order. A refusal is final: it
    /// counts as a `command_update` rejection and the message stays stored. A store failure (or a verdict
    /// missing because the sessions stopped at one) is `Err`: nothing of this batch may commit, so the
    /// Queue delivers it again (or the ingest request answers 503 and the shim sends it again).
    pub fn command_verdicts(&mut self, verdicts: &[UpdateVerdict], now: i64) -> Result<(), String> {
        if let Some(UpdateVerdict::Retry(e)) = verdicts.iter().find(|v| matches!(v, UpdateVerdict::Retry(_))) {
            return Err(e.clone());
        }
        if verdicts.len() < self.command_updates.len() {
            return Err(format!("{} of {} command updates applied", verdicts.len(), self.command_updates.len()));
        }
        let refused: Vec<(String, String)> = self
            .command_updates
            .iter()
            .zip(verdicts)
            .filter_map(|((gw, _), v)| match v {
                UpdateVerdict::Refused(e) => Some((gw.clone(), e.clone())),
                UpdateVerdict::Applied | UpdateVerdict::Retry(_) => None,
            })
            .collect();
        for (gw, e) in refused {
            let topic = scs_protocol::topics::topic(&gw, scs_protocol::TopicKind::CommandUpdate);
            self.reject(&gw, "command_update", &e, &topic, now);
        }
        Ok(())
    }

    /// The write statements, one D1 batch: bulk statements with JSON parameters under D1's value limit.
    pub fn statements(&self) -> Vec<Stmt> {
        let rejections: Vec<Value> = self
            .rejections
            .iter()
            .map(|((g, reason), r)| json!([g, reason, r.count, r.last_error, r.last_topic, r.first_at, r.last_at]))
            .collect();
        let mut out = Vec::new();
        for (sql, rows) in [
            (UPSERT_STATUS, &self.status),
            (TOUCH_SENSORS, &self.touch),
            (UPSERT_INVENTORY, &self.inventory),
            (INSERT_METRICS, &self.metrics),
            (INSERT_EVENTS, &self.events),
            (INSERT_GAPS, &self.gaps),
            (UPSERT_REJECTIONS, &rejections),
            (INSERT_RECEIPTS, &self.receipts),
        ] {
            chunked(sql, rows, &mut out);
        }
        out
    }
}

/// Splits `rows` into JSON arrays of at most [`MAX_PARAM_BYTES`] each.
fn chunked(sql: &'static str, rows: &[Value], out: &mut Vec<Stmt>) {
    let mut json = String::from("[");
    for row in rows {
        let text = row.to_string();
        if json.len() > 1 && json.len() + text.len() + 2 > MAX_PARAM_BYTES {
            json.push(']');
            out.push(Stmt { sql, json: std::mem::replace(&mut json, String::from("[")) });
        }
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&text);
    }
    if json.len() > 1 {
        json.push(']');
        out.push(Stmt { sql, json });
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
