//! Command rows and their audit trail in the D1-schema store (`migrations/0002_commands.sql`). Every
//! state change goes through [`transition`], which moves a command only forward
//! (`CommandState::rank`) and writes the audit row in the same transaction.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use scs_protocol::{CommandState, CommandUpdate};
use serde_json::Value as Json;
use thiserror::Error;

use super::value_json::value_to_json;
use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum CommandStoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("update for unknown command {command} from gateway {gateway}")]
    UnknownCommand { gateway: String, command: String },
    #[error("gateway {gateway} sent an update for command {command}, which belongs to gateway {owner}")]
    WrongGateway { gateway: String, command: String, owner: String },
    #[error("command {command} has an unreadable state {state:?}")]
    BadState { command: String, state: String },
}

/// A command as stored.
pub use super::rows::{AuditRow, CommandRow, NewCommand};

const COLUMNS: &str = "id, gateway_id, type, params, confirm, state, result, error, artifacts, requested_by, \
                       created_at, updated_at, expires_at, timeout_secs, delivered_at, deliveries, cancel_requested_at, target";

fn parse_json(text: Option<String>) -> Option<Json> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(CommandRow, String)> {
    let state: String = r.get(5)?;
    Ok((
        CommandRow {
            id: r.get(0)?,
            gateway_id: r.get(1)?,
            command_type: r.get(2)?,
            params: parse_json(r.get(3)?).unwrap_or(Json::Null),
            confirm: r.get(4)?,
            state: CommandState::Queued,
            result: parse_json(r.get(6)?),
            error: r.get(7)?,
            artifacts: parse_json(r.get(8)?),
            requested_by: r.get(9)?,
            created_at: r.get(10)?,
            updated_at: r.get(11)?,
            expires_at: r.get(12)?,
            timeout_secs: r.get(13)?,
            delivered_at: r.get(14)?,
            deliveries: r.get(15)?,
            cancel_requested_at: r.get(16)?,
            target: r.get(17)?,
        },
        state,
    ))
}

fn finish_row((mut row, state): (CommandRow, String)) -> Result<CommandRow, CommandStoreError> {
    row.state = CommandState::parse(&state).ok_or(CommandStoreError::BadState { command: row.id.clone(), state })?;
    Ok(row)
}

fn query_rows(conn: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<CommandRow>, CommandStoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, from_row)?.collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(finish_row).collect()
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<CommandRow>, CommandStoreError> {
    let sql = format!("SELECT {COLUMNS} FROM commands WHERE id = ?1");
    let row = conn.prepare_cached(&sql)?.query_row([id], from_row).optional()?;
    row.map(finish_row).transpose()
}

/// A gateway's commands, newest first; `before` (a `created_at`) pages back.
pub fn list_for_gateway(
    conn: &Connection,
    gateway: &str,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<CommandRow>, CommandStoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE gateway_id = ?1 AND created_at < ?2 ORDER BY created_at DESC, rowid DESC LIMIT ?3"
    );
    query_rows(conn, &sql, params![gateway, before.unwrap_or(i64::MAX), limit])
}

