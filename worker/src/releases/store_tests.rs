//! The release store over a real SQLite database holding every shim migration (the Worker's D1 schema).

use super::store::*;
use crate::sessions::store_tests::db;

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

fn row(id: &str, version: &str, target: &str) -> ReleaseRow {
    ReleaseRow {
        id: id.into(),
        version: version.into(),
        target: target.into(),
        size: 3,
        sha256: "0".repeat(64),
        signature: "sig".into(),
        file_name: format!("scs-agent-{version}-{target}.update"),
        object_key: format!("releases/{id}"),
        created_ms: 1,
    }
}

#[test]
fn insert_list_offer_and_gateway_facts() {
    let db = db();
    let a = row("rel-a", "1.0.0", "armv7-unknown-linux-gnueabihf");
    assert!(run(insert(&db, &a)).unwrap());
    assert!(!run(insert(&db, &row("rel-b", "1.0.0", "armv7-unknown-linux-gnueabihf"))).unwrap(), "one build per version+target");
    assert!(run(insert(&db, &row("rel-c", "1.0.0", "aarch64-unknown-linux-gnu"))).unwrap());
    assert_eq!(run(by_version_target(&db, "1.0.0", "armv7-unknown-linux-gnueabihf")).unwrap(), Some(a.clone()));
    assert_eq!(run(by_version(&db, "1.0.0")).unwrap().len(), 2);
    assert_eq!(run(get(&db, "rel-a")).unwrap(), Some(a.clone()));
    assert_eq!(run(get(&db, "rel-b")).unwrap(), None);
    run(record_offer(&db, "cmd-1", "rel-a", "gw-1", "token:env", 5)).unwrap();
    let listed = run(list(&db)).unwrap();
    assert_eq!(listed.iter().find(|(r, _)| r.id == "rel-a").map(|(_, n)| *n), Some(1));
    assert_eq!(listed.iter().find(|(r, _)| r.id == "rel-c").map(|(_, n)| *n), Some(0));
    assert_eq!(a.to_json()["arch"], "arm");
    assert_eq!(run(gateway_status(&db, "gw-1")).unwrap(), None);
    assert_eq!(run(gateway_arch(&db, "gw-1")).unwrap(), None);
    db.0.borrow()
        .execute(
            "INSERT INTO sensors (id, type, gateway_id, attrs, created_at, updated_at)
             VALUES ('gw-1', 'EDGE_CONTROLLER', 'gw-1', '{\"arch\":\"arm\"}', 1, 1)",
            [],
        )
        .unwrap();
    assert_eq!(run(gateway_arch(&db, "gw-1")).unwrap().as_deref(), Some("arm"));
}
