//! Commands and their audit trail in D1, with the shim's schema (`cloud-shim/migrations/0002_commands.sql`,
//! `0007_command_target.sql`) and the shim's rules (`cloud-shim/src/commands/store.rs`): a command only
//! moves forward (`CommandState::rank`), never out of a terminal state, and every transition writes its
//! audit row in the same batch.
//!
//! A transition is a compare-and-set (`WHERE id = ? AND state = <the state read>`) followed by an audit
//! insert guarded by `changes() = 1`, in one D1 batch (one transaction). The gateway's Durable Object
//! serialises its own writes; the compare-and-set keeps command updates from ingest, which arrive
//! outside the object, from ever moving a command backwards or writing an audit row for a move that did
//! not happen.

use scs_protocol::{CommandState, CommandUpdate};
use serde_json::{json, Value as Json};
use thiserror::Error;

use super::value_json::value_to_json;
use crate::db::{int, text, Arg, Row, Sql, SqlError, Stmt};

#[derive(Debug, Error)]
pub enum CommandStoreError {
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error("update for unknown command {command} from gateway {gateway}")]
    UnknownCommand { gateway: String, command: String },
    #[error("gateway {gateway} sent an update for command {command}, which belongs to gateway {owner}")]
    WrongGateway { gateway: String, command: String, owner: String },
    #[error("command {command} has an unreadable row: {what}")]
    BadRow { command: String, what: &'static str },
}

pub use super::rows::{AuditRow, CommandRow, NewCommand};

impl CommandStoreError {
    /// A store failure (D1 unreachable, overloaded, reset, a batch that lost a race) may pass on a retry;
    /// an update naming an unknown command, another gateway's command, or a row that cannot be read never will.
    pub fn is_transient(&self) -> bool {
        match self {
            CommandStoreError::Sql(_) => true,
            CommandStoreError::UnknownCommand { .. }
            | CommandStoreError::WrongGateway { .. }
            | CommandStoreError::BadRow { .. } => false,
        }
    }
}

/// What ingest does with a command update once the store answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateVerdict {
    /// Applied, or already applied (the state only moves forward).
    Applied,
    /// Refused for good: counted as a `command_update` rejection; the message is stored.
    Refused(String),
    /// The store failed: the message must be delivered again, not stored without its update.
    Retry(String),
}

impl UpdateVerdict {
    pub fn of(r: Result<bool, CommandStoreError>) -> UpdateVerdict {
        match r {
            Ok(_) => UpdateVerdict::Applied,
            Err(e) if e.is_transient() => UpdateVerdict::Retry(e.to_string()),
            Err(e) => UpdateVerdict::Refused(e.to_string()),
        }
    }
}

const COLUMNS: &str = "id, gateway_id, type, params, confirm, state, result, error, artifacts, requested_by, \
                       created_at, updated_at, expires_at, timeout_secs, delivered_at, deliveries, cancel_requested_at, target";

fn parse_json(t: Option<String>) -> Option<Json> {
    t.and_then(|t| serde_json::from_str(&t).ok())
}

fn from_row(r: &Row) -> Result<CommandRow, CommandStoreError> {
    let id = text(r, "id").unwrap_or_default();
    let bad = |what| CommandStoreError::BadRow { command: id.clone(), what };
    let state = text(r, "state").and_then(|s| CommandState::parse(&s)).ok_or_else(|| bad("state"))?;
    Ok(CommandRow {
        gateway_id: text(r, "gateway_id").ok_or_else(|| bad("gateway_id"))?,
        command_type: text(r, "type").ok_or_else(|| bad("type"))?,
        params: parse_json(text(r, "params")).unwrap_or(Json::Null),
        confirm: int(r, "confirm").unwrap_or(0) != 0,
        state,
        result: parse_json(text(r, "result")),
        error: text(r, "error"),
        artifacts: parse_json(text(r, "artifacts")),
        requested_by: text(r, "requested_by").unwrap_or_default(),
        created_at: int(r, "created_at").ok_or_else(|| bad("created_at"))?,
        updated_at: int(r, "updated_at").ok_or_else(|| bad("updated_at"))?,
        expires_at: int(r, "expires_at").ok_or_else(|| bad("expires_at"))?,
        timeout_secs: int(r, "timeout_secs").and_then(|t| u32::try_from(t).ok()).ok_or_else(|| bad("timeout_secs"))?,
        delivered_at: int(r, "delivered_at"),
        deliveries: int(r, "deliveries").unwrap_or(0),
        cancel_requested_at: int(r, "cancel_requested_at"),
        target: text(r, "target"),
        id,
    })
}

