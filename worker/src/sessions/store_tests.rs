//! The session store over a real SQLite file holding every shim migration, through the same [`Sql`]
//! trait D1 implements (rusqlite here). A batch runs in one transaction, as a D1 batch does.

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use scs_protocol::{ArtifactMeta, CommandState, CommandUpdate, Value, PROTOCOL_VERSION};
use serde_json::{json, Map, Value as Json};

use super::store::*;
use crate::db::{Arg, Row, Sql, SqlError, Stmt};

pub struct Lite(pub std::cell::RefCell<Connection>);

fn to_sql(a: &Arg) -> rusqlite::types::Value {
    match a {
        Arg::Null => rusqlite::types::Value::Null,
        Arg::Int(i) => rusqlite::types::Value::Integer(*i),
        Arg::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

fn e(x: rusqlite::Error) -> SqlError {
    SqlError::Db(x.to_string())
}

impl Sql for Lite {
    async fn query(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, SqlError> {
        let conn = self.0.borrow();
        let mut stmt = conn.prepare(sql).map_err(e)?;
        let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let params: Vec<rusqlite::types::Value> = args.iter().map(to_sql).collect();
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(e)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            let mut m = Map::new();
            for (i, n) in names.iter().enumerate() {
                let v = match r.get_ref(i).map_err(e)? {
                    ValueRef::Null => Json::Null,
                    ValueRef::Integer(i) => json!(i),
                    ValueRef::Real(f) => json!(f),
                    ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                    ValueRef::Blob(_) => Json::Null,
                };
                m.insert(n.clone(), v);
            }
            out.push(m);
        }
        Ok(out)
    }

    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, SqlError> {
        let mut conn = self.0.borrow_mut();
        let tx = conn.transaction().map_err(e)?;
        let mut changed = Vec::new();
        for s in stmts {
            let params: Vec<rusqlite::types::Value> = s.args.iter().map(to_sql).collect();
            changed.push(tx.execute(s.sql, rusqlite::params_from_iter(params)).map_err(e)? as u64);
        }
        tx.commit().map_err(e)?;
        Ok(changed)
    }
}

/// A database with every migration of `cloud-shim/migrations`, in name order.
pub fn db() -> Lite {
    let conn = Connection::open_in_memory().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cloud-shim/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|f| f.unwrap().path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|x| x == "sql")) {
        conn.execute_batch(&std::fs::read_to_string(f).unwrap()).unwrap();
    }
    Lite(std::cell::RefCell::new(conn))
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

fn new(id: &str, gw: &str, now: i64) -> NewCommand {
    NewCommand {
        id: id.into(),
        gateway_id: gw.into(),
        command_type: "device.info".into(),
        params: json!({}),
        confirm: false,
        requested_by: "token:alice".into(),
        now,
        expires_at: now + 60_000,
        timeout_secs: 10,
        target: None,
    }
}

fn update(id: &str, gw: &str, state: CommandState) -> CommandUpdate {
    CommandUpdate {
        v: PROTOCOL_VERSION,
        gateway: gw.into(),
        boot: 1,
        seq: 1,
        ts: 0,
        id: id.into(),
        state,
        result: None,
        error: None,
        artifacts: None,
    }
}

fn ids(v: Vec<CommandRow>) -> Vec<String> {
    v.into_iter().map(|r| r.id).collect()
}

#[test]
fn lifecycle_is_monotonic_and_every_transition_is_audited() {
    let db = db();
    run(async {
        let row = create(&db, &new("c1", "gw", 1000)).await.unwrap();
        assert_eq!(row.state, CommandState::Queued);
        assert!(mark_delivered(&db, &row, "worker", 1001).await.unwrap());
        // A second delivery (re-send) counts but does not move or audit.
        let again = get(&db, "c1").await.unwrap().unwrap();
        assert!(!mark_delivered(&db, &again, "worker", 1002).await.unwrap());
        assert_eq!(get(&db, "c1").await.unwrap().unwrap().deliveries, 2);
        assert!(apply_update(&db, "gw", &update("c1", "gw", CommandState::Running), 1003).await.unwrap());
        let mut done = update("c1", "gw", CommandState::Succeeded);
        done.result = Some(Value::map([("ok", Value::Bool(true))]));
        done.artifacts = Some(vec![ArtifactMeta {
            id: "a1".into(),
            name: "b.tar.gz".into(),
            size: 3,
            sha256: "0".repeat(64),
            content_type: "application/gzip".into(),
        }]);
        assert!(apply_update(&db, "gw", &done, 1004).await.unwrap());
        // Late and replayed updates change nothing and write no audit row.
        assert!(!apply_update(&db, "gw", &update("c1", "gw", CommandState::Accepted), 1005).await.unwrap());
        assert!(!apply_update(&db, "gw", &done, 1006).await.unwrap());
        let row = get(&db, "c1").await.unwrap().unwrap();
        assert_eq!(row.state, CommandState::Succeeded);
        assert_eq!(row.result, Some(json!({"ok": true})));
        assert_eq!(row.artifacts.unwrap()[0]["sha256"], "0".repeat(64));
        let trail: Vec<(String, Option<String>, String)> =
            audit(&db, "c1").await.unwrap().into_iter().map(|a| (a.actor, a.from_state, a.to_state)).collect();
        let want = [
            ("token:alice", None, "queued"),
            ("worker", Some("queued"), "delivered"),
            ("agent:gw", Some("delivered"), "running"),
            ("agent:gw", Some("running"), "succeeded"),
        ];
        assert_eq!(trail, want.map(|(a, f, t)| (a.to_owned(), f.map(str::to_owned), t.to_owned())));
    });
}

#[test]
fn a_stale_read_never_moves_a_command_or_audits() {
    let db = db();
    run(async {
        let stale = create(&db, &new("c1", "gw", 1000)).await.unwrap();
        assert!(apply_update(&db, "gw", &update("c1", "gw", CommandState::Rejected), 1001).await.unwrap());
        // The object read `queued` before the agent's rejection landed: its delivery must not apply.
        assert!(!mark_delivered(&db, &stale, "worker", 1002).await.unwrap());
        assert_eq!(get(&db, "c1").await.unwrap().unwrap().state, CommandState::Rejected);
        assert_eq!(audit(&db, "c1").await.unwrap().len(), 2);
    });
}

#[test]
fn updates_from_strangers_are_refused() {
    let db = db();
    run(async {
        create(&db, &new("c1", "gw", 1000)).await.unwrap();
        assert!(matches!(
            apply_update(&db, "gw", &update("nope", "gw", CommandState::Running), 1).await,
            Err(CommandStoreError::UnknownCommand { .. })
        ));
        assert!(matches!(
            apply_update(&db, "other", &update("c1", "other", CommandState::Running), 1).await,
            Err(CommandStoreError::WrongGateway { .. })
        ));
    });
}

#[test]
fn cancel_expiry_pending_and_history() {
    let db = db();
    run(async {
        create(&db, &new("q", "gw", 1000)).await.unwrap();
        let d = create(&db, &new("d", "gw", 1001)).await.unwrap();
        create(&db, &new("old", "gw2", 1002)).await.unwrap();
        mark_delivered(&db, &d, "worker", 1100).await.unwrap();
        assert_eq!(ids(pending_for(&db, "gw", false, 2000).await.unwrap()), ["q"]);
        assert_eq!(ids(pending_for(&db, "gw", true, 2000).await.unwrap()), ["q", "d"]);
        assert_eq!(ids(pending_for(&db, "gw", true, 1_000_000).await.unwrap()), ["d"]);
        assert_eq!(next_expiry(&db, "gw").await.unwrap(), Some(61_000));
        assert!(
            matches!(request_cancel(&db, "q", "bob", 2000).await.unwrap(), CancelOutcome::Cancelled(r) if r.state == CommandState::Cancelled)
        );
        assert!(
            matches!(request_cancel(&db, "d", "bob", 2000).await.unwrap(), CancelOutcome::Requested(r) if r.cancel_requested_at == Some(2000))
        );
        assert_eq!(ids(pending_cancels(&db, "gw").await.unwrap()), ["d"]);
        assert!(matches!(request_cancel(&db, "q", "bob", 2001).await.unwrap(), CancelOutcome::AlreadyFinished(_)));
        assert_eq!(request_cancel(&db, "zzz", "bob", 2001).await.unwrap(), CancelOutcome::NotFound);
        assert_eq!(next_expiry(&db, "gw").await.unwrap(), None);
        // Expiry is per gateway and takes only commands that never left the cloud.
        assert!(expire_due(&db, "gw", "worker", 1_000_000).await.unwrap().is_empty());
        assert_eq!(ids(expire_due(&db, "gw2", "worker", 1_000_000).await.unwrap()), ["old"]);
        let old = get(&db, "old").await.unwrap().unwrap();
        assert_eq!(old.state, CommandState::Expired);
        assert!(old.error.unwrap().contains("expired"));
        assert_eq!(ids(list_for_gateway(&db, "gw", 10, None).await.unwrap()), ["d", "q"]);
        assert_eq!(ids(list_for_gateway(&db, "gw", 10, Some(1001)).await.unwrap()), ["q"]);
        let trail = audit(&db, "d").await.unwrap();
        assert_eq!(trail.last().unwrap().detail.as_deref(), Some("cancel requested; sent to the gateway"));
    });
}

#[test]
fn targets_are_children_of_the_gateway_only() {
    let db = db();
    {
        let conn = db.0.borrow();
        for (id, ty, gw) in [("gw", "EDGE_CONTROLLER", "gw"), ("cam-1", "CAMERA", "gw"), ("cam-9", "CAMERA", "gw-2")] {
            conn.execute(
                "INSERT INTO sensors (id, type, gateway_id, created_at, updated_at) VALUES (?1, ?2, ?3, 0, 0)",
                [id, ty, gw],
            )
            .unwrap();
        }
    }
    run(async {
        assert_eq!(child_sensor_type(&db, "gw", "cam-1").await.unwrap().as_deref(), Some("CAMERA"));
        assert_eq!(child_sensor_type(&db, "gw", "cam-9").await.unwrap(), None, "another gateway's camera");
        assert_eq!(child_sensor_type(&db, "gw", "gw").await.unwrap(), None, "the gateway is not its own child");
        let mut c = new("t", "gw", 5);
        c.target = Some("cam-1".into());
        assert_eq!(create(&db, &c).await.unwrap().target.as_deref(), Some("cam-1"));
    });
}

/// A database that is down: every call fails as D1 does when it is unreachable or overloaded.
struct Down;

impl Sql for Down {
    async fn query(&self, _: &str, _: Vec<Arg>) -> Result<Vec<Row>, SqlError> {
        Err(SqlError::Db("D1_ERROR: Network connection lost.".into()))
    }
    async fn batch(&self, _: Vec<Stmt>) -> Result<Vec<u64>, SqlError> {
        Err(SqlError::Db("D1_ERROR: Network connection lost.".into()))
    }
}

/// Reads work, the write batch fails (a D1 reset between the read and the write).
struct WritesFail(Lite);

impl Sql for WritesFail {
    async fn query(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, SqlError> {
        self.0.query(sql, args).await
    }
    async fn batch(&self, _: Vec<Stmt>) -> Result<Vec<u64>, SqlError> {
        Err(SqlError::Db("D1_ERROR: database is overloaded".into()))
    }
}

#[test]
fn store_failures_are_retried_and_refusals_are_final() {
    let lite = db();
    run(async {
        create(&lite, &new("c1", "gw", 1000)).await.unwrap();
        let running = update("c1", "gw", CommandState::Running);
        assert!(matches!(UpdateVerdict::of(apply_update(&Down, "gw", &running, 1).await), UpdateVerdict::Retry(_)));
        let flaky = WritesFail(lite);
        assert!(matches!(UpdateVerdict::of(apply_update(&flaky, "gw", &running, 1).await), UpdateVerdict::Retry(_)));
        let lite = flaky.0;
        assert_eq!(get(&lite, "c1").await.unwrap().unwrap().state, CommandState::Queued, "nothing applied");
        // The retry lands.
        assert_eq!(UpdateVerdict::of(apply_update(&lite, "gw", &running, 2).await), UpdateVerdict::Applied);
        assert_eq!(get(&lite, "c1").await.unwrap().unwrap().state, CommandState::Running);
        // A repeat of an applied update is no refusal.
        assert_eq!(UpdateVerdict::of(apply_update(&lite, "gw", &running, 3).await), UpdateVerdict::Applied);
        let unknown = UpdateVerdict::of(apply_update(&lite, "gw", &update("nope", "gw", CommandState::Running), 4).await);
        assert!(matches!(&unknown, UpdateVerdict::Refused(e) if e.contains("nope")), "{unknown:?}");
        let stranger = UpdateVerdict::of(apply_update(&lite, "other", &update("c1", "other", CommandState::Succeeded), 5).await);
        assert!(matches!(stranger, UpdateVerdict::Refused(_)));
    });
    assert!(CommandStoreError::Sql(SqlError::Db("x".into())).is_transient());
    assert!(!CommandStoreError::BadRow { command: "c".into(), what: "state" }.is_transient());
}

/// A database where another writer moves the command to `running` just before this writer's first
/// batch: the interleaving of two ingest requests applying `running` and `succeeded` at once.
struct RacedBy<'a> {
    db: &'a Lite,
    raced: std::cell::Cell<bool>,
}

impl Sql for RacedBy<'_> {
    async fn query(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, SqlError> {
        self.db.query(sql, args).await
    }

    async fn batch(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, SqlError> {
        if !self.raced.replace(true) {
            apply_update(self.db, "gw", &update("c1", "gw", CommandState::Running), 1002).await.unwrap();
        }
        self.db.batch(stmts).await
    }
}

#[test]
fn an_update_that_loses_the_race_to_an_earlier_state_still_lands() {
    let db = db();
    run(async {
        let row = create(&db, &new("c1", "gw", 1000)).await.unwrap();
        assert!(mark_delivered(&db, &row, "worker", 1001).await.unwrap());
        let raced = RacedBy { db: &db, raced: std::cell::Cell::new(false) };
        assert!(apply_update(&raced, "gw", &update("c1", "gw", CommandState::Succeeded), 1003).await.unwrap());
        assert_eq!(get(&db, "c1").await.unwrap().unwrap().state, CommandState::Succeeded);
        let trail: Vec<String> = audit(&db, "c1").await.unwrap().into_iter().map(|a| a.to_state).collect();
        assert_eq!(trail, ["queued", "delivered", "running", "succeeded"]);
    });
}
