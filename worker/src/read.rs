//! The read API's queries, as the shim answers them (`cloud-shim/src/api/sensors.rs`, `gateways.rs`):
//! same paths, parameters, limits and JSON shapes. SQLite builds the JSON, so integers are exact.

use serde_json::Value;

use crate::http::ApiError;
use crate::sql::{Param, Query};

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

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