pub fn audit(conn: &Connection, id: &str) -> Result<Vec<AuditRow>, CommandStoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT at, actor, from_state, to_state, detail FROM command_audit WHERE command_id = ?1 ORDER BY id")?;
    let rows = stmt
        .query_map([id], |r| {
            Ok(AuditRow { at: r.get(0)?, actor: r.get(1)?, from_state: r.get(2)?, to_state: r.get(3)?, detail: r.get(4)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// One audit row: `actor` moved `command` of `gateway` from `from` to `to` at `at`.
struct Audit<'a> {
    command: &'a str,
    gateway: &'a str,
    at: i64,
    actor: &'a str,
    from: Option<CommandState>,
    to: &'a str,
    detail: Option<&'a str>,
}

fn insert_audit(conn: &Connection, a: &Audit<'_>) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO command_audit (command_id, gateway_id, at, actor, from_state, to_state, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![a.command, a.gateway, a.at, a.actor, a.from.map(CommandState::as_str), a.to, a.detail])?;
    Ok(())
}

/// Inserts a new command in state `queued`, with its first audit row.
pub fn create(conn: &mut Connection, c: &NewCommand) -> Result<CommandRow, CommandStoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(
        "INSERT INTO commands (id, gateway_id, type, params, confirm, state, requested_by, created_at, updated_at, expires_at, timeout_secs, target)
         VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        c.id,
        c.gateway_id,
        c.command_type,
        c.params.to_string(),
        c.confirm,
        c.requested_by,
        c.now,
        c.expires_at,
        c.timeout_secs,
        c.target
    ])?;
    let on = c.target.as_deref().map(|t| format!(" on {t}")).unwrap_or_default();
    let detail = format!("{}{on} requested, expires in {} s", c.command_type, (c.expires_at - c.now) / 1000);
    insert_audit(
        &tx,
        &Audit {
            command: &c.id,
            gateway: &c.gateway_id,
            at: c.now,
            actor: &c.requested_by,
            from: None,
            to: CommandState::Queued.as_str(),
            detail: Some(&detail),
        },
    )?;
    let row = get(&tx, &c.id)?
        .ok_or_else(|| CommandStoreError::UnknownCommand { gateway: c.gateway_id.clone(), command: c.id.clone() })?;
    tx.commit()?;
    Ok(row)
}

/// Moves a command forward to `to` if that is progress (higher rank, and never out of a terminal
/// state), writing the audit row. Returns whether it moved.
#[allow(clippy::too_many_arguments)]
fn transition(
    conn: &Connection,
    row: &CommandRow,
    to: CommandState,
    actor: &str,
    detail: Option<&str>,
    now: i64,
    extra_sql: &str,
    extra: &[&dyn rusqlite::ToSql],
) -> Result<bool, CommandStoreError> {
    if row.state.is_terminal() || to.rank() <= row.state.rank() {
        return Ok(false);
    }
    let sql = format!("UPDATE commands SET state = ?1, updated_at = ?2{extra_sql} WHERE id = ?3 AND state = ?4");
    let (to_s, from_s) = (to.as_str(), row.state.as_str());
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&to_s, &now, &row.id, &from_s];
    args.extend_from_slice(extra);
    let n = conn.prepare_cached(&sql)?.execute(args.as_slice())?;
    if n == 0 {
        return Ok(false);
    }
    let audit =
        Audit { command: &row.id, gateway: &row.gateway_id, at: now, actor, from: Some(row.state), to: to.as_str(), detail };
    insert_audit(conn, &audit)?;
    Ok(true)
}

/// The session published the command: `queued` → `delivered` (re-sends only count the delivery).
pub fn mark_delivered(conn: &Connection, id: &str, now: i64) -> Result<bool, CommandStoreError> {
    let Some(row) = get(conn, id)? else { return Ok(false) };
    conn.prepare_cached("UPDATE commands SET delivered_at = ?2, deliveries = deliveries + 1 WHERE id = ?1")?
        .execute(params![id, now])?;
    let detail = format!("published to the gateway (delivery {})", row.deliveries + 1);
    transition(conn, &row, CommandState::Delivered, "shim", Some(&detail), now, "", &[])
}

/// The publish failed after `mark_delivered`: back to `queued` so the next chance sends it.
pub fn unmark_delivered(conn: &Connection, id: &str, now: i64, why: &str) -> Result<(), CommandStoreError> {
    let n = conn
        .prepare_cached("UPDATE commands SET state = 'queued', updated_at = ?2 WHERE id = ?1 AND state = 'delivered'")?
        .execute(params![id, now])?;
    if n == 1 {
        if let Some(row) = get(conn, id)? {
            let audit = Audit {
                command: id,
                gateway: &row.gateway_id,
                at: now,
                actor: "shim",
                from: Some(CommandState::Delivered),
                to: "queued",
                detail: Some(why),
            };
            insert_audit(conn, &audit)?;
        }
    }
    Ok(())
}

