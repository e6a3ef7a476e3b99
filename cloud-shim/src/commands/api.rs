//! Command HTTP API:
//! * `POST /v1/gateways/{id}/commands` `{type, target?, params, confirm, expiresInSecs? | expiresAt?, timeoutSecs?}` → 201
//!   with the command. Scope `operate`; `admin` for a destructive type. The audit names the API token.
//! * `GET /v1/gateways/{id}/commands?limit=&before=` → `{gatewayId, commands: [...]}`, newest first
//! * `GET /v1/commands/{id}` → the command with its `artifacts` and `audit` trail
//! * `POST /v1/commands/{id}/cancel` (scope `operate`; `admin` for a destructive type)
//! * `GET /v1/registry` (no token needed: it is the public contract) → the registry as a JSON array
//!
//! Validation errors are 400 `{"error", "field", "rule"}` naming the offending field (`type`,
//! `params.port`, `confirm`, ...) and the rule it broke (`unknown`, `max`, `pattern`, ...).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Extension, FromRef, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use scs_protocol::ids::validate_id;
use scs_protocol::registry::{check_command, target_class, CheckError, CommandSpec};
use serde_json::{json, Value as Json_};

use super::session::{Kick, Sessions};
use super::store::{self, CancelOutcome, CommandStoreError, NewCommand};
use super::value_json::{json_to_value, value_to_json};
use crate::access::{Principal, Scope};
use crate::artifacts::Artifacts;
use crate::clock::now_ms;
use crate::command_registry_gen::{COMMANDS, REGISTRY_JSON};
use crate::store::Store;

/// Default time a command may wait for an offline gateway.
pub const DEFAULT_EXPIRES_SECS: i64 = 3600;
pub const MAX_EXPIRES_SECS: i64 = 7 * 24 * 3600;
/// Largest request body accepted (parameters are small by schema).
const MAX_BODY: usize = 64 * 1024;

/// What the command API needs from the running shim: the database, the session task's wake-up handle,
/// and the artifact service for download links. The router's state provides it through [`FromRef`].
#[derive(Clone)]
pub struct CommandApi {
    pub store: Store,
    pub sessions: Sessions,
    pub artifacts: Artifacts,
}

pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    CommandApi: FromRef<S>,
{
    Router::new()
        .route("/v1/gateways/{id}/commands", post(create).get(history))
        .route("/v1/commands/{id}", get(show))
        .route("/v1/commands/{id}/cancel", post(cancel))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// Routes that need no token.
pub fn public_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/v1/registry", get(registry))
}

/// A JSON error; validation errors name the field and the rule.
#[derive(Debug)]
pub struct CommandApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
    rule: Option<String>,
    /// More members of the JSON body (what a 409 conflicted with).
    details: Option<Json_>,
}

impl CommandApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> CommandApiError {
        CommandApiError { status, message: message.into(), field: None, rule: None, details: None }
    }

    /// Adds the members of the object `details` to the error body.
    pub fn with_details(mut self, details: Json_) -> CommandApiError {
        self.details = Some(details);
        self
    }
    pub fn invalid(field: &str, rule: &str, message: impl Into<String>) -> CommandApiError {
        CommandApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
            rule: Some(rule.into()),
            details: None,
        }
    }
}

impl IntoResponse for CommandApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        if let Some(r) = self.rule {
            body["rule"] = json!(r);
        }
        if let Some(Json_::Object(extra)) = self.details {
            for (k, v) in extra {
                body[k.as_str()] = v;
            }
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<CommandStoreError> for CommandApiError {
    fn from(e: CommandStoreError) -> Self {
        log::error!("command store: {e}");
        CommandApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}"))
    }
}

impl From<CheckError> for CommandApiError {
    fn from(e: CheckError) -> Self {
        match &e {
            CheckError::UnknownType(t) => {
                let known: Vec<&str> = COMMANDS.iter().map(|c| c.command_type).collect();
                CommandApiError::invalid("type", "unknown", format!("unknown command type {t:?} (known: {})", known.join(", ")))
            }
            CheckError::ConfirmationRequired(_) => CommandApiError::invalid("confirm", "requiresConfirmation", e.to_string()),
            CheckError::Param(p) => {
                let field = if p.field.is_empty() { "params".to_owned() } else { format!("params.{}", p.field) };
                CommandApiError::invalid(&field, p.rule.as_str(), format!("invalid {field}: {}", p.message))
            }
        }
    }
}

