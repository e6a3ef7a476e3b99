//! Opening `{data_dir}/agent.db`. Every module (queue, settings, commands, uploads) opens its own
//! connection to the same file with the same pragmas, and owns its own tables.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// File name of the agent's database inside `data_dir`.
pub const DB_FILE: &str = "agent.db";

/// Page size of a new database (`queue.page_size`). Every commit writes each page it touches whole to
/// the WAL (and again at the checkpoint); the outbox commits one small batch at a time, so small pages
/// keep the bytes written close to the bytes that changed. Measured per message with sync FULL
/// (queue.rs, `flash`): 430-byte batch 5.2 KB at 1 KiB pages vs 8.2 KB at 4 KiB; 3.5 KB batch 9.4 vs
/// 8.2 KB (one 4 KiB leaf happens to hold it); 6.2 KB batch 12 vs 17 KB.
pub const DEFAULT_PAGE_SIZE: u32 = 1024;

/// Opens (creating if needed) the database in WAL mode with a 5 s busy timeout. A new file gets
/// [`DEFAULT_PAGE_SIZE`]; an existing one keeps its own (see [`set_page_size`]).
pub fn open(path: &Path) -> Result<Connection, rusqlite::Error> {
    open_with_page_size(path, DEFAULT_PAGE_SIZE)
}

fn open_with_page_size(path: &Path, page_size: u32) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // Only takes effect on an empty file, before WAL mode writes the header; a no-op otherwise.
    conn.execute_batch(&format!("PRAGMA page_size={page_size};"))?;
    // WAL: readers never block the writer, and a commit is one append to the log.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("{}: journal_mode is {mode}, not WAL", path.display());
    }
    // A small page cache per connection: the agent keeps several connections open and its RSS
    // budget is a few MiB; the outbox is read mostly sequentially, so 256 KiB each is plenty.
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-256;")?;
    Ok(conn)
}

/// Rewrites the database at `path` with pages of `page_size` bytes if it has another size (a file
/// created by an older agent, or a changed `queue.page_size`); returns the old size when it did.
/// Needs the only connection to the file: the agent calls it first, under the data-dir lock. The
/// page size of a WAL database is fixed, so this leaves WAL mode, VACUUMs under a rollback journal
/// (atomic across a power cut: the file is old or new, and a later start redoes an unfinished
/// change) and returns to WAL.
pub fn set_page_size(path: &Path, page_size: u32) -> Result<Option<u32>, rusqlite::Error> {
    let conn = open_with_page_size(path, page_size)?;
    let current: u32 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    if current == page_size {
        return Ok(None);
    }
    let _: String = conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
    let changed = conn.execute_batch(&format!("PRAGMA page_size={page_size}; VACUUM;"));
    // Back to WAL whatever VACUUM did (it fails on a full disk and leaves the file as it was).
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    changed?;
    Ok(Some(current))
}

/// Moves a damaged database (and its WAL/SHM files) aside as `agent.db.corrupt-{ms}` so the agent
/// can start with a fresh one instead of failing at every restart. Returns the new name.
pub fn quarantine(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let stamp = crate::clock::now_ms();
    let aside = path.with_file_name(format!("{}.corrupt-{stamp}", path.file_name().and_then(|n| n.to_str()).unwrap_or(DB_FILE)));
    std::fs::rename(path, &aside)?;
    for ext in ["-wal", "-shm"] {
        let side = std::path::PathBuf::from(format!("{}{ext}", path.display()));
        if side.exists() {
            std::fs::rename(&side, format!("{}{ext}", aside.display()))?;
        }
    }
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_recognised_and_moved_aside() {
        let dir = std::env::temp_dir().join(format!("scs-db-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(DB_FILE);
        std::fs::write(&p, vec![0x42u8; 8192]).unwrap();
        let opts = crate::queue::QueueOptions { max_rows: 10, max_bytes: 1 << 20, sync: crate::config::SyncMode::Normal };
        let err = crate::queue::Queue::open(&p, opts).err().expect("garbage is not a database");
        assert!(err.is_corrupt(), "{err}");
        let aside = quarantine(&p).unwrap();
        assert!(aside.exists() && !p.exists());
        assert!(crate::queue::Queue::open(&p, opts).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn new_files_get_the_small_page_size_and_old_ones_are_rewritten_with_their_rows() {
        let dir = std::env::temp_dir().join(format!("scs-db-ps-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let page_size = |c: &Connection| c.query_row("PRAGMA page_size", [], |r| r.get::<_, u32>(0)).unwrap();
        let fresh = dir.join("new.db");
        assert_eq!(page_size(&open(&fresh).unwrap()), DEFAULT_PAGE_SIZE);
        assert_eq!(set_page_size(&fresh, DEFAULT_PAGE_SIZE).unwrap(), None);

        // As an older agent left it: 4 KiB pages, WAL mode, rows in it.
        let old = dir.join("old.db");
        let c = open_with_page_size(&old, 4096).unwrap();
        assert_eq!(page_size(&c), 4096);
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB); INSERT INTO t VALUES (1, zeroblob(9000)), (2, x'01');")
            .unwrap();
        drop(c);
        assert_eq!(set_page_size(&old, DEFAULT_PAGE_SIZE).unwrap(), Some(4096));
        let c = open(&old).unwrap();
        assert_eq!(page_size(&c), DEFAULT_PAGE_SIZE);
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let rows: Vec<(i64, usize)> = c
            .prepare("SELECT k, length(v) FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows, vec![(1, 9000), (2, 1)]);
        drop(c);
        // And back, as `queue.page_size = 4096` asks.
        assert_eq!(set_page_size(&old, 4096).unwrap(), Some(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(&open(&old).unwrap()), 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const VACUUM_DB_ENV: &str = "SCS_DB_PAGE_SIZE_CRASH_DB";

    /// The rewriter for the test below: switches the page size back and forth for ever.
    #[test]
    #[ignore]
    fn page_size_child() {
        let Some(db) = std::env::var_os(VACUUM_DB_ENV) else { return };
        for size in [4096u32, 1024].into_iter().cycle() {
            set_page_size(Path::new(&db), size).unwrap();
        }
    }

    #[test]
    fn kill_9_while_the_page_size_is_rewritten_leaves_every_row() {
        let dir = std::env::temp_dir().join(format!("scs-db-vac-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join(DB_FILE);
        let c = open(&db).unwrap();
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);").unwrap();
        for k in 0..400i64 {
            c.execute("INSERT INTO t VALUES (?1, zeroblob(?2))", [k, 100 + (k * 53) % 6000]).unwrap();
        }
        drop(c);
        for round in 0..5u64 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "db::tests::page_size_child", "--ignored", "--test-threads=1"])
                .env(VACUUM_DB_ENV, &db)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(200 + round * 130));
            child.kill().unwrap(); // SIGKILL, mostly mid-VACUUM
            child.wait().unwrap();
            // The next start finishes the change.
            set_page_size(&db, DEFAULT_PAGE_SIZE).unwrap();
            let c = open(&db).unwrap();
            let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(ok, "ok", "round {round}");
            assert_eq!(c.query_row("PRAGMA page_size", [], |r| r.get::<_, u32>(0)).unwrap(), DEFAULT_PAGE_SIZE);
            let (n, sum): (i64, i64) =
                c.query_row("SELECT count(*), sum(length(v)) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
            assert_eq!((n, sum), (400, (0..400i64).map(|k| 100 + (k * 53) % 6000).sum::<i64>()), "round {round}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
