//! The `commands` table in `agent.db`: every command id this gateway has seen, with its state. It
//! makes execution at-most-once (a known id is never run again, whatever redelivers it), lets the
//! agent report commands interrupted by a crash or reboot, and counts recent commands for rate limits.
//!
//! `state` is the last state decided; `reported` the last state handed to the outbox. They differ
//! only when the agent died between the two writes; [`Journal::recover`] closes that gap at start.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use scs_protocol::CommandState;

/// Journal state of an `agent.restart` command whose agent has exited to be restarted: the next
/// agent process reports it `succeeded`.
pub const RESTARTING: &str = "restarting";
/// Rows older than this are pruned at start. Far beyond any command expiry the cloud issues, so a
/// redelivery after pruning is refused as expired anyway.
const KEEP_MS: u64 = 8 * 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
#[error("commands journal {path}: {source}")]
pub struct JournalError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    command_type TEXT NOT NULL,
    state TEXT NOT NULL,
    reported TEXT,
    received_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    boot INTEGER NOT NULL,
    -- 1 when the command was accepted to run: only those count against rate limits.
    ran INTEGER NOT NULL DEFAULT 0,
    -- CBOR of the result value and the error text of a terminal state, kept until reported.
    result BLOB,
    error TEXT
);
CREATE INDEX IF NOT EXISTS commands_type_received ON commands(command_type, received_ms);
";

/// A command found at start in a state that needs reporting.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: String,
    pub command_type: String,
    pub state: String,
    pub boot: u64,
    pub result: Option<Vec<u8>>,
    pub error: Option<String>,
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

impl Journal {
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError { path: path.to_owned(), source };
        let conn = crate::db::open(path).map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Journal { conn, path: path.to_owned() })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        move |source| JournalError { path: self.path.clone(), source }
    }

    /// Records a new command id with its first decided state. Returns false (and changes nothing)
    /// if the id is already known: the caller must not act on it again.
    pub fn insert(
        &self,
        id: &str,
        command_type: &str,
        state: CommandState,
        boot: u64,
        now_ms: u64,
    ) -> Result<bool, JournalError> {
        let ran = matches!(state, CommandState::Accepted);
        let n = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO commands (id, command_type, state, received_ms, updated_ms, boot, ran)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
            )
            .and_then(|mut s| s.execute(params![id, command_type, state.as_str(), now_ms as i64, boot as i64, ran]))
            .map_err(self.err())?;
        Ok(n == 1)
    }

    pub fn contains(&self, id: &str) -> Result<bool, JournalError> {
        Ok(self.state(id)?.is_some())
    }

    pub fn state(&self, id: &str) -> Result<Option<String>, JournalError> {
        self.conn
            .prepare_cached("SELECT state FROM commands WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    /// Moves a command to `state` (a `CommandState` name or [`RESTARTING`]), keeping the outcome for
    /// re-reporting after a crash.
    pub fn set_state(
        &self,
        id: &str,
        state: &str,
        result: Option<&[u8]>,
        error: Option<&str>,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        self.conn
            .prepare_cached("UPDATE commands SET state = ?2, result = ?3, error = ?4, updated_ms = ?5 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, state, result, error, now_ms as i64]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Notes that `state` has been committed to the outbox; a terminal outcome's copy is dropped.
    pub fn mark_reported(&self, id: &str, state: CommandState) -> Result<(), JournalError> {
        let sql = if state.is_terminal() {
            "UPDATE commands SET reported = ?2, result = NULL WHERE id = ?1"
        } else {
            "UPDATE commands SET reported = ?2 WHERE id = ?1"
        };
        self.conn.prepare_cached(sql).and_then(|mut s| s.execute(params![id, state.as_str()])).map_err(self.err())?;
        Ok(())
    }

    /// Commands of a type accepted to run since `since_ms` (for rate limits; survives restarts, so a
    /// reboot loop cannot reset its own limit).
    pub fn ran_since(&self, command_type: &str, since_ms: u64) -> Result<u32, JournalError> {
        self.conn
            .prepare_cached("SELECT count(*) FROM commands WHERE command_type = ?1 AND received_ms >= ?2 AND ran = 1")
            .and_then(|mut s| s.query_row(params![command_type, since_ms as i64], |r| r.get::<_, i64>(0)))
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .map_err(self.err())
    }

    /// At start: prunes old rows and returns every command whose state was never reported or that
    /// an earlier agent process left unfinished (accepted, running, restarting).
    pub fn recover(&self, now_ms: u64) -> Result<Vec<Pending>, JournalError> {
        self.conn
            .execute(
                "DELETE FROM commands WHERE updated_ms < ?1 AND state NOT IN ('accepted', 'running', ?2)",
                params![now_ms.saturating_sub(KEEP_MS) as i64, RESTARTING],
            )
            .map_err(self.err())?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, command_type, state, boot, result, error FROM commands
                 WHERE state IN ('accepted', 'running', ?1) OR reported IS NULL OR reported != state
                 ORDER BY received_ms, id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([RESTARTING], |r| {
                Ok(Pending {
                    id: r.get(0)?,
                    command_type: r.get(1)?,
                    state: r.get(2)?,
                    boot: r.get::<_, i64>(3)? as u64,
                    result: r.get(4)?,
                    error: r.get(5)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> (PathBuf, Journal) {
        let dir = std::env::temp_dir().join(format!("scs-journal-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("agent.db");
        let j = Journal::open(&path).unwrap();
        (dir, j)
    }

    #[test]
    fn an_id_is_inserted_once() {
        let (dir, j) = tmp();
        assert!(j.insert("c1", "device.info", CommandState::Accepted, 1, 1000).unwrap());
        assert!(!j.insert("c1", "device.info", CommandState::Accepted, 1, 2000).unwrap());
        assert!(!j.insert("c1", "device.info", CommandState::Rejected, 2, 3000).unwrap());
        assert_eq!(j.state("c1").unwrap().as_deref(), Some("accepted"));
        // Survives reopening (a restart).
        drop(j);
        let j = Journal::open(&dir.join("agent.db")).unwrap();
        assert!(j.contains("c1").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn recover_finds_unfinished_and_unreported() {
        let (dir, j) = tmp();
        let now = 10_000_000;
        j.insert("done", "device.info", CommandState::Accepted, 1, now).unwrap();
        j.set_state("done", "succeeded", Some(&[0xa0]), None, now).unwrap();
        j.mark_reported("done", CommandState::Succeeded).unwrap();
        j.insert("running", "device.reboot", CommandState::Accepted, 1, now).unwrap();
        j.set_state("running", "running", None, None, now).unwrap();
        j.mark_reported("running", CommandState::Running).unwrap();
        j.insert("unreported", "device.info", CommandState::Rejected, 1, now).unwrap();
        j.set_state("unreported", "rejected", None, Some("bad"), now).unwrap();
        j.insert("restart", "agent.restart", CommandState::Accepted, 1, now).unwrap();
        j.set_state("restart", RESTARTING, None, None, now).unwrap();
        let ids: Vec<String> = j.recover(now).unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["restart", "running", "unreported"]);
        assert_eq!(j.ran_since("device.info", now - 1).unwrap(), 1, "rejected ones do not count");
        assert_eq!(j.ran_since("device.info", now + 1).unwrap(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