/// Destructive command types need the `admin` scope, to create and to cancel.
fn is_destructive(command_type: &str) -> bool {
    COMMANDS.iter().any(|c| c.command_type == command_type && c.safety.destructive)
}

/// When the command expires (ms): `expiresInSecs` from now or an absolute `expiresAt`, else the default.
/// Zero, a past instant or a horizon beyond the maximum is refused, never read as "no expiry".
pub fn expiry(body: &Json_, now: i64) -> Result<i64, CommandApiError> {
    let at =
        match body.get("expiresAt") {
            None | Some(Json_::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                CommandApiError::invalid("expiresAt", "type", "expiresAt must be an integer (ms since the epoch)")
            })?),
        };
    let in_secs = int_field(body, "expiresInSecs", 1, MAX_EXPIRES_SECS)?;
    match (in_secs, at) {
        (Some(_), Some(_)) => {
            Err(CommandApiError::invalid("expiresAt", "exclusive", "give expiresInSecs or expiresAt, not both"))
        }
        (Some(s), None) => Ok(now + s * 1000),
        (None, None) => Ok(now + DEFAULT_EXPIRES_SECS * 1000),
        (None, Some(at)) if at <= now => {
            Err(CommandApiError::invalid("expiresAt", "min", format!("expiresAt {at} is not in the future (now {now})")))
        }
        (None, Some(at)) if at > now + MAX_EXPIRES_SECS * 1000 => {
            Err(CommandApiError::invalid("expiresAt", "max", format!("expiresAt is more than {MAX_EXPIRES_SECS} s ahead")))
        }
        (None, Some(at)) => Ok(at),
    }
}

pub fn new_command_id() -> String {
    format!("cmd-{}", crate::random::random_hex(12))
}

pub use super::rows::command_json;

pub fn int_field(body: &Json_, name: &str, min: i64, max: i64) -> Result<Option<i64>, CommandApiError> {
    match body.get(name) {
        None | Some(Json_::Null) => Ok(None),
        Some(v) => {
            let i = v.as_i64().ok_or_else(|| CommandApiError::invalid(name, "type", format!("{name} must be an integer")))?;
            if i < min {
                return Err(CommandApiError::invalid(name, "min", format!("{name} must be at least {min}")));
            }
            if i > max {
                return Err(CommandApiError::invalid(name, "max", format!("{name} must be at most {max}")));
            }
            Ok(Some(i))
        }
    }
}

/// `target`: absent or null for the gateway itself, else a sensor id.
fn target_field(body: &Json_) -> Result<Option<String>, CommandApiError> {
    match body.get("target") {
        None | Some(Json_::Null) => Ok(None),
        Some(Json_::String(t)) => {
            validate_id("target", t).map_err(|e| CommandApiError::invalid("target", "pattern", e.to_string()))?;
            Ok(Some(t.clone()))
        }
        Some(_) => Err(CommandApiError::invalid("target", "type", "target must be a sensor id (string)")),
    }
}

/// A command names a target the registry entry accepts: none for a gateway command, else a child
/// sensor of this gateway whose type's class is in the entry's `targets`. The gateway's own id is not a
/// target (the agent would refuse it as a device it does not have), as on the Worker.
async fn check_target(
    state: &CommandApi,
    gateway: &str,
    spec: &'static CommandSpec,
    target: Option<&str>,
) -> Result<(), CommandApiError> {
    let classes = spec.safety.targets.join(", ");
    let Some(t) = target else {
        if spec.targets("gateway") {
            return Ok(());
        }
        return Err(CommandApiError::invalid(
            "target",
            "required",
            format!("{} targets {classes}: name the target device", spec.command_type),
        ));
    };
    let id = t.to_owned();
    let sensor = state.store.call(move |c| crate::store::queries::get_sensor(c, &id)).await.map_err(|e| {
        log::error!("command target lookup: {e}");
        CommandApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}"))
    })?;
    let Some(sensor) = sensor.filter(|s| s.parent_sensor_id.as_deref() == Some(gateway) && s.gateway_id == gateway) else {
        return Err(CommandApiError::invalid(
            "target",
            "child",
            format!("target {t} is not a child device of gateway {gateway}"),
        ));
    };
    match target_class(&sensor.sensor_type) {
        Some(c) if spec.targets(c) => Ok(()),
        _ => Err(CommandApiError::invalid(
            "target",
            "targets",
            format!("{} targets {classes}, not target {t} (type {})", spec.command_type, sensor.sensor_type),
        )),
    }
}