async fn rows(db: &impl Sql, sql: &str, args: Vec<Arg>) -> Result<Vec<CommandRow>, CommandStoreError> {
    db.query(sql, args).await?.iter().map(from_row).collect()
}

pub async fn get(db: &impl Sql, id: &str) -> Result<Option<CommandRow>, CommandStoreError> {
    let sql = format!("SELECT {COLUMNS} FROM commands WHERE id = ?1");
    Ok(rows(db, &sql, vec![id.into()]).await?.into_iter().next())
}

/// A gateway's commands, newest first; `before` (a `created_at`) pages back.
pub async fn list_for_gateway(
    db: &impl Sql,
    gateway: &str,
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<CommandRow>, CommandStoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE gateway_id = ?1 AND created_at < ?2 ORDER BY created_at DESC, rowid DESC LIMIT ?3"
    );
    rows(db, &sql, vec![gateway.into(), before.unwrap_or(i64::MAX).into(), i64::from(limit).into()]).await
}

pub async fn audit(db: &impl Sql, id: &str) -> Result<Vec<AuditRow>, CommandStoreError> {
    let found = db
        .query(
            "SELECT at, actor, from_state, to_state, detail FROM command_audit WHERE command_id = ?1 ORDER BY id",
            vec![id.into()],
        )
        .await?;
    Ok(found
        .iter()
        .map(|r| AuditRow {
            at: int(r, "at").unwrap_or(0),
            actor: text(r, "actor").unwrap_or_default(),
            from_state: text(r, "from_state"),
            to_state: text(r, "to_state").unwrap_or_default(),
            detail: text(r, "detail"),
        })
        .collect())
}

const INSERT_AUDIT: &str =
    "INSERT INTO command_audit (command_id, gateway_id, at, actor, from_state, to_state, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/// The audit row of a compare-and-set: written only when the statement before it changed the row.
const INSERT_AUDIT_IF_CHANGED: &str =
    "INSERT INTO command_audit (command_id, gateway_id, at, actor, from_state, to_state, detail) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE changes() = 1";

fn audit_args(row: &CommandRow, at: i64, actor: &str, from: Option<CommandState>, to: &str, detail: Option<&str>) -> Vec<Arg> {
    vec![
        row.id.as_str().into(),
        row.gateway_id.as_str().into(),
        at.into(),
        actor.into(),
        from.map(CommandState::as_str).into(),
        to.into(),
        detail.into(),
    ]
}

/// Inserts a new command in state `queued`, with its first audit row.
pub async fn create(db: &impl Sql, c: &NewCommand) -> Result<CommandRow, CommandStoreError> {
    let detail = format!("{} requested, expires in {} s", c.command_type, (c.expires_at - c.now) / 1000);
    let insert = Stmt {
        sql: "INSERT INTO commands (id, gateway_id, type, params, confirm, state, requested_by, created_at, updated_at, expires_at, timeout_secs, target)
              VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?7, ?8, ?9, ?10)",
        args: vec![
            c.id.as_str().into(),
            c.gateway_id.as_str().into(),
            c.command_type.as_str().into(),
            c.params.to_string().into(),
            i64::from(c.confirm).into(),
            c.requested_by.as_str().into(),
            c.now.into(),
            c.expires_at.into(),
            i64::from(c.timeout_secs).into(),
            c.target.clone().into(),
        ],
    };
    let audit = Stmt {
        sql: INSERT_AUDIT,
        args: vec![
            c.id.as_str().into(),
            c.gateway_id.as_str().into(),
            c.now.into(),
            c.requested_by.as_str().into(),
            Arg::Null,
            CommandState::Queued.as_str().into(),
            detail.into(),
        ],
    };
    db.batch(vec![insert, audit]).await?;
    get(db, &c.id)
        .await?
        .ok_or_else(|| CommandStoreError::UnknownCommand { gateway: c.gateway_id.clone(), command: c.id.clone() })
}

/// Extra columns a transition sets besides `state` and `updated_at`.
enum Extra {
    None,
    Error(String),
    Outcome { result: Option<String>, error: Option<String>, artifacts: Option<String> },
}

/// One audited move: to which state, by whom, why, when.
struct Step<'a> {
    to: CommandState,
    actor: &'a str,
    detail: Option<&'a str>,
    now: i64,
}

