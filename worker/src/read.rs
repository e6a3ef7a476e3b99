//! The read API's queries, as the shim answers them (`cloud-shim/src/api/sensors.rs`, `gateways.rs`):
//! same paths, parameters, limits and JSON shapes. SQLite builds the JSON, so integers are exact.

use serde_json::Value;

use crate::http::ApiError;
use crate::sql::{Param, Query};

/// Child-device health and events, the shim's own file (one set of rules and SQL for both clouds).
#[path = "../../cloud-shim/src/store/devices.rs"]
pub mod devices;

use devices::{EventsOf, Scope};

/// Sensors per page of `GET /v1/sensors`, by default and at most.
pub const SENSOR_PAGE_MAX: u32 = 1000;
/// Samples per `GET /v1/sensors/{id}/metrics`, by default and at most.
pub const METRICS_DEFAULT_LIMIT: u32 = 1000;
pub const METRICS_MAX_LIMIT: u32 = 10_000;

const SENSOR_JSON: &str = "json_object('id', id, 'type', type, 'parentSensorId', parent_sensor_id, 'name', name,
 'gatewayId', gateway_id, 'status', status, 'lastSeen', last_seen,
 'attrs', CASE WHEN attrs IS NOT NULL AND json_valid(attrs) THEN json(attrs) ELSE json('{}') END)";

/// `GET /v1/sensors` query parameters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SensorList {
    pub gateway: Option<String>,
    pub sensor_type: Option<String>,
    pub parent: Option<String>,
    pub limit: u32,
    pub cursor: Option<String>,
}

fn parse_u32(field: &str, v: &str) -> Result<u32, ApiError> {
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("{field} must be a non-negative integer, not {v:?}")).with("field", field))
}

fn parse_i64(field: &str, v: &str) -> Result<i64, ApiError> {
    v.parse().map_err(|_| ApiError::bad_request(format!("{field} must be an integer, not {v:?}")).with("field", field))
}

impl SensorList {
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<SensorList, ApiError> {
        let mut q = SensorList { limit: SENSOR_PAGE_MAX, ..SensorList::default() };
        for (k, v) in pairs {
            match k {
                "gatewayId" => q.gateway = Some(v.to_owned()),
                "type" => q.sensor_type = Some(v.to_owned()),
                "parentSensorId" => q.parent = Some(v.to_owned()),
                "cursor" if !v.is_empty() => q.cursor = Some(v.to_owned()),
                "limit" => q.limit = parse_u32("limit", v)?,
                _ => {}
            }
        }
        if !(1..=SENSOR_PAGE_MAX).contains(&q.limit) {
            return Err(ApiError::bad_request(format!("limit must be 1..={SENSOR_PAGE_MAX}, not {}", q.limit))
                .with("field", "limit")
                .with("maxLimit", SENSOR_PAGE_MAX));
        }
        Ok(q)
    }