/// Commands the gateway should be sent now, oldest first: unexpired `queued` ones, and with `resend`
/// also `delivered` ones the agent has not acknowledged (after a reconnect a publish may have been
/// lost). Delivered ones are re-sent even past their expiry: the agent either knows the id (it ran at
/// most once; its updates are on their way) or reports it `expired` — so no command stays `delivered`.
pub fn pending_for(conn: &Connection, gateway: &str, resend: bool, now: i64) -> Result<Vec<CommandRow>, CommandStoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE gateway_id = ?1
         AND ((state = 'queued' AND expires_at > ?2) OR (?3 AND state = 'delivered')) ORDER BY created_at, rowid"
    );
    query_rows(conn, &sql, params![gateway, now, resend])
}

/// Non-terminal commands on the gateway with a cancel still to be sent.
pub fn pending_cancels(conn: &Connection, gateway: &str) -> Result<Vec<CommandRow>, CommandStoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE gateway_id = ?1 AND cancel_requested_at IS NOT NULL
         AND state IN ('delivered', 'accepted', 'running') ORDER BY created_at, rowid"
    );
    query_rows(conn, &sql, params![gateway])
}

/// Gateways with queued commands (the session's work list after a restart).
pub fn gateways_with_open_commands(conn: &Connection, now: i64) -> Result<Vec<String>, CommandStoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT gateway_id FROM commands WHERE (state = 'queued' AND expires_at > ?1) OR state = 'delivered'
         OR (cancel_requested_at IS NOT NULL AND state IN ('delivered', 'accepted', 'running'))",
    )?;
    let rows = stmt.query_map([now], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(rows)
}

/// Outcome of a cancel request.
#[derive(Debug, PartialEq)]
pub enum CancelOutcome {
    /// Never reached the gateway: cancelled here and now.
    Cancelled(CommandRow),
    /// On the gateway: a cancel must be sent; the agent reports the outcome.
    Requested(CommandRow),
    AlreadyFinished(CommandRow),
    NotFound,
}

pub fn request_cancel(conn: &mut Connection, id: &str, actor: &str, now: i64) -> Result<CancelOutcome, CommandStoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some(row) = get(&tx, id)? else { return Ok(CancelOutcome::NotFound) };
    let outcome = if row.state.is_terminal() {
        CancelOutcome::AlreadyFinished(row)
    } else if row.state == CommandState::Queued {
        transition(&tx, &row, CommandState::Cancelled, actor, Some("cancelled before delivery"), now, "", &[])?;
        CancelOutcome::Cancelled(get(&tx, id)?.unwrap_or(row))
    } else {
        tx.prepare_cached("UPDATE commands SET cancel_requested_at = ?2, updated_at = ?2 WHERE id = ?1")?
            .execute(params![id, now])?;
        let audit = Audit {
            command: id,
            gateway: &row.gateway_id,
            at: now,
            actor,
            from: Some(row.state),
            to: row.state.as_str(),
            detail: Some("cancel requested; sent to the gateway"),
        };
        insert_audit(&tx, &audit)?;
        CancelOutcome::Requested(get(&tx, id)?.unwrap_or(row))
    };
    tx.commit()?;
    Ok(outcome)
}

/// Commands still `queued` past their expiry become `expired`; returns them.
pub fn expire_due(conn: &mut Connection, now: i64) -> Result<Vec<CommandRow>, CommandStoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql = format!("SELECT {COLUMNS} FROM commands WHERE state = 'queued' AND expires_at <= ?1 ORDER BY created_at LIMIT 500");
    let due = query_rows(&tx, &sql, [now])?;
    let mut expired = Vec::new();
    for row in due {
        let detail = "not delivered before it expired (gateway offline)";
        if transition(&tx, &row, CommandState::Expired, "shim", Some(detail), now, ", error = ?5", &[&detail])? {
            expired.push(row);
        }
    }
    tx.commit()?;
    Ok(expired)
}

