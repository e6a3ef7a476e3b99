//! The command API's request and response rules, the same as the shim's (`cloud-shim/src/commands/api.rs`,
//! `docs/worker-api.openapi.yaml`), as plain functions over bytes and JSON so they are tested on the host.
//! Validation errors are 400 `{"error", "field", "rule"}` naming the field and the rule it broke.

use scs_protocol::ids::validate_id;
use scs_protocol::registry::{check_command, target_class, CheckError, CommandSpec};
use serde_json::{json, Value as Json};

use super::registry::COMMANDS;
use super::store::AuditRow;
use super::value_json::{json_to_value, value_to_json};
use crate::http::ApiError;

/// Default time a command may wait for an offline gateway.
pub const DEFAULT_EXPIRES_SECS: i64 = 3600;
pub const MAX_EXPIRES_SECS: i64 = 7 * 24 * 3600;
/// Largest request body accepted (parameters are small by schema).
pub const MAX_BODY: usize = 64 * 1024;

/// A validation error naming the field and the rule it broke.
pub fn invalid(field: &str, rule: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with("field", field).with("rule", rule)
}

/// A registry check failure as the shim reports it.
pub fn check_error(e: CheckError) -> ApiError {
    match &e {
        CheckError::UnknownType(t) => {
            let known: Vec<&str> = COMMANDS.iter().map(|c| c.command_type).collect();
            invalid("type", "unknown", format!("unknown command type {t:?} (known: {})", known.join(", ")))
        }
        CheckError::ConfirmationRequired(_) => invalid("confirm", "requiresConfirmation", e.to_string()),
        CheckError::Param(p) => {
            let field = if p.field.is_empty() { "params".to_owned() } else { format!("params.{}", p.field) };
            invalid(&field, p.rule.as_str(), format!("invalid {field}: {}", p.message))
        }
    }
}

/// Destructive command types need the `admin` scope, to create and to cancel.
pub fn is_destructive(command_type: &str) -> bool {
    COMMANDS.iter().any(|c| c.command_type == command_type && c.safety.destructive)
}

/// A create request that passed every check that needs no database.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub spec: &'static CommandSpec,
    pub params: Json,
    pub confirm: bool,
    pub expires_at: i64,
    pub timeout_secs: u32,
    pub target: Option<String>,
}

fn int_field(body: &Json, name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match body.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => {
            let i = v.as_i64().ok_or_else(|| invalid(name, "type", format!("{name} must be an integer")))?;
            if i < min {
                return Err(invalid(name, "min", format!("{name} must be at least {min}")));
            }
            if i > max {
                return Err(invalid(name, "max", format!("{name} must be at most {max}")));
            }
            Ok(Some(i))
        }
    }
}

/// When the command expires (ms): `expiresInSecs` from now or an absolute `expiresAt`, else the default.
/// Zero, a past instant or a horizon beyond the maximum is refused, never read as "no expiry".
pub fn expiry(body: &Json, now: i64) -> Result<i64, ApiError> {
    let at = match body.get("expiresAt") {
        None | Some(Json::Null) => None,
        Some(v) => {
            Some(v.as_i64().ok_or_else(|| invalid("expiresAt", "type", "expiresAt must be an integer (ms since the epoch)"))?)
        }
    };
    match (int_field(body, "expiresInSecs", 1, MAX_EXPIRES_SECS)?, at) {
        (Some(_), Some(_)) => Err(invalid("expiresAt", "exclusive", "give expiresInSecs or expiresAt, not both")),
        (Some(s), None) => Ok(now + s * 1000),
        (None, None) => Ok(now + DEFAULT_EXPIRES_SECS * 1000),
        (None, Some(at)) if at <= now => {
            Err(invalid("expiresAt", "min", format!("expiresAt {at} is not in the future (now {now})")))
        }
        (None, Some(at)) if at > now + MAX_EXPIRES_SECS * 1000 => {
            Err(invalid("expiresAt", "max", format!("expiresAt is more than {MAX_EXPIRES_SECS} s ahead")))
        }
        (None, Some(at)) => Ok(at),
    }
}

