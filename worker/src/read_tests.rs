use super::*;
use rusqlite::types::Value as Sql;
use rusqlite::Connection;

fn db() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    for f in ["0001_init.sql", "0004_gateway_identity.sql"] {
        let path = format!("{}/../cloud-shim/migrations/{f}", env!("CARGO_MANIFEST_DIR"));
        conn.execute_batch(&std::fs::read_to_string(path).unwrap()).unwrap();
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
