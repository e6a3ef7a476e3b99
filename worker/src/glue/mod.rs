//! wasm glue: the Worker's entry points and everything that touches a binding. Thin by design: each
//! handler gathers inputs, calls the pure modules, and talks to D1, the Queue or KV.
//!
//! Bindings (names in `worker/wrangler.toml`): `DB` (D1), `INGEST_QUEUE` (Queue producer; this Worker is
//! also its consumer), `CACHE` (KV), `ARTIFACTS` (R2). Variables: `SCS_API_TOKEN` (secret, admin token), `RELEASE_PUBLIC_KEY` (secret,
//! the release public key), `CORS_ORIGINS`.

pub mod artifacts;
mod cache;
mod d1;
pub mod hooks;
mod ingest;
mod read;
mod releases;
mod respond;
pub mod sessions;

use worker::{event, Context, Env, Request, Response, Result};

use crate::auth::{self, Principal, Refusal, Scope};
use crate::http::ApiError;
use crate::router::{self, Access, Method, Route};

pub use respond::{error_response, json_response};

/// D1 binding name.
pub const DB: &str = "DB";

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let method = Method::parse(req.method().as_ref());
    let path = req.path();
    let origin = req.headers().get("Origin").ok().flatten();
    let cors_config = env.var("CORS_ORIGINS").map(|v| v.to_string()).unwrap_or_default();
    let allowed = crate::cors::allow_origin(&cors_config, origin.as_deref());
    if method == Method::Options {
        let resp = Response::empty()?.with_status(204);
        return respond::with_cors(resp, allowed.as_deref(), true);
    }
    let resp = match handle(req, &env, method, &path).await {
        Ok(r) => r,
        Err(e) => error_response(&e)?,
    };
    respond::with_cors(resp, allowed.as_deref(), false)
}

async fn handle(req: Request, env: &Env, method: Method, path: &str) -> std::result::Result<Response, ApiError> {
    let route = router::route(method, path);
    // Authenticate (and check the scope the method needs) before anything reads the body.
    let principal = match route.access() {
        Access::Public => None,
        Access::Token => {
            let p = authenticate(&req, env).await?;
            let needed = if method.is_safe() { Scope::Read } else { Scope::Operate };
            auth::require(&p, needed, &format!("{method:?} {path}").to_uppercase())?;
            Some(p)
        }
    };
    // Command and artifact routes take the principal for their audit rows.
    let _ = principal;
    match route {
        Route::Healthz => healthz(env).await,
        Route::MethodNotAllowed(allow) => {
            Err(ApiError::new(405, format!("method not allowed; use {allow}")).header("Allow", allow))
        }
        Route::NotFound => Err(ApiError::not_found(format!("no route for {path}"))),
        Route::Releases(r) => releases::handle(r, req, env, principal.as_ref()).await,
        Route::Sessions(r) => match &principal {
            Some(p) => self::sessions::handle(r, req, env, p).await,
            None => Err(ApiError::internal("command route without a caller")),
        },
        Route::Artifacts(r) => artifacts::handle(r, req, env).await,
        Route::Ingest => ingest::ingest(req, env).await,
        Route::Sensors => read::sensors(&req, env).await,
        Route::Sensor(id) => read::sensor(env, &id).await,
        Route::SensorMetrics(id) => read::metrics(&req, env, &id).await,
        Route::Stats => read::stats(env).await,
        Route::GatewayStats(id) => read::gateway_stats(env, &id).await,
        Route::Fleet => read::fleet(&req, env).await,
        Route::GatewayDevices(id) => read::devices(env, &id).await,
        Route::SensorEvents(id) => read::events(&req, env, crate::read::devices::EventsOf::Sensor, &id).await,
        Route::GatewayEvents(id) => read::events(&req, env, crate::read::devices::EventsOf::Gateway, &id).await,
    }
}

/// The caller behind the request's bearer token.
async fn authenticate(req: &Request, env: &Env) -> std::result::Result<Principal, ApiError> {
    let header = req.headers().get("Authorization").ok().flatten().unwrap_or_default();
    let Some(token) = auth::bearer(&header) else {
        return Err(Refusal::Unauthenticated("missing bearer token (Authorization: Bearer <API token>)").into());
    };
    let env_token = env.secret("SCS_API_TOKEN").map(|s| s.to_string()).unwrap_or_default();
    if auth::is_env_token(token, &env_token) {
        return Ok(Principal { name: auth::ENV_TOKEN_NAME.to_owned(), scope: Scope::Admin });
    }
    let hash = auth::sha256_hex(token.as_bytes());
    let db = env.d1(DB).map_err(|e| ApiError::internal(format!("D1 binding {DB}: {e}")))?;
    #[derive(serde::Deserialize)]
    struct Row {
        name: String,
        scopes: String,
    }
    let row: Option<Row> = db
        .prepare("SELECT name, scopes FROM api_tokens WHERE sha256 = ?1 AND revoked_ms IS NULL")
        .bind(&[hash.into()])
        .map_err(|e| ApiError::internal(format!("token lookup: {e}")))?
        .first(None)
        .await
        .map_err(|e| ApiError::unavailable(format!("token lookup: {e}")))?;
    let row = row.ok_or(Refusal::Unauthenticated("invalid or revoked bearer token"))?;
    let scope = Scope::from_column(&row.scopes).ok_or(Refusal::Unauthenticated("token has unknown scopes"))?;
    Ok(Principal { name: row.name, scope })
}

async fn healthz(env: &Env) -> std::result::Result<Response, ApiError> {
    let store_ok = match env.d1(DB) {
        Ok(db) => db.prepare("SELECT count(*) AS n FROM d1_migrations").first::<serde_json::Value>(None).await.is_ok(),
        Err(_) => false,
    };
    let body = serde_json::json!({
        "status": if store_ok { "ok" } else { "unavailable" },
        "store": if store_ok { "ok" } else { "error" },
        "ingest": "queue",
        "version": env!("CARGO_PKG_VERSION"),
    });
    json_response(if store_ok { 200 } else { 503 }, &body)
}