/// Checks a `POST /v1/gateways/{gateway}/commands` body against the registry.
pub fn parse_create(gateway: &str, body: &[u8], now: i64) -> Result<CreateRequest, ApiError> {
    validate_id("gateway id", gateway).map_err(|e| invalid("gatewayId", "pattern", e.to_string()))?;
    if body.len() > MAX_BODY {
        return Err(ApiError::new(413, format!("body over {MAX_BODY} bytes")));
    }
    let body: Json = serde_json::from_slice(body).map_err(|e| invalid("body", "json", format!("body is not JSON: {e}")))?;
    if !body.is_object() {
        return Err(invalid("body", "object", "body must be a JSON object"));
    }
    let command_type = match body.get("type") {
        Some(Json::String(s)) => s.clone(),
        None | Some(Json::Null) => return Err(invalid("type", "required", "type is required")),
        Some(_) => return Err(invalid("type", "type", "type must be a string")),
    };
    let confirm = match body.get("confirm") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => return Err(invalid("confirm", "type", "confirm must be a boolean")),
    };
    let target = match body.get("target") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => {
            validate_id("target", s).map_err(|e| invalid("target", "pattern", e.to_string()))?;
            Some(s.clone())
        }
        Some(_) => return Err(invalid("target", "type", "target must be a sensor id (string)")),
    };
    let params = json_to_value(body.get("params").unwrap_or(&Json::Null));
    let (spec, params) = check_command(COMMANDS, &command_type, &params, confirm).map_err(check_error)?;
    if target.is_none() && !spec.targets("gateway") {
        return Err(invalid(
            "target",
            "required",
            format!(
                "{} acts on a child device ({}): give its sensor id as target",
                spec.command_type,
                spec.safety.targets.join(", ")
            ),
        ));
    }
    let expires_at = expiry(&body, now)?;
    let timeout = int_field(&body, "timeoutSecs", 1, i64::from(spec.timeout_secs))?.unwrap_or(i64::from(spec.timeout_secs));
    Ok(CreateRequest {
        spec,
        params: value_to_json(&params),
        confirm,
        expires_at,
        timeout_secs: u32::try_from(timeout).unwrap_or(spec.timeout_secs),
        target,
    })
}

/// The target check that needs the sensors table: `sensor_type` is the type of the target among the
/// gateway's children (`None`: not a child of this gateway).
pub fn check_target(spec: &CommandSpec, gateway: &str, target: &str, sensor_type: Option<&str>) -> Result<(), ApiError> {
    let Some(ty) = sensor_type else {
        return Err(invalid("target", "notChild", format!("target {target:?} is not a child sensor of gateway {gateway}")));
    };
    match target_class(ty) {
        Some(class) if class != "gateway" && spec.targets(class) => Ok(()),
        class => Err(invalid(
            "target",
            "class",
            format!(
                "{} does not act on {target:?} (type {ty}, class {}); it targets {}",
                spec.command_type,
                class.unwrap_or("none"),
                spec.safety.targets.join(", ")
            ),
        )),
    }
}

pub fn audit_json(audit: &[AuditRow]) -> Json {
    audit
        .iter()
        .map(|a| json!({"at": a.at, "actor": a.actor, "from": a.from_state, "to": a.to_state, "detail": a.detail}))
        .collect()
}

