//! `POST /v1/enroll`: first-boot enrollment of a gateway with a site enrollment token
//! (`Authorization: Bearer scs_enroll_...`, see `identity::enroll`). The token is checked before a byte
//! of the body is read; the body (JSON, or CBOR with `Content-Type: application/cbor`) is bounded.
//! The answer (201) is the gateway's identity as a provisioning bundle without `signing_key`
//! (`application/toml`): the gateway adds the key it generated, which never leaves it.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::error::ApiError;
use crate::access::{bearer, sha256_hex};
use crate::identity::endpoints::Endpoints;
use crate::identity::enroll::{self, EnrollError, EnrollRequest};
use crate::state::AppState;

/// An enrollment request is an id, a 32-byte key and a 64-byte signature.
const MAX_ENROLL_BODY: usize = 4 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/enroll", post(enroll_gateway))
}

fn refused(e: EnrollError) -> Response {
    let status = match &e {
        EnrollError::UnknownToken | EnrollError::Expired { .. } | EnrollError::Revoked { .. } | EnrollError::UsedUp { .. } => {
            StatusCode::UNAUTHORIZED
        }
        EnrollError::WrongSite { .. } => StatusCode::FORBIDDEN,
        EnrollError::Active(_) => StatusCode::CONFLICT,
        EnrollError::BadProof { .. } | EnrollError::BadRequest(_) => StatusCode::BAD_REQUEST,
        EnrollError::Add { source: crate::identity::registry::AddError::InvalidId { .. }, .. } => StatusCode::BAD_REQUEST,
        EnrollError::Add { source: crate::identity::registry::AddError::Limit { .. }, .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        log::error!("enrollment: {e}");
    } else {
        log::warn!("enrollment refused: {e}");
    }
    let mut resp = ApiError::new(status, e.to_string()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

async fn enroll_gateway(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Some(token) = bearer(&headers) else {
        return refused(EnrollError::UnknownToken);
    };
    let hash = sha256_hex(token.as_bytes());
    // Authenticate first: the token must exist and be usable, or the body is never read. (A repeat by an
    // already enrolled device is decided inside the transaction, so a used-up token passes here.)
    let h = hash.clone();
    let now = crate::clock::now_ms();
    let found = state.store.call(move |c| enroll::lookup(c, &h).map_err(EnrollError::from)).await;
    match found {
        Ok(Some(t)) if t.revoked_ms.is_none() && now < t.expires_ms => {}
        Ok(Some(t)) => return refused(t.usable(now).err().unwrap_or(EnrollError::UnknownToken)),
        Ok(None) => return refused(EnrollError::UnknownToken),
        Err(e) => return refused(e),
    }
    let bytes = match axum::body::to_bytes(body, MAX_ENROLL_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("enrollment request larger than {MAX_ENROLL_BODY} bytes"),
            )
            .into_response()
        }
    };
    let cbor =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/cbor"));
    let req = match if cbor { EnrollRequest::from_cbor(&bytes) } else { EnrollRequest::from_json(&bytes) } {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    if let Err(e) = req.verify() {
        return refused(e);
    }
    let data_dir = state.config.data_dir.clone();
    let Some(endpoints) = Endpoints::read(&data_dir) else {
        return refused(EnrollError::BadRequest("the shim has not recorded its endpoints yet".into()));
    };
    let gw = req.gateway_id.clone();
    let result = state
        .store
        .call(move |c| enroll::enroll(c, &data_dir, &endpoints, &hash, &req, crate::clock::now_ms()))
        .await
        .and_then(|(token, bundle)| Ok((token, bundle.to_toml()?)));
    match result {
        Ok((token, text)) => {
            log::info!("gateway {gw} enrolled with token {} (site {})", token.id, token.site);
            (StatusCode::CREATED, [(header::CONTENT_TYPE, "application/toml")], text).into_response()
        }
        Err(e) => refused(e),
    }
}