/// Moves `row` forward to `step.to` if that is progress; returns whether it moved (a concurrent writer that
/// moved it first wins, and this call then writes nothing).
async fn transition(
    db: &impl Sql,
    row: &CommandRow,
    step: Step<'_>,
    extra: Extra,
    before: Vec<Stmt>,
) -> Result<bool, CommandStoreError> {
    let Step { to, actor, detail, now } = step;
    if row.state.is_terminal() || to.rank() <= row.state.rank() {
        if !before.is_empty() {
            db.batch(before).await?;
        }
        return Ok(false);
    }
    let mut args: Vec<Arg> = vec![to.as_str().into(), now.into(), row.id.as_str().into(), row.state.as_str().into()];
    let sql = match extra {
        Extra::None => "UPDATE commands SET state = ?1, updated_at = ?2 WHERE id = ?3 AND state = ?4",
        Extra::Error(e) => {
            args.push(e.into());
            "UPDATE commands SET state = ?1, updated_at = ?2, error = ?5 WHERE id = ?3 AND state = ?4"
        }
        Extra::Outcome { result, error, artifacts } => {
            args.extend([result.into(), error.into(), artifacts.into()]);
            "UPDATE commands SET state = ?1, updated_at = ?2, result = coalesce(?5, result), error = coalesce(?6, error), \
             artifacts = coalesce(?7, artifacts) WHERE id = ?3 AND state = ?4"
        }
    };
    let mut stmts = before;
    stmts.push(Stmt { sql, args });
    stmts.push(Stmt { sql: INSERT_AUDIT_IF_CHANGED, args: audit_args(row, now, actor, Some(row.state), to.as_str(), detail) });
    let changed = db.batch(stmts).await?;
    Ok(changed.iter().rev().nth(1).copied().unwrap_or(0) == 1)
}

/// The session handed the command to a bridge: `queued` → `delivered` (re-sends only count the delivery).
pub async fn mark_delivered(db: &impl Sql, row: &CommandRow, actor: &str, now: i64) -> Result<bool, CommandStoreError> {
    let count = Stmt {
        sql: "UPDATE commands SET delivered_at = ?2, deliveries = deliveries + 1 WHERE id = ?1",
        args: vec![row.id.as_str().into(), now.into()],
    };
    let detail = format!("published to the gateway (delivery {})", row.deliveries + 1);
    transition(db, row, Step { to: CommandState::Delivered, actor, detail: Some(&detail), now }, Extra::None, vec![count]).await
}

/// Commands to send the gateway now, oldest first: unexpired `queued` ones, and with `resend` also the
/// `delivered` ones the agent has not acknowledged (as the shim: the agent either knows the id or reports
/// it `expired`, so none stays `delivered`).
pub async fn pending_for(db: &impl Sql, gateway: &str, resend: bool, now: i64) -> Result<Vec<CommandRow>, CommandStoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE gateway_id = ?1
         AND ((state = 'queued' AND expires_at > ?2) OR (?3 AND state = 'delivered')) ORDER BY created_at, rowid"
    );
    rows(db, &sql, vec![gateway.into(), now.into(), i64::from(resend).into()]).await
}

/// Non-terminal commands on the gateway with a cancel still to be sent.
pub async fn pending_cancels(db: &impl Sql, gateway: &str) -> Result<Vec<CommandRow>, CommandStoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE gateway_id = ?1 AND cancel_requested_at IS NOT NULL
         AND state IN ('delivered', 'accepted', 'running') ORDER BY created_at, rowid"
    );
    rows(db, &sql, vec![gateway.into()]).await
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

pub async fn request_cancel(db: &impl Sql, id: &str, actor: &str, now: i64) -> Result<CancelOutcome, CommandStoreError> {
    // Two rounds at most: a queued command delivered between the read and the compare-and-set is then
    // on the gateway and gets the cancel message instead.
    for _ in 0..2 {
        let Some(row) = get(db, id).await? else { return Ok(CancelOutcome::NotFound) };
        if row.state.is_terminal() {
            return Ok(CancelOutcome::AlreadyFinished(row));
        }
        if row.state == CommandState::Queued {
            if transition(
                db,
                &row,
                Step { to: CommandState::Cancelled, actor, detail: Some("cancelled before delivery"), now },
                Extra::None,
                vec![],
            )
            .await?
            {
                let row = get(db, id).await?.unwrap_or(row);
                return Ok(CancelOutcome::Cancelled(row));
            }
            continue;
        }
        let mark = Stmt {
            sql: "UPDATE commands SET cancel_requested_at = ?2, updated_at = ?2 WHERE id = ?1",
            args: vec![id.into(), now.into()],
        };
        let audit = Stmt {
            sql: INSERT_AUDIT,
            args: audit_args(
                &row,
                now,
                actor,
                Some(row.state),
                row.state.as_str(),
                Some("cancel requested; sent to the gateway"),
            ),
        };
        db.batch(vec![mark, audit]).await?;
        let row = get(db, id).await?.unwrap_or(row);
        return Ok(CancelOutcome::Requested(row));
    }
    get(db, id).await?.map_or(Ok(CancelOutcome::NotFound), |r| Ok(CancelOutcome::AlreadyFinished(r)))
}