    /// One more row than the page, to know whether another page follows.
    pub fn query(&self) -> Query {
        Query {
            sql: format!(
                "SELECT json_group_array(json(s)) AS j FROM (SELECT {SENSOR_JSON} AS s FROM sensors
                 WHERE (?1 IS NULL OR gateway_id = ?1) AND (?2 IS NULL OR type = ?2) AND (?3 IS NULL OR parent_sensor_id = ?3)
                   AND (?4 IS NULL OR id > ?4)
                 ORDER BY id LIMIT ?5)"
            )
            .into(),
            params: vec![
                Param::opt_text(self.gateway.as_deref()),
                Param::opt_text(self.sensor_type.as_deref()),
                Param::opt_text(self.parent.as_deref()),
                Param::opt_text(self.cursor.as_deref()),
                Param::Int(i64::from(self.limit) + 1),
            ],
        }
    }

    /// The page body and the next cursor, from the query's answer.
    pub fn page(&self, rows_json: &str) -> Result<(String, Option<String>), serde_json::Error> {
        let mut rows: Vec<Value> = serde_json::from_str(rows_json)?;
        let next = if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            rows.last().and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned)
        } else {
            None
        };
        Ok((serde_json::to_string(&rows)?, next))
    }

    /// A `parentSensorId` page carries each child's health (live samples, so it is never cached).
    pub fn with_health(&self) -> bool {
        self.parent.is_some()
    }

    /// The newest health samples of the sensors of a page body.
    pub fn health_query(body: &str) -> Result<Query, serde_json::Error> {
        let rows: Vec<Value> = serde_json::from_str(body)?;
        let ids: Vec<&str> = rows.iter().filter_map(|r| r.get("id").and_then(Value::as_str)).collect();
        Ok(Query { sql: devices::latest_samples_sql(Scope::Ids).into(), params: vec![Param::Text(serde_json::to_string(&ids)?)] })
    }

    /// The page body with each sensor's `health`, from [`SensorList::health_query`]'s `j`.
    pub fn add_health(body: &str, samples_j: &str) -> Result<String, serde_json::Error> {
        let rows: Vec<Value> = serde_json::from_str(body)?;
        let samples = devices::parse_samples(samples_j)?;
        serde_json::to_string(&rows.into_iter().map(|r| devices::with_health(r, &samples)).collect::<Vec<_>>())
    }

    /// The RFC 8288 `Link` to the next page.
    pub fn next_link(&self, cursor: &str) -> String {
        let mut link = format!("/v1/sensors?limit={}&cursor={}", self.limit, query_escape(cursor));
        for (k, v) in [("gatewayId", &self.gateway), ("type", &self.sensor_type), ("parentSensorId", &self.parent)] {
            if let Some(v) = v {
                link.push_str(&format!("&{k}={}", query_escape(v)));
            }
        }
        format!("<{link}>; rel=\"next\"")
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET /v1/sensors/{id}`.
pub fn sensor_query(id: &str) -> Query {
    Query {
        sql: format!("SELECT {SENSOR_JSON} AS j FROM sensors WHERE id = ?1").into(),
        params: vec![Param::Text(id.to_owned())],
    }
}

/// `GET /v1/sensors/{id}/metrics` query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub name: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub limit: u32,
    pub newest_first: bool,
}

impl Metrics {
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Metrics, ApiError> {
        let mut m = Metrics { name: None, from: None, to: None, limit: METRICS_DEFAULT_LIMIT, newest_first: false };
        for (k, v) in pairs {
            match k {
                "name" => m.name = Some(v.to_owned()),
                "from" => m.from = Some(parse_i64("from", v)?),
                "to" => m.to = Some(parse_i64("to", v)?),
                "limit" => m.limit = parse_u32("limit", v)?.clamp(1, METRICS_MAX_LIMIT),
                "order" => {
                    m.newest_first = match v {
                        "asc" => false,
                        "desc" => true,
                        o => return Err(ApiError::bad_request(format!("order must be asc or desc, not {o:?}"))),
                    }
                }
                _ => {}
            }
        }
        if let (Some(f), Some(t)) = (m.from, m.to) {
            if f > t {
                return Err(ApiError::bad_request(format!("from ({f}) is after to ({t})")));
            }
        }
        Ok(m)
    }

    /// The samples as a JSON array (`j`) and whether the sensor exists (`known`, in the same row).
    pub fn query(&self, sensor: &str) -> Query {
        let order = if self.newest_first { "DESC" } else { "ASC" };
        // Two statements rather than `(?5 IS NULL OR name = ?5)`, which would keep SQLite off the
        // (sensor_id, name, ts) index.
        let name_clause = if self.name.is_some() { "AND name = ?5" } else { "" };
        let mut params = vec![
            Param::Text(sensor.to_owned()),
            Param::Int(self.from.unwrap_or(i64::MIN)),
            Param::Int(self.to.unwrap_or(i64::MAX)),
            Param::Int(i64::from(self.limit)),
        ];
        if let Some(n) = &self.name {
            params.push(Param::Text(n.clone()));
        }
        Query {
            sql: format!(
                "SELECT json_array((SELECT count(*) FROM sensors WHERE id = ?1),
                   (SELECT json_group_array(json(s)) FROM (
                     SELECT json_patch(json_object('name', name, 'ts', ts, 'value', value),
                                       CASE WHEN label <> '' THEN json_object('label', label) ELSE '{{}}' END) AS s
                     FROM metrics WHERE sensor_id = ?1 {name_clause} AND ts >= ?2 AND ts <= ?3
                     ORDER BY ts {order}, rowid {order} LIMIT ?4))) AS j"
            )
            .into(),
            params,
        }
    }

    /// The response body, from the query's `j` (`[known, samples]`); `None`: no such sensor.
    pub fn body(&self, sensor: &str, j: &str) -> Result<Option<String>, serde_json::Error> {
        let (known, samples): (i64, Box<serde_json::value::RawValue>) = serde_json::from_str(j)?;
        let count = serde_json::from_str::<Vec<serde::de::IgnoredAny>>(samples.get())?.len();
        if known == 0 && count == 0 {
            return Ok(None);
        }
        Ok(Some(format!(
            "{{\"sensorId\":{},\"name\":{},\"from\":{},\"to\":{},\"limit\":{},\"count\":{count},\"samples\":{}}}",
            serde_json::to_string(sensor)?,
            serde_json::to_string(&self.name)?,
            serde_json::to_string(&self.from)?,
            serde_json::to_string(&self.to)?,
            self.limit,
            samples.get()
        )))
    }
}

/// `GET /v1/gateways/{id}/stats` from the store (this Worker has no per-process counters or presence).
pub fn gateway_stats_query(gateway: &str) -> Query {
    Query::new(
        "SELECT json_object('gatewayId', ?1, 'presence', NULL,
           'storedMessages', (SELECT count(*) FROM ingest_receipts WHERE gateway_id = ?1),
           'rejected', (SELECT coalesce(sum(count), 0) FROM rejections WHERE gateway_id = ?1),
           'rejections', (SELECT json_group_array(json(r)) FROM (SELECT json_object('reason', reason, 'count', count,
               'lastError', last_error, 'lastTopic', last_topic, 'firstAt', first_at, 'lastAt', last_at) AS r
               FROM rejections WHERE gateway_id = ?1 ORDER BY reason)),
           'gaps', (SELECT json_group_array(json(g)) FROM (SELECT json_object('boot', boot, 'seq', seq, 'dropped', dropped,
               'firstSeq', first_seq, 'lastSeq', last_seq, 'receivedAt', received_at) AS g
               FROM gaps WHERE gateway_id = ?1 ORDER BY received_at DESC LIMIT 100))) AS j",
        vec![Param::Text(gateway.to_owned())],
    )
}

/// `GET /v1/stats`: store totals and the gateways whose last status was online.
pub fn stats_query() -> Query {
    Query::new(
        "SELECT json_object('storedMessages', (SELECT count(*) FROM ingest_receipts),
           'rejected', (SELECT coalesce(sum(count), 0) FROM rejections),
           'online', (SELECT json_group_array(id) FROM (SELECT id FROM sensors WHERE id = gateway_id AND status = 'online'
                      ORDER BY id))) AS j",
        vec![],
    )
}

/// `GET /v1/fleet` query parameters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fleet {
    /// Only gateways whose id or name contains this text (case-insensitive).
    pub q: Option<String>,
    /// Only gateways with this stored status.
    pub status: Option<String>,
}

/// Open command states, counted per gateway in the fleet.
const OPEN_STATES: &str = "'queued', 'delivered', 'accepted', 'running'";

impl Fleet {
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Fleet {
        let mut f = Fleet::default();
        for (k, v) in pairs {
            match k {
                "q" if !v.is_empty() => f.q = Some(v.to_lowercase()),
                "status" if !v.is_empty() => f.status = Some(v.to_owned()),
                _ => {}
            }
        }
        f
    }

    /// Three reads, one D1 batch: the gateways (a sensor without a parent) with their summaries, every
    /// child, and the children's newest health samples.
    pub fn queries() -> [Query; 3] {
        let gateways = format!(
            "SELECT json_group_array(json(g)) AS j FROM (SELECT json_object('id', s.id, 'name', s.name, 'status', s.status,
               'lastSeen', s.last_seen,
               'attrs', CASE WHEN s.attrs IS NOT NULL AND json_valid(s.attrs) THEN json(s.attrs) ELSE json('{{}}') END,
               'backlog', json((SELECT json_object('queueDepth', m.value,
                    'queueBytes', (SELECT b.value FROM metrics b WHERE b.sensor_id = s.id AND b.name = 'agent.queue_bytes'
                                   ORDER BY b.ts DESC LIMIT 1),
                    'ts', m.ts)
                  FROM metrics m WHERE m.sensor_id = s.id AND m.name = 'agent.queue_depth' ORDER BY m.ts DESC LIMIT 1)),
               'gaps', json((SELECT json_object('reports', count(*), 'dropped', coalesce(sum(dropped), 0), 'lastAt', max(received_at))
                  FROM gaps WHERE gateway_id = s.id)),
               'rejected', (SELECT coalesce(sum(count), 0) FROM rejections WHERE gateway_id = s.id),
               'openCommands', (SELECT count(*) FROM commands WHERE gateway_id = s.id AND state IN ({OPEN_STATES}))) AS g
             FROM sensors s WHERE s.parent_sensor_id IS NULL ORDER BY s.id)"
        );
        [
            Query { sql: gateways.into(), params: vec![] },
            Query::new(devices::CHILDREN_SQL, vec![]),
            Query { sql: devices::latest_samples_sql(Scope::AllChildren).into(), params: vec![] },
        ]
    }

    /// The answer, from the `j` of the three [`Fleet::queries`]. This Worker holds no MQTT presence:
    /// `presence` is null and `online` counts gateways whose last status was online.
    pub fn body(&self, [gateways, children, samples]: [&str; 3]) -> Result<Value, serde_json::Error> {
        let mut rows: Vec<Value> = serde_json::from_str(gateways)?;
        let mut counts = devices::child_counts(children, &devices::parse_samples(samples)?)?;
        let online = rows.iter().filter(|g| g["status"] == "online").count();
        let text = |g: &Value, k: &str| g.get(k).and_then(Value::as_str).map(str::to_lowercase);
        if let Some(q) = &self.q {
            rows.retain(|g| text(g, "id").is_some_and(|i| i.contains(q)) || text(g, "name").is_some_and(|n| n.contains(q)));
        }
        if let Some(s) = &self.status {
            rows.retain(|g| g["status"] == s.as_str());
        }
        for g in &mut rows {
            let id = g.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            let c = counts.remove(&id).unwrap_or_default();
            if let Some(o) = g.as_object_mut() {
                o.insert("children".into(), serde_json::to_value(c)?);
                o.insert("presence".into(), Value::Null);
            }
        }
        Ok(serde_json::json!({ "count": rows.len(), "online": online, "gateways": rows }))
    }
}

/// Children per `GET /v1/gateways/{id}/devices` answer; ingest bounds them far lower (`MAX_CHILDREN`).
pub const MAX_DEVICE_ROWS: u32 = 10_000;

/// `GET /v1/gateways/{id}/devices`: the gateway's sensors other than itself, then their newest samples.
pub fn devices_queries(gateway: &str) -> [Query; 2] {
    [
        Query {
            sql: format!(
                "SELECT json_group_array(json(s)) AS j FROM (SELECT {SENSOR_JSON} AS s FROM sensors
                 WHERE gateway_id = ?1 AND id <> ?1 ORDER BY id LIMIT ?2)"
            )
            .into(),
            params: vec![Param::Text(gateway.to_owned()), Param::Int(i64::from(MAX_DEVICE_ROWS))],
        },
        Query { sql: devices::latest_samples_sql(Scope::Gateway).into(), params: vec![Param::Text(gateway.to_owned())] },
    ]
}

pub fn devices_body(gateway: &str, [sensors, samples]: [&str; 2]) -> Result<Value, serde_json::Error> {
    let rows: Vec<Value> = serde_json::from_str(sensors)?;
    let samples = devices::parse_samples(samples)?;
    let devices: Vec<Value> = rows.into_iter().map(|r| devices::with_tree_health(r, &samples)).collect();
    Ok(serde_json::json!({ "gatewayId": gateway, "count": devices.len(), "devices": devices }))
}

/// `GET /v1/sensors/{id}/events` and `GET /v1/gateways/{id}/events` query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    pub since: Option<i64>,
    pub limit: u32,
}

impl Events {
    pub fn parse<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Result<Events, ApiError> {
        let mut e = Events { since: None, limit: devices::EVENTS_DEFAULT_LIMIT };
        for (k, v) in pairs {
            match k {
                "since" => e.since = Some(parse_i64("since", v)?),
                "limit" => e.limit = parse_u32("limit", v)?,
                _ => {}
            }
        }
        if !(1..=devices::EVENTS_MAX_LIMIT).contains(&e.limit) {
            return Err(ApiError::bad_request(format!("limit must be 1..={}, not {}", devices::EVENTS_MAX_LIMIT, e.limit))
                .with("field", "limit")
                .with("maxLimit", devices::EVENTS_MAX_LIMIT));
        }
        Ok(e)
    }

    pub fn query(&self, of: EventsOf, id: &str) -> Query {
        Query {
            sql: devices::events_sql(of).into(),
            params: vec![
                Param::Text(id.to_owned()),
                Param::Int(self.since.unwrap_or(i64::MIN)),
                Param::Int(i64::from(self.limit)),
            ],
        }
    }

    /// The answer; `None`: no such sensor and no events.
    pub fn body(&self, of: EventsOf, id: &str, j: &str) -> Result<Option<Value>, serde_json::Error> {
        devices::events_body(of, id, self.since, self.limit, j)
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
