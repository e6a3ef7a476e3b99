use super::devices::EventsOf;
use super::*;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;

fn db() -> Connection {
    let conn = crate::sql::test_db();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../cloud-shim/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|x| x == "sql")) {
        conn.execute_batch(&std::fs::read_to_string(f).unwrap()).unwrap();
    }
    conn.execute_batch(
        "INSERT INTO sensors (id, type, parent_sensor_id, name, attrs, gateway_id, status, last_seen, created_at, updated_at) VALUES
           ('gw-1', 'EDGE_CONTROLLER', NULL, NULL, '{\"arch\":\"armv7\"}', 'gw-1', 'online', 5, 1, 1),
           ('cam-1', 'CAMERA', 'gw-1', 'Door', NULL, 'gw-1', 'unknown', 4, 1, 1),
           ('cam-2', 'CAMERA', 'gw-1', NULL, 'not json', 'gw-1', 'unknown', NULL, 1, 1);
         INSERT INTO metrics VALUES ('gw-1', 'cpu.usage_pct', '', 10, 12.5, 'gw-1'), ('gw-1', 'net.rx_bytes', 'eth0', 11, 9007199254740993, 'gw-1');",
    )
    .unwrap();
    conn
}

/// Runs a query as the glue does: integer parameters clamped to JavaScript's exact range.
fn j(conn: &Connection, q: &Query) -> Option<String> {
    let params: Vec<Sql> = q
        .params
        .iter()
        .map(|p| match p {
            Param::Null => Sql::Null,
            Param::Text(s) => Sql::Text(s.clone()),
            Param::Int(i) => Sql::Integer(Param::safe_int(*i)),
        })
        .collect();
    conn.query_row(&q.sql, rusqlite::params_from_iter(params), |r| r.get(0)).ok()
}

#[test]
fn sensor_pages_follow_the_shims_shape_and_cursor() {
    let conn = db();
    let q = SensorList::parse([("limit", "2")].into_iter()).unwrap();
    let (body, next) = q.page(&j(&conn, &q.query()).unwrap()).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["id"], "cam-1");
    assert_eq!(rows[0]["parentSensorId"], "gw-1");
    assert_eq!(rows[1]["attrs"], serde_json::json!({}), "attrs that are not JSON read as an empty object");
    assert_eq!(next.as_deref(), Some("cam-2"));
    assert_eq!(q.next_link("cam-2"), "</v1/sensors?limit=2&cursor=cam-2>; rel=\"next\"");
    let q2 = SensorList::parse([("limit", "2"), ("cursor", "cam-2")].into_iter()).unwrap();
    let (body, next) = q2.page(&j(&conn, &q2.query()).unwrap()).unwrap();
    assert_eq!(serde_json::from_str::<Vec<Value>>(&body).unwrap()[0]["attrs"]["arch"], "armv7");
    assert_eq!(next, None);
    let children = SensorList::parse([("parentSensorId", "gw-1")].into_iter()).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&children.page(&j(&conn, &children.query()).unwrap()).unwrap().0).unwrap().len(),
        2
    );
    assert!(SensorList::parse([("limit", "0")].into_iter()).is_err());
    assert!(SensorList::parse([("limit", "1001")].into_iter()).is_err());
    let one: Value = serde_json::from_str(&j(&conn, &sensor_query("cam-1")).unwrap()).unwrap();
    assert_eq!((one["name"].as_str(), one["lastSeen"].as_i64()), (Some("Door"), Some(4)));
    assert_eq!(j(&conn, &sensor_query("nope")), None);
}

