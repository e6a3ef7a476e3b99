//! Child devices as both clouds read them: the health rules, the problem words, the fleet's per-gateway
//! child counts and the device-event listing. Plain Rust plus SQL in SQLite's dialect (which D1 speaks),
//! no database handle: the shim compiles this file as `store::devices` and runs the SQL with rusqlite,
//! the Worker compiles the same file (`#[path]` in `worker/src/read.rs`) and runs it on D1. Each
//! statement answers one row with one JSON text column `j`, so both clouds parse the same text.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};

/// A device clock further than this from the gateway's counts as drifting (`clock_drift`).
pub const CLOCK_DRIFT_S: f64 = 30.0;

pub const ONLINE: &str = "device.online";
pub const AUTH_OK: &str = "device.auth_ok";
pub const STREAM_OK: &str = "camera.stream_ok";
pub const HDD_OK: &str = "nvr.hdd_ok";
pub const CLOCK_OFFSET: &str = "device.clock_offset_s";
pub const LATENCY: &str = "device.latency_ms";

/// Whose newest samples [`latest_samples_sql`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `?1`: a JSON array of sensor ids.
    Ids,
    /// `?1`: a gateway id; its sensors other than itself.
    Gateway,
    /// Every child device of every gateway (no parameter).
    AllChildren,
}

/// The newest samples (all labels at the newest ts) of the health metrics and `device.latency_ms`, as
/// `j` = `[[sensor, name, value, ts], ...]`. Both `IN` lists and the correlated `max` run on the
/// `(sensor_id, name, ts)` index.
pub fn latest_samples_sql(scope: Scope) -> String {
    let sensors = match scope {
        Scope::Ids => "SELECT value FROM json_each(?1)",
        Scope::Gateway => "SELECT id FROM sensors WHERE gateway_id = ?1 AND id <> ?1",
        Scope::AllChildren => "SELECT id FROM sensors WHERE parent_sensor_id IS NOT NULL AND id <> gateway_id",
    };
    format!(
        "SELECT json_group_array(json_array(m.sensor_id, m.name, m.value, m.ts)) AS j FROM metrics m
         WHERE m.sensor_id IN ({sensors})
           AND m.name IN ('{ONLINE}', '{AUTH_OK}', '{STREAM_OK}', '{HDD_OK}', '{CLOCK_OFFSET}', '{LATENCY}')
           AND m.ts = (SELECT max(x.ts) FROM metrics x WHERE x.sensor_id = m.sensor_id AND x.name = m.name)"
    )
}

/// One newest sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// As stored: an integer or a float (JSON keeps the difference).
    pub value: Value,
    pub ts: i64,
}

impl Sample {
    fn number(&self) -> f64 {
        self.value.as_f64().unwrap_or(f64::NAN)
    }
}

/// The newest samples per sensor, from [`latest_samples_sql`]'s `j`.
pub type Samples = HashMap<String, Vec<Sample>>;

pub fn parse_samples(j: &str) -> Result<Samples, serde_json::Error> {
    let rows: Vec<(String, String, Value, i64)> = serde_json::from_str(j)?;
    let mut out: Samples = HashMap::new();
    for (sensor, name, value, ts) in rows {
        out.entry(sensor).or_default().push(Sample { name, value, ts });
    }
    Ok(out)
}

/// Latest health of a child device from its newest probe samples: `online` (device.online), `authOk`
/// (device.auth_ok), `streamOk` (every profile's camera.stream_ok), `hddOk` (every disk's nvr.hdd_ok),
/// `clockOffsetS` (device.clock_offset_s), `ts` (newest of those samples) and `problems`, the portal's
/// health categories: `down`, `auth_broken`, `stream_lost`, `hdd_failed`, `clock_drift`. A field is
/// null when the device never reported it. Serialised as the API's `DeviceHealth` schema.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceHealth {
    pub online: Option<bool>,
    pub auth_ok: Option<bool>,
    pub stream_ok: Option<bool>,
    pub hdd_ok: Option<bool>,
    pub clock_offset_s: Option<f64>,
    pub ts: Option<i64>,
    pub problems: Vec<&'static str>,
}

