//! Schema migrations: `cloud-shim/migrations/*.sql`, embedded at build time, applied in name order and
//! recorded in `d1_migrations` exactly as `wrangler d1 migrations apply` records them, so the same files
//! run unchanged on Cloudflare D1.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;

include!(concat!(env!("OUT_DIR"), "/migrations_gen.rs"));

/// The table wrangler creates; same shape so a D1 database and a shim database agree on what ran.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS d1_migrations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
)";

/// Applies every migration not yet recorded; returns the names applied now. One immediate transaction,
/// so two shims starting on the same database at once apply each file exactly once.
pub fn migrate(conn: &mut Connection) -> Result<Vec<String>, StoreError> {
    apply(conn, MIGRATIONS)
}

fn apply(conn: &mut Connection, migrations: &[(&str, &str)]) -> Result<Vec<String>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(CREATE_TABLE)?;
    let mut applied = Vec::new();
    for (name, sql) in migrations {
        let done: Option<i64> = tx.query_row("SELECT id FROM d1_migrations WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        if done.is_some() {
            continue;
        }
        tx.execute_batch(sql).map_err(|source| StoreError::Migration { name: (*name).to_owned(), source })?;
        tx.execute("INSERT INTO d1_migrations (name) VALUES (?1)", [name])?;
        applied.push((*name).to_owned());
    }
    tx.commit()?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_in_order_once_and_records_names() {
        let mut conn = Connection::open_in_memory().unwrap();
        let first = migrate(&mut conn).unwrap();
        assert!(first.iter().any(|n| n == "0001_init.sql"), "{first:?}");
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(first, sorted, "applied in name order");
        assert!(migrate(&mut conn).unwrap().is_empty(), "second run applies nothing");
        let n: i64 = conn.query_row("SELECT count(*) FROM d1_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(n as usize, first.len());
        for table in ["sensors", "metrics", "ingest_receipts", "gaps", "rejections"] {
            let found: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| r.get(0))
                .unwrap();
            assert_eq!(found, 1, "table {table}");
        }
    }

    #[test]
    fn failing_migration_rolls_back_and_names_the_file() {
        let mut conn = Connection::open_in_memory().unwrap();
        let bad = [("0001_ok.sql", "CREATE TABLE a (x INTEGER);"), ("0002_bad.sql", "CREATE TABLE nonsense (;")];
        match apply(&mut conn, &bad) {
            Err(StoreError::Migration { name, .. }) => assert_eq!(name, "0002_bad.sql"),
            other => panic!("expected a migration error, got {other:?}"),
        }
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('a', 'd1_migrations')", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 0, "nothing of the failed run remains");
    }

    #[test]
    fn migrations_avoid_sql_d1_refuses() {
        for (name, sql) in MIGRATIONS {
            // Statements only: comments may say what the file avoids.
            let code: String = sql.lines().map(|l| l.split("--").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            let upper = code.to_ascii_uppercase();
            for banned in ["PRAGMA", "ATTACH", "LOAD_EXTENSION", "VACUUM"] {
                assert!(!upper.contains(banned), "{name} uses {banned}, which D1 does not run");
            }
        }
    }
}