#[test]
fn metrics_are_exact_and_filtered() {
    let conn = db();
    let all = Metrics::parse(std::iter::empty()).unwrap();
    let body = all.body("gw-1", &j(&conn, &all.query("gw-1")).unwrap()).unwrap().unwrap();
    assert!(body.contains("9007199254740993"), "integers beyond 2^53 are exact: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 2);
    assert_eq!(v["samples"][1]["label"], "eth0");
    assert!(v["samples"][0].get("label").is_none(), "an empty label is left out, as the shim does");
    let named = Metrics::parse([("name", "cpu.usage_pct"), ("order", "desc"), ("from", "5"), ("to", "10")].into_iter()).unwrap();
    let v: Value = serde_json::from_str(&named.body("gw-1", &j(&conn, &named.query("gw-1")).unwrap()).unwrap().unwrap()).unwrap();
    assert_eq!((v["count"].as_i64(), v["samples"][0]["value"].as_f64(), v["from"].as_i64()), (Some(1), Some(12.5), Some(5)));
    assert_eq!(all.body("nope", &j(&conn, &all.query("nope")).unwrap()).unwrap(), None);
    assert!(Metrics::parse([("from", "9"), ("to", "1")].into_iter()).is_err());
    assert!(Metrics::parse([("order", "up")].into_iter()).is_err());
}

#[test]
fn stats_from_the_store() {
    let conn = db();
    conn.execute_batch("INSERT INTO rejections VALUES ('gw-1', 'malformed', 3, 'e', 't', 1, 2)").unwrap();
    let v: Value = serde_json::from_str(&j(&conn, &gateway_stats_query("gw-1")).unwrap()).unwrap();
    assert_eq!((v["rejected"].as_i64(), v["rejections"][0]["reason"].as_str()), (Some(3), Some("malformed")));
    let v: Value = serde_json::from_str(&j(&conn, &stats_query()).unwrap()).unwrap();
    assert_eq!(v["online"], serde_json::json!(["gw-1"]));
}

/// Probe samples of gw-1's children: cam-1 up with a lost stream on one profile and a broken login,
/// cam-2 down with a drifting clock (older samples say otherwise), and a queue backlog on the gateway.
fn with_health(conn: &Connection) {
    conn.execute_batch(
        "INSERT INTO metrics VALUES
           ('cam-1', 'device.online', '', 100, 1, 'gw-1'), ('cam-1', 'device.auth_ok', '', 100, 0, 'gw-1'),
           ('cam-1', 'camera.stream_ok', 'main', 100, 1, 'gw-1'), ('cam-1', 'camera.stream_ok', 'sub', 100, 0, 'gw-1'),
           ('cam-1', 'camera.stream_ok', 'sub', 50, 1, 'gw-1'), ('cam-1', 'device.latency_ms', '', 90, 12, 'gw-1'),
           ('cam-2', 'device.online', '', 200, 0, 'gw-1'), ('cam-2', 'device.online', '', 150, 1, 'gw-1'),
           ('cam-2', 'device.clock_offset_s', '', 200, -45.5, 'gw-1'), ('cam-2', 'device.latency_ms', '', 200, 3.5, 'gw-1'),
           ('gw-1', 'agent.queue_depth', '', 20, 7, 'gw-1'), ('gw-1', 'agent.queue_bytes', '', 20, 700, 'gw-1');
         INSERT INTO gaps VALUES ('gw-1', '0000000000000001', 3, 4, 1, 4, 30);
         INSERT INTO rejections VALUES ('gw-1', 'malformed', 2, 'e', 't', 1, 2);",
    )
    .unwrap();
}

#[test]
fn children_health_follows_the_shared_rules() {
    let conn = db();
    with_health(&conn);
    let q = SensorList::parse([("parentSensorId", "gw-1")].into_iter()).unwrap();
    let (body, _) = q.page(&j(&conn, &q.query()).unwrap()).unwrap();
    let samples = j(&conn, &SensorList::health_query(&body).unwrap()).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&SensorList::add_health(&body, &samples).unwrap()).unwrap();
    assert_eq!(
        rows[0]["health"],
        serde_json::json!({"online": true, "authOk": false, "streamOk": false, "hddOk": null, "clockOffsetS": null,
                           "ts": 100, "problems": ["auth_broken", "stream_lost"]})
    );
    assert_eq!(rows[1]["health"]["problems"], serde_json::json!(["down", "clock_drift"]));
    assert_eq!(rows[1]["health"]["clockOffsetS"], -45.5);

    let [a, b] = devices_queries("gw-1");
    let v = devices_body("gw-1", [&j(&conn, &a).unwrap(), &j(&conn, &b).unwrap()]).unwrap();
    assert_eq!(v["count"], 2);
    let cam1 = &v["devices"][0]["health"];
    assert_eq!(
        (cam1["status"].as_str(), cam1["online"].as_bool(), cam1["latencyMs"].as_i64()),
        (Some("online"), Some(true), Some(12))
    );
    let cam2 = &v["devices"][1]["health"];
    assert_eq!(
        (cam2["status"].as_str(), cam2["latencyMs"].as_f64(), cam2["ts"].as_i64()),
        (Some("offline"), Some(3.5), Some(200))
    );
    assert_eq!(v["devices"][1]["attrs"], serde_json::json!({}));

    let [g, c, s] = Fleet::queries();
    let texts = [j(&conn, &g).unwrap(), j(&conn, &c).unwrap(), j(&conn, &s).unwrap()];
    let v = Fleet::default().body([&texts[0], &texts[1], &texts[2]]).unwrap();
    assert_eq!((v["count"].as_i64(), v["online"].as_i64()), (Some(1), Some(1)));
    let gw = &v["gateways"][0];
    assert_eq!(gw["children"]["problems"], serde_json::json!({"auth_broken": 1, "stream_lost": 1, "down": 1, "clock_drift": 1}));
    assert_eq!((gw["children"]["online"].as_i64(), gw["children"]["offline"].as_i64()), (Some(1), Some(1)));
    assert_eq!(gw["children"]["byType"], serde_json::json!({"CAMERA": 2}));
    assert_eq!(gw["backlog"], serde_json::json!({"queueDepth": 7, "queueBytes": 700, "ts": 20}));
    assert_eq!(gw["gaps"], serde_json::json!({"reports": 1, "dropped": 4, "lastAt": 30}));
    assert_eq!((gw["rejected"].as_i64(), gw["openCommands"].as_i64()), (Some(2), Some(0)));
    assert_eq!(gw["attrs"]["arch"], "armv7");
    assert!(gw["presence"].is_null());
    let only = |pairs: &[(&str, &str)]| {
        Fleet::parse(pairs.iter().copied()).body([&texts[0], &texts[1], &texts[2]]).unwrap()["count"].as_i64()
    };
    assert_eq!(only(&[("q", "GW-")]), Some(1), "case-insensitive");
    assert_eq!(only(&[("q", "zzz")]), Some(0));
    assert_eq!(only(&[("status", "offline")]), Some(0));
}