impl DeviceHealth {
    /// The rules, applied to one sensor's newest samples (`None`: it never reported any).
    pub fn from_samples(samples: Option<&Vec<Sample>>) -> DeviceHealth {
        let samples = samples.map_or(&[][..], Vec::as_slice);
        fn of<'a>(samples: &'a [Sample], name: &'a str) -> impl Iterator<Item = &'a Sample> {
            samples.iter().filter(move |s| s.name == name)
        }
        let all_ok = |name: &str| {
            let mut it = of(samples, name).peekable();
            it.peek().is_some().then(|| it.all(|s| s.number() > 0.0))
        };
        let online = all_ok(ONLINE);
        let auth_ok = all_ok(AUTH_OK);
        let stream_ok = all_ok(STREAM_OK);
        let hdd_ok = all_ok(HDD_OK);
        let clock = of(samples, CLOCK_OFFSET).next().map(Sample::number).filter(|v| v.is_finite());
        let ts = samples.iter().filter(|s| s.name != LATENCY).map(|s| s.ts).max();
        let mut problems = Vec::new();
        for (bad, word) in [
            (online == Some(false), "down"),
            (auth_ok == Some(false), "auth_broken"),
            (stream_ok == Some(false), "stream_lost"),
            (hdd_ok == Some(false), "hdd_failed"),
            (clock.is_some_and(|c| c.abs() > CLOCK_DRIFT_S), "clock_drift"),
        ] {
            if bad {
                problems.push(word);
            }
        }
        DeviceHealth { online, auth_ok, stream_ok, hdd_ok, clock_offset_s: clock, ts, problems }
    }
}

/// A child's health word: its latest `device.online` sample when there is one, else its stored status.
pub fn status_word(online_sample: Option<f64>, status: &str) -> &'static str {
    match online_sample {
        Some(v) if v > 0.0 => "online",
        Some(_) => "offline",
        None if status == "online" => "online",
        None if status == "offline" => "offline",
        None => "unknown",
    }
}

fn first<'a>(samples: Option<&'a Vec<Sample>>, name: &str) -> Option<&'a Sample> {
    samples.and_then(|v| v.iter().find(|s| s.name == name))
}

/// A sensor's JSON (`Sensor` schema) with `health` (`DeviceHealth`) added: `GET /v1/sensors?parentSensorId=`.
pub fn with_health(mut sensor: Value, samples: &Samples) -> Value {
    let id = sensor.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let h = DeviceHealth::from_samples(samples.get(&id));
    if let Some(o) = sensor.as_object_mut() {
        o.insert("health".into(), serde_json::to_value(h).unwrap_or(Value::Null));
    }
    sensor
}

/// A sensor's JSON with the device tree's `health` (`GET /v1/gateways/{id}/devices`): the health word,
/// the latest `device.online` and `device.latency_ms`, and the [`DeviceHealth`] fields.
pub fn with_tree_health(mut sensor: Value, samples: &Samples) -> Value {
    let id = sensor.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let status = sensor.get("status").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mine = samples.get(&id);
    let online = first(mine, ONLINE).map(Sample::number);
    let h = DeviceHealth::from_samples(mine);
    let health = json!({
        "status": status_word(online, &status),
        "online": online.map(|v| v > 0.0),
        "latencyMs": first(mine, LATENCY).map(|s| s.value.clone()),
        "ts": h.ts,
        "authOk": h.auth_ok,
        "streamOk": h.stream_ok,
        "hddOk": h.hdd_ok,
        "clockOffsetS": h.clock_offset_s,
        "problems": h.problems,
    });
    if let Some(o) = sensor.as_object_mut() {
        o.insert("health".into(), health);
    }
    sensor
}