/// Applies a gateway's update inside the ingest transaction (ingest has already deduplicated it by
/// `(gateway, boot, seq)`). Late or replayed updates never move a command backwards; the result,
/// error and artifact metadata are kept from the update that moved it to a terminal state.
pub fn apply_update(tx: &Transaction<'_>, gateway: &str, update: &CommandUpdate) -> Result<(), CommandStoreError> {
    let Some(row) = get(tx, &update.id)? else {
        return Err(CommandStoreError::UnknownCommand { gateway: gateway.to_owned(), command: update.id.clone() });
    };
    if row.gateway_id != gateway {
        return Err(CommandStoreError::WrongGateway {
            gateway: gateway.to_owned(),
            command: update.id.clone(),
            owner: row.gateway_id,
        });
    }
    let now = crate::clock::now_ms();
    let result = update.result.as_ref().map(|v| value_to_json(v).to_string());
    let artifacts = update.artifacts.as_ref().map(|a| {
        Json::Array(
            a.iter()
                .map(|m| {
                    serde_json::json!({"id": m.id, "name": m.name, "size": m.size, "sha256": m.sha256, "contentType": m.content_type})
                })
                .collect(),
        )
        .to_string()
    });
    let actor = format!("agent:{gateway}");
    let detail = update.error.as_deref();
    let moved = transition(
        tx,
        &row,
        update.state,
        &actor,
        detail,
        now,
        ", result = coalesce(?5, result), error = coalesce(?6, error), artifacts = coalesce(?7, artifacts)",
        &[&result, &update.error, &artifacts],
    )?;
    if !moved {
        log::debug!(
            "command {} on {gateway}: update {} ignored in state {}",
            update.id,
            update.state.as_str(),
            row.state.as_str()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scs_protocol::{ArtifactMeta, Value, PROTOCOL_VERSION};

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::migrations::migrate(&mut conn).unwrap();
        conn
    }

    fn new(id: &str, gw: &str, now: i64) -> NewCommand {
        NewCommand {
            id: id.into(),
            gateway_id: gw.into(),
            command_type: "device.info".into(),
            params: serde_json::json!({}),
            confirm: false,
            requested_by: "alice".into(),
            now,
            expires_at: now + 60_000,
            timeout_secs: 10,
            target: None,
        }
    }

    #[test]
    fn a_target_is_stored_and_read_back() {
        let mut c = db();
        let mut n = new("c-t", "gw", 1000);
        n.command_type = "camera.snapshot".into();
        n.target = Some("cam-1".into());
        let row = create(&mut c, &n).unwrap();
        assert_eq!(row.target.as_deref(), Some("cam-1"));
        assert_eq!(get(&c, "c-t").unwrap().unwrap().target.as_deref(), Some("cam-1"));
        assert!(audit(&c, "c-t").unwrap()[0].detail.as_deref().unwrap().contains("on cam-1"));
        let plain = create(&mut c, &new("c-g", "gw", 1000)).unwrap();
        assert_eq!(plain.target, None);
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

    fn apply(conn: &mut Connection, gw: &str, u: &CommandUpdate) -> Result<(), CommandStoreError> {
        let tx = conn.transaction().unwrap();
        let r = apply_update(&tx, gw, u);
        tx.commit().unwrap();
        r
    }

    #[test]
    fn lifecycle_is_monotonic_and_audited() {
        let mut conn = db();
        create(&mut conn, &new("c1", "gw", 1000)).unwrap();
        assert!(mark_delivered(&conn, "c1", 1001).unwrap());
        apply(&mut conn, "gw", &update("c1", "gw", CommandState::Running)).unwrap();
        let mut done = update("c1", "gw", CommandState::Succeeded);
        done.result = Some(Value::map([("ok", Value::Bool(true))]));
        done.artifacts = Some(vec![ArtifactMeta {
            id: "a1".into(),
            name: "b.tar.gz".into(),
            size: 3,
            sha256: "0".repeat(64),
            content_type: "application/gzip".into(),
        }]);
        apply(&mut conn, "gw", &done).unwrap();
        // Late and replayed updates change nothing.
        apply(&mut conn, "gw", &update("c1", "gw", CommandState::Accepted)).unwrap();
        apply(&mut conn, "gw", &update("c1", "gw", CommandState::Interrupted)).unwrap();
        let row = get(&conn, "c1").unwrap().unwrap();
        assert_eq!(row.state, CommandState::Succeeded);
        assert_eq!(row.result, Some(serde_json::json!({"ok": true})));
        assert_eq!(row.artifacts.unwrap()[0]["sha256"], "0".repeat(64));
        let a = audit(&conn, "c1").unwrap();
        let trail: Vec<(&str, Option<&str>, &str)> =
            a.iter().map(|r| (r.actor.as_str(), r.from_state.as_deref(), r.to_state.as_str())).collect();
        assert_eq!(
            trail,
            [
                ("alice", None, "queued"),
                ("shim", Some("queued"), "delivered"),
                ("agent:gw", Some("delivered"), "running"),
                ("agent:gw", Some("running"), "succeeded")
            ]
        );
    }

    #[test]
    fn updates_from_strangers_are_refused() {
        let mut conn = db();
        create(&mut conn, &new("c1", "gw", 1000)).unwrap();
        assert!(matches!(
            apply(&mut conn, "gw", &update("nope", "gw", CommandState::Running)),
            Err(CommandStoreError::UnknownCommand { .. })
        ));
        assert!(matches!(
            apply(&mut conn, "other", &update("c1", "other", CommandState::Running)),
            Err(CommandStoreError::WrongGateway { .. })
        ));
    }

    #[test]
    fn cancel_expiry_and_pending() {
        let mut conn = db();
        create(&mut conn, &new("q", "gw", 1000)).unwrap();
        create(&mut conn, &new("d", "gw", 1001)).unwrap();
        create(&mut conn, &new("old", "gw2", 1002)).unwrap();
        mark_delivered(&conn, "d", 1100).unwrap();
        let ids = |v: Vec<CommandRow>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(pending_for(&conn, "gw", false, 2000).unwrap()), ["q"]);
        assert_eq!(ids(pending_for(&conn, "gw", true, 2000).unwrap()), ["q", "d"]);
        // Past the expiry only the delivered one is re-sent (the agent settles it); the queued one expires.
        assert_eq!(ids(pending_for(&conn, "gw", true, 1_000_000).unwrap()), ["d"]);
        assert_eq!(ids(pending_for(&conn, "gw", false, 1_000_000).unwrap()), Vec::<String>::new());
        assert!(
            matches!(request_cancel(&mut conn, "q", "bob", 2000).unwrap(), CancelOutcome::Cancelled(r) if r.state == CommandState::Cancelled)
        );
        assert!(
            matches!(request_cancel(&mut conn, "d", "bob", 2000).unwrap(), CancelOutcome::Requested(r) if r.cancel_requested_at == Some(2000))
        );
        assert_eq!(ids(pending_cancels(&conn, "gw").unwrap()), ["d"]);
        assert!(matches!(request_cancel(&mut conn, "q", "bob", 2001).unwrap(), CancelOutcome::AlreadyFinished(_)));
        assert_eq!(request_cancel(&mut conn, "zzz", "bob", 2001).unwrap(), CancelOutcome::NotFound);
        // Expiry takes only commands that never left the shim.
        let expired = expire_due(&mut conn, 1_000_000).unwrap();
        assert_eq!(ids(expired), ["old"]);
        assert_eq!(get(&conn, "old").unwrap().unwrap().state, CommandState::Expired);
        assert_eq!(get(&conn, "d").unwrap().unwrap().state, CommandState::Delivered);
        let hist = list_for_gateway(&conn, "gw", 10, None).unwrap();
        assert_eq!(ids(hist), ["d", "q"]);
    }
}