/// The gateway's commands still `queued` past their expiry become `expired`; returns them.
pub async fn expire_due(db: &impl Sql, gateway: &str, actor: &str, now: i64) -> Result<Vec<CommandRow>, CommandStoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM commands WHERE gateway_id = ?1 AND state = 'queued' AND expires_at <= ?2 ORDER BY created_at LIMIT 500"
    );
    let mut expired = Vec::new();
    for row in rows(db, &sql, vec![gateway.into(), now.into()]).await? {
        let detail = "not delivered before it expired (gateway offline)";
        if transition(
            db,
            &row,
            Step { to: CommandState::Expired, actor, detail: Some(detail), now },
            Extra::Error(detail.into()),
            vec![],
        )
        .await?
        {
            expired.push(row);
        }
    }
    Ok(expired)
}

/// When the gateway's next queued command expires, if any.
pub async fn next_expiry(db: &impl Sql, gateway: &str) -> Result<Option<i64>, CommandStoreError> {
    let r = db
        .query("SELECT MIN(expires_at) AS next FROM commands WHERE gateway_id = ?1 AND state = 'queued'", vec![gateway.into()])
        .await?;
    Ok(r.first().and_then(|r| int(r, "next")))
}

/// The type of `sensor` if it is a child of `gateway` (a sensor that gateway announced, other than itself).
pub async fn child_sensor_type(db: &impl Sql, gateway: &str, sensor: &str) -> Result<Option<String>, CommandStoreError> {
    let r = db
        .query("SELECT type FROM sensors WHERE id = ?1 AND gateway_id = ?2 AND id <> ?2", vec![sensor.into(), gateway.into()])
        .await?;
    Ok(r.first().and_then(|r| text(r, "type")))
}

/// Applies a gateway's command update (ingest has verified its signature and topic). Late or replayed
/// updates never move a command backwards, so applying one twice is harmless; the result, error and
/// artifact metadata are kept from the update that moved it to a terminal state.
pub async fn apply_update(db: &impl Sql, gateway: &str, update: &CommandUpdate, now: i64) -> Result<bool, CommandStoreError> {
    // Two updates of one command can be applied at once (two bridging shims, or two ingest requests):
    // both read `accepted`, `running` wins the compare-and-set, and `succeeded` must not be dropped for
    // it. A lost compare-and-set reads the row again and tries once more while the update is progress.
    for _ in 0..MAX_UPDATE_RACES {
        let Some(row) = get(db, &update.id).await? else {
            return Err(CommandStoreError::UnknownCommand { gateway: gateway.to_owned(), command: update.id.clone() });
        };
        let progress = !row.state.is_terminal() && update.state.rank() > row.state.rank();
        if apply_update_to(db, gateway, update, now, row).await? {
            return Ok(true);
        }
        if !progress {
            return Ok(false);
        }
    }
    Ok(false)
}

/// Compare-and-set rounds [`apply_update`] tries before it lets a busier writer have the command.
const MAX_UPDATE_RACES: usize = 5;

async fn apply_update_to(
    db: &impl Sql,
    gateway: &str,
    update: &CommandUpdate,
    now: i64,
    row: CommandRow,
) -> Result<bool, CommandStoreError> {
    if row.gateway_id != gateway {
        return Err(CommandStoreError::WrongGateway {
            gateway: gateway.to_owned(),
            command: update.id.clone(),
            owner: row.gateway_id,
        });
    }
    let result = update.result.as_ref().map(|v| value_to_json(v).to_string());
    let artifacts = update.artifacts.as_ref().map(|a| {
        Json::Array(
            a.iter()
                .map(|m| json!({"id": m.id, "name": m.name, "size": m.size, "sha256": m.sha256, "contentType": m.content_type}))
                .collect(),
        )
        .to_string()
    });
    let actor = format!("agent:{gateway}");
    let extra = Extra::Outcome { result, error: update.error.clone(), artifacts };
    transition(db, &row, Step { to: update.state, actor: &actor, detail: update.error.as_deref(), now }, extra, vec![]).await
}
