//! The plan's SQL runs here on real SQLite with the real migrations (D1 is SQLite), so the rules and
//! the statements are both checked on the host.

use super::*;
use rusqlite::Connection;
use scs_protocol::telemetry::Gap;
use scs_protocol::{AgentInfo, DeviceReport, Metric, SensorInfo, Status, PROTOCOL_VERSION};

fn db() -> Connection {
    let conn = crate::sql::test_db();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../cloud-shim/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        conn.execute_batch(&std::fs::read_to_string(f).unwrap()).unwrap();
    }
    conn.execute("INSERT INTO gateways (id, public_key, mqtt_password_sha256, created_ms) VALUES ('gw-1', x'00', '00', 1)", [])
        .unwrap();
    conn.execute("INSERT INTO gateways (id, public_key, mqtt_password_sha256, created_ms) VALUES ('gw-2', x'00', '00', 1)", [])
        .unwrap();
    conn
}

fn snapshot(conn: &Connection, inputs: &[Input]) -> Snapshot {
    let q = snapshot_queries(inputs);
    let j: Vec<String> = q.iter().map(|s| conn.query_row(s.sql, [&s.json], |r| r.get(0)).unwrap()).collect();
    Snapshot::parse([&j[0], &j[1], &j[2], &j[3]]).unwrap()
}

