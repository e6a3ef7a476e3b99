//! The artifact store over a real SQLite database holding every shim migration (the Worker's D1 schema).

use super::parts::committed_offset;
use super::store::*;
use crate::db::{Arg, Sql, Stmt};
use crate::sessions::store_tests::db;

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    futures_lite::future::block_on(f)
}

fn row(id: &str, size: u64) -> ArtifactRow {
    ArtifactRow {
        id: id.into(),
        command_id: "c-1".into(),
        name: "bundle.tar.gz".into(),
        size,
        sha256: "0".repeat(64),
        content_type: "application/gzip".into(),
        object_key: format!("artifacts/{id}"),
        created_at: 1,
    }
}

#[test]
fn an_upload_commits_parts_then_completes_into_command_artifacts() {
    let db = db();
    run(async {
        db.batch(vec![Stmt {
            sql: "INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES ('gw', x'00', ?1, 'active', 0)",
            args: vec![Arg::Text(crate::auth::sha256_hex(b"pw"))],
        }])
        .await
        .unwrap();
        assert!(check_gateway("gw", "pw", gateway_secret(&db, "gw").await.unwrap()).is_ok());
        assert!(matches!(
            check_gateway("gw", "no", gateway_secret(&db, "gw").await.unwrap()),
            Err(GatewayRefusal::Refused { .. })
        ));
        assert!(matches!(
            check_gateway("gx", "pw", gateway_secret(&db, "gx").await.unwrap()),
            Err(GatewayRefusal::Refused { .. })
        ));

        let ps = 5 << 20;
        let up = Upload { row: row("a-1", 11 << 20), upload_id: "u-1".into(), part_size: ps };
        assert_eq!(find(&db, "a-1").await.unwrap(), Found::Missing);
        assert!(insert_upload(&db, &up, 2).await.unwrap());
        assert!(!insert_upload(&db, &Upload { upload_id: "u-2".into(), ..up.clone() }, 3).await.unwrap(), "second create loses");
        assert_eq!(find(&db, "a-1").await.unwrap(), Found::InProgress(up.clone()));
        assert!(insert_part(&db, "a-1", &Part { number: 1, etag: "e1".into(), size: ps }, 4).await.unwrap());
        assert!(!insert_part(&db, "a-1", &Part { number: 1, etag: "other".into(), size: ps }, 4).await.unwrap());
        let got = parts(&db, "a-1").await.unwrap();
        assert_eq!(got, vec![Part { number: 1, etag: "e1".into(), size: ps }]);
        let pairs: Vec<(u64, u64)> = got.iter().map(|p| (p.number, p.size)).collect();
        assert_eq!(committed_offset(&pairs, ps), ps);
        assert!(list_for_command(&db, "c-1").await.unwrap().is_empty(), "uploads in progress are not listed");
        complete(&db, &up.row, 9).await.unwrap();
        assert_eq!(find(&db, "a-1").await.unwrap(), Found::Complete(up.row.clone()));
        assert!(parts(&db, "a-1").await.unwrap().is_empty());
        assert_eq!(list_for_command(&db, "c-1").await.unwrap(), vec![up.row.clone()]);

        let bad = Upload { row: row("a-2", 3), upload_id: "u-3".into(), part_size: ps };
        assert!(insert_upload(&db, &bad, 2).await.unwrap());
        discard(&db, "a-2").await.unwrap();
        assert_eq!(find(&db, "a-2").await.unwrap(), Found::Missing);
    });
}

#[test]
fn basic_credentials() {
    assert_eq!(basic("Basic Z3ctMTpwdw=="), Some(("gw-1".into(), "pw".into())));
    assert_eq!(basic("basic Z3ctMTpwdw=="), Some(("gw-1".into(), "pw".into())));
    assert_eq!(basic("Bearer Z3ctMTpwdw=="), None);
    assert_eq!(basic("Basic !!"), None);
}