async fn create(
    State(state): State<CommandApi>,
    Path(gateway): Path<String>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, CommandApiError> {
    validate_id("gateway id", &gateway).map_err(|e| CommandApiError::invalid("gatewayId", "pattern", e.to_string()))?;
    if body.len() > MAX_BODY {
        return Err(CommandApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {MAX_BODY} bytes")));
    }
    let body: Json_ =
        serde_json::from_slice(&body).map_err(|e| CommandApiError::invalid("body", "json", format!("body is not JSON: {e}")))?;
    if !body.is_object() {
        return Err(CommandApiError::invalid("body", "object", "body must be a JSON object"));
    }
    let command_type = match body.get("type") {
        Some(Json_::String(s)) => s.clone(),
        None | Some(Json_::Null) => return Err(CommandApiError::invalid("type", "required", "type is required")),
        Some(_) => return Err(CommandApiError::invalid("type", "type", "type must be a string")),
    };
    let now = now_ms();
    let request = CommandRequestBody {
        gateway,
        command_type,
        requested_at: now,
        params: body.get("params").cloned().unwrap_or(Json_::Null),
        confirm: confirm_field(&body)?,
        target: target_field(&body)?,
        expires_at: expiry(&body, now)?,
        timeout_secs: int_field(&body, "timeoutSecs", 1, i64::MAX)?,
    };
    let row = match create_command(&state, &principal, new_command_id(), request).await? {
        Ok(row) => row,
        Err(refused) => return Ok(refused),
    };
    let location = format!("/v1/commands/{}", row.id);
    let mut resp = (StatusCode::CREATED, Json(command_json(&row, None))).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `confirm`: absent or null is `false`.
pub fn confirm_field(body: &Json_) -> Result<bool, CommandApiError> {
    match body.get("confirm") {
        None | Some(Json_::Null) => Ok(false),
        Some(Json_::Bool(b)) => Ok(*b),
        Some(_) => Err(CommandApiError::invalid("confirm", "type", "confirm must be a boolean")),
    }
}

/// A command as a caller asks for it, before the registry checks.
pub struct CommandRequestBody {
    pub gateway: String,
    pub command_type: String,
    /// When the request came in: the command's `createdAt`, and the time its expiry was computed from,
    /// so a default expiry is exactly its horizon after creation.
    pub requested_at: i64,
    /// The `params` object as JSON.
    pub params: Json_,
    pub confirm: bool,
    pub target: Option<String>,
    /// Milliseconds since the epoch (see [`expiry`]).
    pub expires_at: i64,
    /// Requested timeout; the registry's is the default and the ceiling.
    pub timeout_secs: Option<i64>,
}

/// Validates a command against the registry (parameters, confirmation, the `admin` scope for a
/// destructive type, the target), stores it under `id` and wakes the gateway's session. The inner
/// `Err` is a finished refusal (403 for a missing scope). Used by the command route and by the routes
/// that build commands for the caller (release offers).
pub async fn create_command(
    state: &CommandApi,
    principal: &Principal,
    id: String,
    req: CommandRequestBody,
) -> Result<Result<store::CommandRow, Response>, CommandApiError> {
    let params = json_to_value(&req.params);
    let (spec, params) = check_command(COMMANDS, &req.command_type, &params, req.confirm)?;
    if spec.safety.destructive {
        if let Err(e) = principal.require(Scope::Admin, &format!("run the destructive command {}", spec.command_type)) {
            return Ok(Err(e.into_response()));
        }
    }
    check_target(state, &req.gateway, spec, req.target.as_deref()).await?;
    let ceiling = i64::from(spec.timeout_secs);
    if let Some(t) = req.timeout_secs.filter(|t| *t > ceiling) {
        return Err(CommandApiError::invalid("timeoutSecs", "max", format!("timeoutSecs must be at most {ceiling} (not {t})")));
    }
    let timeout_secs = req.timeout_secs.unwrap_or(ceiling);
    let gateway = req.gateway;
    let new = NewCommand {
        id,
        gateway_id: gateway.clone(),
        command_type: spec.command_type.to_owned(),
        params: value_to_json(&params),
        confirm: req.confirm,
        requested_by: principal.actor(),
        now: req.requested_at,
        expires_at: req.expires_at,
        timeout_secs: timeout_secs as u32,
        target: req.target,
    };
    let row = state.store.call(move |c| store::create(c, &new)).await?;
    log::info!("command {} ({}) for {gateway} queued by {}", row.id, row.command_type, row.requested_by);
    state.sessions.kick(Kick::Gateway(gateway));
    Ok(Ok(row))
}

async fn show(State(state): State<CommandApi>, Path(id): Path<String>) -> Result<Json<Json_>, CommandApiError> {
    let base = state.artifacts.config().public_url.clone();
    let found = state
        .store
        .call(move |c| -> Result<_, CommandStoreError> {
            let Some(row) = store::get(c, &id)? else { return Ok(None) };
            let audit = store::audit(c, &id)?;
            let artifacts = super::artifact_list(c, &id, &base);
            Ok(Some((row, audit, artifacts)))
        })
        .await?;
    let Some((row, audit, artifacts)) = found else {
        return Err(CommandApiError::new(StatusCode::NOT_FOUND, "no such command"));
    };
    let mut v = command_json(&row, artifacts);
    v["audit"] = audit
        .iter()
        .map(|a| json!({"at": a.at, "actor": a.actor, "from": a.from_state, "to": a.to_state, "detail": a.detail}))
        .collect();
    Ok(Json(v))
}

async fn history(
    State(state): State<CommandApi>,
    Path(gateway): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Json_>, CommandApiError> {
    let limit = match q.get("limit") {
        None => 100,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| CommandApiError::invalid("limit", "max", "limit must be 1..=1000"))?,
    };
    let before = match q.get("before") {
        None => None,
        Some(s) => {
            Some(s.parse::<i64>().map_err(|_| CommandApiError::invalid("before", "type", "before must be a createdAt in ms"))?)
        }
    };
    let gw = gateway.clone();
    let rows = state.store.call(move |c| store::list_for_gateway(c, &gw, limit, before)).await?;
    let commands: Vec<Json_> = rows.iter().map(|r| command_json(r, None)).collect();
    Ok(Json(json!({ "gatewayId": gateway, "commands": commands })))
}

async fn cancel(
    State(state): State<CommandApi>,
    Path(id): Path<String>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, CommandApiError> {
    let lookup = id.clone();
    let found = state.store.call(move |c| store::get(c, &lookup)).await?;
    if let Some(row) = found.filter(|r| is_destructive(&r.command_type)) {
        if let Err(e) = principal.require(Scope::Admin, &format!("cancel the destructive command {}", row.command_type)) {
            return Ok(e.into_response());
        }
    }
    let who = principal.actor();
    let now = now_ms();
    let outcome = state.store.call(move |c| store::request_cancel(c, &id, &who, now)).await?;
    match outcome {
        CancelOutcome::NotFound => Err(CommandApiError::new(StatusCode::NOT_FOUND, "no such command")),
        CancelOutcome::AlreadyFinished(row) => Err(CommandApiError::new(
            StatusCode::CONFLICT,
            format!("command {} already finished ({})", row.id, row.state.as_str()),
        )),
        CancelOutcome::Cancelled(row) => Ok(Json(command_json(&row, None)).into_response()),
        CancelOutcome::Requested(row) => {
            state.sessions.kick(Kick::Cancel { gateway: row.gateway_id.clone(), id: row.id.clone() });
            Ok(Json(command_json(&row, None)).into_response())
        }
    }
}

async fn registry() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], REGISTRY_JSON).into_response()
}
