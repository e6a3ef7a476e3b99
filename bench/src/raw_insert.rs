//! Raw rusqlite baselines for the agent's durable enqueue, on the same disk: the same ~realistic payload
//! inserted into a table shaped like the outbox, (a) one transaction per message — what a durable enqueue
//! must at least cost — and (b) many rows per transaction (batched insert), each with synchronous FULL and
//! NORMAL in WAL mode. The agent's own figures come from its `enqueue_throughput` test (scripts/bench runs
//! both with the same `SCS_BENCH_DIR`).

use std::path::PathBuf;
use std::time::Instant;

use rusqlite::{params, Connection};

use crate::opts::Opts;
use crate::site;

fn remove_db(p: &std::path::Path) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
}

fn fresh(p: &std::path::Path, sync: &str) -> Result<Connection, String> {
    remove_db(p);
    let c = Connection::open(p).map_err(|e| e.to_string())?;
    c.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; \
         CREATE TABLE outbox (seq INTEGER PRIMARY KEY, kind INTEGER NOT NULL, created_ms INTEGER NOT NULL, \
         size INTEGER NOT NULL, payload BLOB NOT NULL);"
    ))
    .map_err(|e| e.to_string())?;
    Ok(c)
}

pub fn run(opts: &Opts) -> Result<(), String> {
    let n = opts.num("n", 2000)?;
    let per_tx = opts.num("per-tx", 1000)?.max(1);
    let dir = PathBuf::from(opts.str("dir", &std::env::temp_dir().display().to_string()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Default: a realistic 64-device batch; `--payload-bytes N` matches another measurement's payload.
    let payload = match opts.num("payload-bytes", 0)? {
        0 => scs_protocol::encode(&site::batch("gw-bench", 1, 1, 1_795_000_000_000, 64)),
        n => vec![0x5a; n as usize],
    };
    let p = dir.join(format!("scs-raw-insert-{}.db", std::process::id()));
    let mut line = format!("BENCH raw_insert n={n} payload_bytes={}", payload.len());
    for sync in ["FULL", "NORMAL"] {
        let mut c = fresh(&p, sync)?;
        let t = Instant::now();
        for seq in 1..=n as i64 {
            let tx = c.transaction().map_err(|e| e.to_string())?;
            tx.execute("INSERT INTO outbox VALUES (?1, 1, 0, ?2, ?3)", params![seq, payload.len() as i64, payload])
                .map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
        }
        let one = n as f64 / t.elapsed().as_secs_f64();
        drop(c);
        let mut c = fresh(&p, sync)?;
        let t = Instant::now();
        let mut seq = 1i64;
        while seq <= n as i64 {
            let tx = c.transaction().map_err(|e| e.to_string())?;
            for _ in 0..per_tx {
                if seq > n as i64 {
                    break;
                }
                tx.execute("INSERT INTO outbox VALUES (?1, 1, 0, ?2, ?3)", params![seq, payload.len() as i64, payload])
                    .map_err(|e| e.to_string())?;
                seq += 1;
            }
            tx.commit().map_err(|e| e.to_string())?;
        }
        let batched = n as f64 / t.elapsed().as_secs_f64();
        drop(c);
        println!(
            "raw rusqlite, synchronous={sync}: one transaction per message {one:.0}/s, {per_tx} per transaction {batched:.0}/s"
        );
        let s = sync.to_lowercase();
        line.push_str(&format!(" {s}_per_message={one:.0} {s}_batched={batched:.0}"));
    }
    remove_db(&p);
    println!("{line}");
    Ok(())
}