/// `?limit=&before=` of the history route.
pub fn parse_history_query(limit: Option<&str>, before: Option<&str>) -> Result<(u32, Option<i64>), ApiError> {
    let limit = match limit {
        None => 100,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| invalid("limit", "max", "limit must be 1..=1000"))?,
    };
    let before = match before {
        None => None,
        Some(s) => Some(s.parse::<i64>().map_err(|_| invalid("before", "type", "before must be a createdAt in ms"))?),
    };
    Ok((limit, before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use scs_protocol::registry::find;

    fn err(gw: &str, body: &str) -> (u16, Json) {
        let e = parse_create(gw, body.as_bytes(), 1_000_000).unwrap_err();
        (e.status, e.body())
    }

    #[test]
    fn create_bodies_are_checked_as_the_shim_checks_them() {
        let ok = parse_create("gw-1", br#"{"type":"device.info"}"#, 1_000_000).unwrap();
        assert_eq!(ok.spec.command_type, "device.info");
        assert_eq!(ok.expires_at, 1_000_000 + DEFAULT_EXPIRES_SECS * 1000);
        assert_eq!(ok.timeout_secs, ok.spec.timeout_secs);
        assert_eq!(ok.target, None);
        let (s, b) = err("gw-1", r#"{"type":"nope"}"#);
        assert_eq!((s, b["field"].as_str(), b["rule"].as_str()), (400, Some("type"), Some("unknown")));
        assert_eq!(err("gw-1", "[1]").1["rule"], "object");
        assert_eq!(err("gw-1", "{").1["rule"], "json");
        assert_eq!(err("gw-1", "{}").1["rule"], "required");
        assert_eq!(err("gw 1", r#"{"type":"device.info"}"#).1["field"], "gatewayId");
        assert_eq!(err("gw-1", r#"{"type":"device.info","expiresInSecs":0}"#).1["rule"], "min");
        assert_eq!(err("gw-1", r#"{"type":"device.info","expiresAt":5}"#).1["rule"], "min");
        assert_eq!(err("gw-1", r#"{"type":"device.info","expiresAt":2000000,"expiresInSecs":5}"#).1["rule"], "exclusive");
        assert_eq!(err("gw-1", r#"{"type":"device.info","timeoutSecs":100000}"#).1["rule"], "max");
        assert_eq!(err("gw-1", r#"{"type":"device.info","target":5}"#).1["field"], "target");
        assert_eq!(err("gw-1", r#"{"type":"device.info","target":"a b"}"#).1["rule"], "pattern");
        let destructive = COMMANDS.iter().find(|c| c.safety.requires_confirmation).unwrap();
        let (_, b) = err("gw-1", &format!(r#"{{"type":"{}"}}"#, destructive.command_type));
        assert_eq!((b["field"].as_str(), b["rule"].as_str()), (Some("confirm"), Some("requiresConfirmation")));
        assert_eq!(parse_create("gw-1", &vec![b' '; MAX_BODY + 1], 0).unwrap_err().status, 413);
    }

    #[test]
    fn targets_must_be_children_of_an_accepted_class() {
        let info = find(COMMANDS, "device.info").unwrap();
        let e = check_target(info, "gw-1", "cam-9", None).unwrap_err();
        assert_eq!((e.status, e.body()["rule"].as_str()), (400, Some("notChild")));
        // Every command on this registry acts on the gateway only: a camera is the wrong class.
        let e = check_target(info, "gw-1", "cam-1", Some("CAMERA")).unwrap_err();
        assert_eq!((e.body()["field"].as_str(), e.body()["rule"].as_str()), (Some("target"), Some("class")));
        assert!(check_target(info, "gw-1", "r-1", Some("RADAR")).is_err());
        if let Some(cam_cmd) = COMMANDS.iter().find(|c| c.targets("camera")) {
            assert!(check_target(cam_cmd, "gw-1", "cam-1", Some("CAMERA")).is_ok());
        }
    }

    #[test]
    fn history_query() {
        assert_eq!(parse_history_query(None, None).unwrap(), (100, None));
        assert_eq!(parse_history_query(Some("5"), Some("77")).unwrap(), (5, Some(77)));
        assert!(parse_history_query(Some("0"), None).is_err());
        assert!(parse_history_query(None, Some("x")).is_err());
    }
}