/// The children of every gateway, for the fleet: `j` = `[[gateway, type, status, id], ...]`.
pub const CHILDREN_SQL: &str = "SELECT json_group_array(json_array(gateway_id, type, status, id)) AS j FROM sensors
 WHERE parent_sensor_id IS NOT NULL AND id <> gateway_id";

/// Children of one gateway counted by their stored status.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChildCounts {
    pub total: i64,
    pub online: i64,
    pub offline: i64,
    pub unknown: i64,
    /// Counts per device type (CAMERA, NVR, ...).
    pub by_type: HashMap<String, i64>,
    /// Children with each current problem ([`DeviceHealth`]); a child can count under several.
    pub problems: HashMap<String, i64>,
}

/// Per gateway, its children counted, from [`CHILDREN_SQL`]'s `j` and the samples of
/// [`Scope::AllChildren`]. Children's rows keep status 'unknown' (only gateways report presence); their
/// reachability is the latest `device.online` sample the gateway's probe reported.
pub fn child_counts(children_j: &str, samples: &Samples) -> Result<HashMap<String, ChildCounts>, serde_json::Error> {
    let rows: Vec<(String, String, String, String)> = serde_json::from_str(children_j)?;
    let mut out: HashMap<String, ChildCounts> = HashMap::new();
    for (gateway, ty, status, id) in rows {
        let mine = samples.get(&id);
        let c = out.entry(gateway).or_default();
        for p in DeviceHealth::from_samples(mine).problems {
            *c.problems.entry(p.to_owned()).or_default() += 1;
        }
        c.total += 1;
        match status_word(first(mine, ONLINE).map(Sample::number), &status) {
            "online" => c.online += 1,
            "offline" => c.offline += 1,
            _ => c.unknown += 1,
        }
        *c.by_type.entry(ty).or_default() += 1;
    }
    Ok(out)
}

/// `?since=` (ms, inclusive) and `?limit=` of the events routes.
pub const EVENTS_DEFAULT_LIMIT: u32 = 100;
pub const EVENTS_MAX_LIMIT: u32 = 1000;

/// Whose events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsOf {
    Sensor,
    Gateway,
}

/// Device events of one sensor or gateway (`?1`) with `ts >= ?2`, newest first, at most `?3`, and whether
/// that sensor exists: `j` = `[known, [event, ...]]` (the `DeviceEvent` schema).
pub fn events_sql(of: EventsOf) -> String {
    let column = match of {
        EventsOf::Sensor => "sensor_id",
        EventsOf::Gateway => "gateway_id",
    };
    format!(
        "SELECT json_array((SELECT count(*) FROM sensors WHERE id = ?1),
           (SELECT json_group_array(json(e)) FROM (
             SELECT json_object('sensorId', sensor_id, 'gatewayId', gateway_id, 'ts', ts, 'kind', kind, 'detail', detail,
               'attrs', CASE WHEN attrs IS NOT NULL AND json_valid(attrs) THEN json(attrs) ELSE json('{{}}') END,
               'receivedAt', received_at) AS e
             FROM device_events WHERE {column} = ?1 AND ts >= ?2 ORDER BY ts DESC, seq DESC, idx DESC LIMIT ?3))) AS j"
    )
}

/// The events answer from [`events_sql`]'s `j`; `None`: neither the sensor nor any event exists.
pub fn events_body(of: EventsOf, id: &str, since: Option<i64>, limit: u32, j: &str) -> Result<Option<Value>, serde_json::Error> {
    let (known, events): (i64, Vec<Value>) = serde_json::from_str(j)?;
    if known == 0 && events.is_empty() {
        return Ok(None);
    }
    let key = match of {
        EventsOf::Sensor => "sensorId",
        EventsOf::Gateway => "gatewayId",
    };
    Ok(Some(json!({ key: id, "since": since, "limit": limit, "count": events.len(), "events": events })))
}
