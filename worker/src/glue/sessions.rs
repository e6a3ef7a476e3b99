//! wasm glue: the command routes. Reads go straight to D1; everything that changes a gateway's commands
//! goes through that gateway's Durable Object ([`crate::sessions::object`]), the single owner of its delivery.

use scs_protocol::ids::validate_id;
use serde_json::json;
use worker::{Env, Headers, Method as JsMethod, Request, RequestInit, Response};

use crate::auth::{require, Principal, Scope};
use crate::http::ApiError;
use crate::sessions::api::{audit_json, check_target, invalid, is_destructive, parse_create, parse_history_query, CreateRequest};
use crate::sessions::d1::D1;
use crate::sessions::object::GATEWAY_HEADER;
use crate::sessions::rows::command_json;
use crate::sessions::store::{self, NewCommand};
use crate::sessions::SessionRoute;

/// Durable Object namespace binding of the command sessions.
pub const SESSIONS: &str = "GATEWAY_SESSIONS";

type Answer = Result<Response, ApiError>;

fn internal(what: &str) -> impl Fn(worker::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

fn store_err(e: store::CommandStoreError) -> ApiError {
    ApiError::unavailable(format!("store: {e}"))
}

fn db(env: &Env) -> Result<D1, ApiError> {
    Ok(D1(env.d1(crate::glue::DB).map_err(internal("D1"))?))
}

fn json(status: u16, v: &serde_json::Value) -> Answer {
    crate::glue::json_response(status, v)
}

pub fn now() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// `cmd-` and 24 hex digits from the platform's CSPRNG.
pub fn new_command_id() -> Result<String, ApiError> {
    let mut b = [0u8; 12];
    crate::random::random_bytes(&mut b)?;
    Ok(format!("cmd-{}", crate::auth::hex(&b)))
}

/// Forwards to the gateway's object and returns its answer as it is.
async fn to_session(env: &Env, gateway: &str, op: &str, method: JsMethod, body: Option<Vec<u8>>) -> Answer {
    let ns = env.durable_object(SESSIONS).map_err(internal("Durable Object binding"))?;
    let stub = ns.id_from_name(gateway).and_then(|id| id.get_stub()).map_err(internal("session"))?;
    let headers = Headers::new();
    headers.set(GATEWAY_HEADER, gateway).map_err(internal("header"))?;
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(b) = body {
        init.with_body(Some(worker::js_sys::Uint8Array::from(b.as_slice()).into()));
    }
    let req = Request::new_with_init(&format!("https://session{op}"), &init).map_err(internal("session request"))?;
    stub.fetch_with_request(req).await.map_err(|e| ApiError::unavailable(format!("session of {gateway}: {e}")))
}

/// Creates a checked command through its gateway's Durable Object (the single owner of its delivery)
/// and returns the object's answer as it is: 201 with the command's JSON, or its refusal.
pub async fn create_in_session(env: &Env, who: &Principal, gw: &str, c: CreateRequest, id: String, t: i64) -> Answer {
    if c.spec.safety.destructive {
        require(who, Scope::Admin, &format!("run the destructive command {}", c.spec.command_type))?;
    }
    if let Some(target) = &c.target {
        let ty = store::child_sensor_type(&db(env)?, gw, target).await.map_err(store_err)?;
        check_target(c.spec, gw, target, ty.as_deref())?;
    }
    let new = NewCommand {
        id,
        gateway_id: gw.to_owned(),
        command_type: c.spec.command_type.to_owned(),
        params: c.params,
        confirm: c.confirm,
        requested_by: who.actor(),
        now: t,
        expires_at: c.expires_at,
        timeout_secs: c.timeout_secs,
        target: c.target,
    };
    let body = serde_json::to_vec(&new).map_err(|e| ApiError::internal(e.to_string()))?;
    to_session(env, gw, "/create", JsMethod::Post, Some(body)).await
}

pub async fn handle(route: SessionRoute, mut req: Request, env: &Env, who: &Principal) -> Answer {
    match route {
        SessionRoute::Create(gw) => {
            let body = req.bytes().await.map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
            let t = now();
            let c = parse_create(&gw, &body, t)?;
            let id = new_command_id()?;
            let mut resp = create_in_session(env, who, &gw, c, id.clone(), t).await?;
            if resp.status_code() != 201 {
                return Ok(resp);
            }
            // A fetched response's headers are immutable: answer with a new one carrying Location.
            let bytes = resp.bytes().await.map_err(internal("session answer"))?;
            let headers = Headers::new();
            headers.set("Content-Type", "application/json").map_err(internal("header"))?;
            headers.set("Location", &format!("/v1/commands/{id}")).map_err(internal("header"))?;
            Ok(Response::from_bytes(bytes).map_err(internal("response"))?.with_status(201).with_headers(headers))
        }
        SessionRoute::History(gw) => {
            validate_id("gateway id", &gw).map_err(|e| invalid("gatewayId", "pattern", e.to_string()))?;
            let url = req.url().map_err(internal("url"))?;
            let q = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
            let (limit, before) = parse_history_query(q("limit").as_deref(), q("before").as_deref())?;
            let rows = store::list_for_gateway(&db(env)?, &gw, limit, before).await.map_err(store_err)?;
            let commands: Vec<serde_json::Value> = rows.iter().map(|r| command_json(r, None)).collect();
            json(200, &json!({ "gatewayId": gw, "commands": commands }))
        }
        SessionRoute::Show(id) => {
            let db = db(env)?;
            let Some(row) = store::get(&db, &id).await.map_err(store_err)? else {
                return Err(ApiError::not_found("no such command"));
            };
            let audit = store::audit(&db, &id).await.map_err(store_err)?;
            // Stored artifacts with fresh download URLs; none stored: the metadata the agent reported.
            let base = super::artifacts::public_base(env, &req.url().map_err(internal("url"))?);
            let artifacts = super::artifacts::list_json(env, &db, &id, &base).await?;
            let mut v = command_json(&row, (!artifacts.is_empty()).then_some(serde_json::Value::Array(artifacts)));
            v["audit"] = audit_json(&audit);
            json(200, &v)
        }
        SessionRoute::Cancel(id) => {
            let Some(row) = store::get(&db(env)?, &id).await.map_err(store_err)? else {
                return Err(ApiError::not_found("no such command"));
            };
            if is_destructive(&row.command_type) {
                require(who, Scope::Admin, &format!("cancel the destructive command {}", row.command_type))?;
            }
            let body =
                serde_json::to_vec(&json!({"id": id, "actor": who.actor()})).map_err(|e| ApiError::internal(e.to_string()))?;
            to_session(env, &row.gateway_id, "/cancel", JsMethod::Post, Some(body)).await
        }
        SessionRoute::Downlink(gw) => {
            validate_id("gateway id", &gw).map_err(|e| invalid("gatewayId", "pattern", e.to_string()))?;
            let url = req.url().map_err(internal("url"))?;
            // The object mints upload grants naming this Worker's public URL, which only the route knows.
            let mut q = worker::url::form_urlencoded::Serializer::new(String::new());
            q.extend_pairs(url.query_pairs().filter(|(k, _)| k != "base"));
            q.append_pair("base", &super::artifacts::public_base(env, &url));
            let op = format!("/poll?{}", q.finish());
            to_session(env, &gw, &op, JsMethod::Post, None).await
        }
    }
}

/// For ingest: applies a verified command update from `gateway` to its command (monotonic, so a
/// replayed or re-tried message changes nothing). Call it before the message's receipt row is written,
/// so a failure here leaves the message to be retried.
pub async fn apply_command_update(
    env: &Env,
    gateway: &str,
    update: &scs_protocol::CommandUpdate,
) -> Result<bool, store::CommandStoreError> {
    let db = D1(env.d1(crate::glue::DB).map_err(|e| crate::db::SqlError::Db(e.to_string()))?);
    store::apply_update(&db, gateway, update, now()).await
}