#[test]
fn events_newest_first_with_since_and_limit() {
    let conn = db();
    conn.execute_batch(
        "INSERT INTO device_events VALUES
           ('gw-1', '0000000000000001', 5, 0, 'cam-1', 100, 'device.down', NULL, NULL, 7),
           ('gw-1', '0000000000000001', 5, 1, 'cam-1', 100, 'device.up', 'back', '{\"old\":\"A\"}', 7),
           ('gw-1', '0000000000000001', 6, 0, 'cam-2', 300, 'stream.lost', NULL, 'junk', 8);",
    )
    .unwrap();
    let all = Events::parse(std::iter::empty()).unwrap();
    let v = all.body(EventsOf::Gateway, "gw-1", &j(&conn, &all.query(EventsOf::Gateway, "gw-1")).unwrap()).unwrap().unwrap();
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["stream.lost", "device.up", "device.down"]);
    assert_eq!((v["gatewayId"].as_str(), v["limit"].as_i64(), v["count"].as_i64()), (Some("gw-1"), Some(100), Some(3)));
    assert_eq!(v["events"][1]["attrs"], serde_json::json!({"old": "A"}));
    assert_eq!(v["events"][0]["attrs"], serde_json::json!({}), "attrs that are not JSON read as an empty object");
    assert_eq!(v["events"][1]["receivedAt"], 7);
    let q = Events::parse([("since", "100"), ("limit", "1")].into_iter()).unwrap();
    let v = q.body(EventsOf::Sensor, "cam-1", &j(&conn, &q.query(EventsOf::Sensor, "cam-1")).unwrap()).unwrap().unwrap();
    assert_eq!((v["sensorId"].as_str(), v["since"].as_i64(), v["count"].as_i64()), (Some("cam-1"), Some(100), Some(1)));
    assert_eq!(v["events"][0]["detail"], "back");
    assert_eq!(all.body(EventsOf::Sensor, "nope", &j(&conn, &all.query(EventsOf::Sensor, "nope")).unwrap()).unwrap(), None);
    let none = all.body(EventsOf::Sensor, "gw-1", &j(&conn, &all.query(EventsOf::Sensor, "gw-1")).unwrap()).unwrap().unwrap();
    assert_eq!(none["count"], 0, "a known sensor without events is an empty list");
    assert!(Events::parse([("limit", "0")].into_iter()).is_err());
    assert!(Events::parse([("limit", "1001")].into_iter()).is_err());
    assert!(Events::parse([("since", "x")].into_iter()).is_err());
}