/// Runs a batch the way D1 does: all statements in one transaction, all or nothing.
fn run(conn: &mut Connection, inputs: &[Input], max_children: usize) -> Result<Plan, rusqlite::Error> {
    let plan = Plan::build(inputs, snapshot(conn, inputs), max_children);
    let tx = conn.transaction()?;
    for s in plan.statements() {
        tx.execute(s.sql, [&s.json])?;
    }
    tx.commit()?;
    Ok(plan)
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn telemetry(gw: &str, seq: u64, sensors: &[&str]) -> Input {
    let mut b = TelemetryBatch::new(gw, 0xdead_beef_0000_0001, seq, 1);
    for s in sensors {
        b.devices.push(DeviceReport {
            sensor: (*s).into(),
            ts: 1_700_000_000_000 + seq,
            metrics: vec![Metric::new("cpu.usage_pct", 12.5), Metric::labelled("net.rx_bytes", "eth0", 9_007_199_254_740_993u64)],
        });
    }
    Input::Valid { gateway: gw.into(), topic: format!("scs/v1/{gw}/up/telemetry"), msg: Uplink::Telemetry(b), received_at: 5 }
}

#[test]
fn telemetry_is_stored_once_across_batches_and_within_one() {
    let mut conn = db();
    let p = run(&mut conn, &[telemetry("gw-1", 1, &["gw-1"]), telemetry("gw-1", 1, &["gw-1"])], 512).unwrap();
    assert_eq!(p.outcomes, vec![Outcome::Stored, Outcome::Duplicate]);
    let p = run(&mut conn, &[telemetry("gw-1", 1, &["gw-1"]), telemetry("gw-1", 2, &["gw-1"])], 512).unwrap();
    assert_eq!(p.outcomes, vec![Outcome::Duplicate, Outcome::Stored]);
    assert_eq!(count(&conn, "SELECT count(*) FROM metrics"), 4);
    assert_eq!(count(&conn, "SELECT count(*) FROM ingest_receipts"), 2);
    // Integers beyond 2^53 stay exact through the JSON parameter.
    assert_eq!(count(&conn, "SELECT value FROM metrics WHERE name = 'net.rx_bytes' LIMIT 1"), 9_007_199_254_740_993);
    let v: f64 = conn.query_row("SELECT value FROM metrics WHERE name = 'cpu.usage_pct' LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(v, 12.5);
    let (ty, seen): (String, i64) =
        conn.query_row("SELECT type, last_seen FROM sensors WHERE id = 'gw-1'", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((ty.as_str(), seen), ("EDGE_CONTROLLER", 5));
}

#[test]
fn a_key_stored_by_another_consumer_meanwhile_aborts_the_whole_batch() {
    let mut conn = db();
    let inputs = [telemetry("gw-1", 7, &["gw-1"]), telemetry("gw-1", 8, &["gw-1"])];
    let plan = Plan::build(&inputs, snapshot(&conn, &inputs), 512);
    run(&mut conn, &[telemetry("gw-1", 8, &["gw-1"])], 512).unwrap();
    let tx = conn.transaction().unwrap();
    let failed = plan.statements().iter().try_for_each(|s| tx.execute(s.sql, [&s.json]).map(|_| ()));
    assert!(failed.is_err(), "the receipt insert must conflict");
    drop(tx);
    assert_eq!(count(&conn, "SELECT count(*) FROM metrics"), 2, "nothing of the failed batch is left");
    let retry = run(&mut conn, &inputs, 512).unwrap();
    assert_eq!(retry.outcomes, vec![Outcome::Stored, Outcome::Duplicate]);
}

#[test]
fn sensors_belong_to_their_first_gateway_and_are_bounded() {
    let mut conn = db();
    run(&mut conn, &[telemetry("gw-1", 1, &["cam-1"])], 512).unwrap();
    let p = run(&mut conn, &[telemetry("gw-2", 1, &["cam-1", "gw-1", "gw-2"])], 512).unwrap();
    assert_eq!(p.outcomes, vec![Outcome::Stored]);
    assert_eq!(count(&conn, "SELECT count(*) FROM metrics WHERE gateway_id = 'gw-2'"), 2, "only its own sensor");
    assert_eq!(count(&conn, "SELECT count FROM rejections WHERE gateway_id = 'gw-2' AND reason = 'sensor_owner'"), 2);
    let p = run(&mut conn, &[telemetry("gw-1", 2, &["c-a", "c-b", "c-c"])], 2).unwrap();
    assert_eq!(p.outcomes, vec![Outcome::Stored]);
    assert_eq!(count(&conn, "SELECT count(*) FROM sensors WHERE gateway_id = 'gw-1' AND id <> 'gw-1'"), 2);
    assert_eq!(count(&conn, "SELECT count FROM rejections WHERE gateway_id = 'gw-1' AND reason = 'too_many_sensors'"), 2);
}

#[test]
fn inventory_status_gaps_commands_and_rejections() {
    let mut conn = db();
    let sensor = |id: &str, ty: &str, parent: Option<&str>, name: Option<&str>| SensorInfo {
        id: id.into(),
        sensor_type: ty.into(),
        parent: parent.map(Into::into),
        name: name.map(Into::into),
        attrs: None,
    };
    let inv = Inventory {
        v: PROTOCOL_VERSION,
        gateway: "gw-1".into(),
        boot: 1,
        seq: 10,
        ts: 1,
        sensors: vec![
            sensor("gw-1", SensorType::EDGE_CONTROLLER, None, None),
            sensor("cam-1", "CAMERA", Some("gw-1"), Some("Door")),
        ],
        agent: Some(AgentInfo { version: "1.2.3".into(), arch: "armv7".into(), os: None, hostname: Some("h".into()) }),
    };
    let older = {
        let mut o = inv.clone();
        o.seq = 3;
        if let Some(s) = o.sensors.get_mut(1) {
            s.name = Some("Old".into());
        }
        o
    };
    let mut b = TelemetryBatch::new("gw-1", 1, 11, 1);
    b.gap = Some(Gap { dropped: 4, first_seq: 2, last_seq: 5 });
    let topic = |k: &str| format!("scs/v1/gw-1/{k}");
    let inputs = vec![
        Input::Valid { gateway: "gw-1".into(), topic: topic("up/inventory"), msg: Uplink::Inventory(inv), received_at: 9 },
        Input::Valid { gateway: "gw-1".into(), topic: topic("up/inventory"), msg: Uplink::Inventory(older), received_at: 9 },
        Input::Valid { gateway: "gw-1".into(), topic: topic("up/telemetry"), msg: Uplink::Telemetry(b), received_at: 9 },
        Input::Valid {
            gateway: "gw-1".into(),
            topic: topic("status"),
            msg: Uplink::Status(Status {
                v: PROTOCOL_VERSION,
                gateway: "gw-1".into(),
                state: GatewayState::Online,
                boot: 1,
                ts: 1,
                version: None,
            }),
            received_at: 9,
        },
        Input::Valid {
            gateway: "gw-1".into(),
            topic: topic("up/command"),
            msg: Uplink::Command(CommandUpdate {
                v: PROTOCOL_VERSION,
                gateway: "gw-1".into(),
                boot: 1,
                seq: 12,
                ts: 1,
                id: "c-1".into(),
                state: scs_protocol::CommandState::Running,
                result: None,
                error: None,
                artifacts: None,
            }),
            received_at: 9,
        },
        Input::Rejected {
            gateway: "gw-1".into(),
            reason: "malformed".into(),
            error: "x".into(),
            topic: topic("up/telemetry"),
            at: 8,
        },
        Input::Rejected {
            gateway: "gw-1".into(),
            reason: "malformed".into(),
            error: "y".into(),
            topic: topic("up/telemetry"),
            at: 9,
        },
    ];
    let p = run(&mut conn, &inputs, 512).unwrap();
    assert!(p.sensors_changed);
    assert_eq!(p.command_updates.len(), 1);
    let name: String = conn.query_row("SELECT name FROM sensors WHERE id = 'cam-1'", [], |r| r.get(0)).unwrap();
    assert_eq!(name, "Door", "an older inventory does not overwrite a newer one");
    let attrs: String = conn.query_row("SELECT attrs FROM sensors WHERE id = 'gw-1'", [], |r| r.get(0)).unwrap();
    assert!(attrs.contains("\"agentVersion\":\"1.2.3\""));
    let status: String = conn.query_row("SELECT status FROM sensors WHERE id = 'gw-1'", [], |r| r.get(0)).unwrap();
    assert_eq!(status, "online");
    assert_eq!(count(&conn, "SELECT dropped FROM gaps"), 4);
    assert_eq!(count(&conn, "SELECT count FROM rejections WHERE reason = 'malformed'"), 2);
    assert_eq!(count(&conn, "SELECT count(*) FROM ingest_receipts WHERE kind = 'command'"), 1);
    run(&mut conn, &inputs[5..], 512).unwrap();
    assert_eq!(count(&conn, "SELECT count FROM rejections WHERE reason = 'malformed'"), 4, "counts add up across batches");
}

#[test]
fn big_batches_are_split_into_statements_under_the_value_limit() {
    let mut conn = db();
    let sensors: Vec<String> = (0..200).map(|i| format!("s-{i:03}")).collect();
    let names: Vec<&str> = sensors.iter().map(String::as_str).collect();
    let inputs: Vec<Input> = (0..60).map(|seq| telemetry("gw-1", seq, &names)).collect();
    let p = run(&mut conn, &inputs, 512).unwrap();
    let stmts = p.statements();
    assert!(stmts.iter().filter(|s| s.sql == INSERT_METRICS).count() > 1);
    assert!(stmts.iter().all(|s| s.json.len() <= MAX_PARAM_BYTES));
    assert_eq!(count(&conn, "SELECT count(*) FROM metrics"), 60 * 200 * 2);
}

fn with_events(gw: &str, seq: u64, events: Vec<scs_protocol::DeviceEvent>) -> Input {
    let mut b = TelemetryBatch::new(gw, 0xdead_beef_0000_0001, seq, 1);
    b.devices.push(DeviceReport { sensor: "cam-1".into(), ts: 100, metrics: vec![Metric::new("device.online", 1i64)] });
    b.events = Some(events);
    Input::Valid { gateway: gw.into(), topic: format!("scs/v1/{gw}/up/telemetry"), msg: Uplink::Telemetry(b), received_at: 7 }
}

#[test]
fn device_events_are_stored_with_their_batch_once_and_only_for_own_sensors() {
    let mut conn = db();
    run(&mut conn, &[telemetry("gw-2", 1, &["cam-x"])], 512).unwrap();
    let mut replaced = scs_protocol::DeviceEvent::new("cam-1", 90, scs_protocol::EventKind::REPLACED);
    replaced.detail = Some("serial A -> B".into());
    replaced.attrs = Some([("old".to_owned(), "A".to_owned()), ("new".to_owned(), "B".to_owned())].into());
    let events = vec![
        replaced,
        scs_protocol::DeviceEvent::new("nvr-1", 95, scs_protocol::EventKind::HDD_FAILED),
        scs_protocol::DeviceEvent::new("cam-x", 96, scs_protocol::EventKind::WENT_DOWN),
    ];
    let batch = with_events("gw-1", 3, events);
    let p = run(&mut conn, &[batch.clone(), batch.clone()], 512).unwrap();
    assert_eq!(p.outcomes, vec![Outcome::Stored, Outcome::Duplicate]);
    assert!(p.sensors_changed, "an event's unknown sensor gets a row, as a sample's does");
    assert_eq!(count(&conn, "SELECT count(*) FROM device_events"), 2, "cam-x belongs to gw-2");
    assert_eq!(count(&conn, "SELECT count FROM rejections WHERE gateway_id = 'gw-1' AND reason = 'sensor_owner'"), 1);
    assert_eq!(count(&conn, "SELECT count(*) FROM sensors WHERE id = 'nvr-1' AND gateway_id = 'gw-1'"), 1);
    let (idx, kind, detail, attrs, boot): (i64, String, String, String, String) = conn
        .query_row("SELECT idx, kind, detail, attrs, boot FROM device_events WHERE sensor_id = 'cam-1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap();
    assert_eq!((idx, kind.as_str(), detail.as_str()), (0, "device.replaced", "serial A -> B"));
    assert_eq!(attrs, r#"{"new":"B","old":"A"}"#);
    assert_eq!(boot, "deadbeef00000001");
    assert_eq!(count(&conn, "SELECT idx FROM device_events WHERE sensor_id = 'nvr-1'"), 1, "position in the batch");
    // Retried after the snapshot went stale: the receipt conflict aborts the batch, events included.
    let again = Plan::build(std::slice::from_ref(&batch), Snapshot::default(), 512);
    let tx = conn.transaction().unwrap();
    assert!(again.statements().iter().try_for_each(|s| tx.execute(s.sql, [&s.json]).map(|_| ())).is_err());
    drop(tx);
    assert_eq!(count(&conn, "SELECT count(*) FROM device_events"), 2);
}

#[test]
fn command_update_store_failures_fail_the_batch_and_refusals_are_counted() {
    use crate::sessions::store::UpdateVerdict;
    let update = |id: &str| {
        (
            "gw-1".to_owned(),
            CommandUpdate {
                v: PROTOCOL_VERSION,
                gateway: "gw-1".into(),
                boot: 1,
                seq: 1,
                ts: 1,
                id: id.into(),
                state: scs_protocol::CommandState::Running,
                result: None,
                error: None,
                artifacts: None,
            },
        )
    };
    let plan = || Plan { command_updates: vec![update("c-1"), update("c-2")], ..Plan::default() };
    let mut p = plan();
    assert!(p.command_verdicts(&[UpdateVerdict::Applied, UpdateVerdict::Retry("D1 down".into())], 5).is_err());
    assert!(p.statements().is_empty(), "a transient failure counts nothing");
    assert!(plan().command_verdicts(&[UpdateVerdict::Retry("D1 down".into())], 5).is_err(), "the sessions stopped early");
    let mut p = plan();
    p.command_verdicts(&[UpdateVerdict::Refused("unknown command c-1".into()), UpdateVerdict::Applied], 5).unwrap();
    let mut conn = db();
    let tx = conn.transaction().unwrap();
    for s in p.statements() {
        tx.execute(s.sql, [&s.json]).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(count(&conn, "SELECT count FROM rejections WHERE reason = 'command_update'"), 1);
}
