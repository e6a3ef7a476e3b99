//! The JSON error every route answers with, `{"error": "..."}` plus fields that help the caller, as
//! the shim's API does. Pure: the glue turns an [`ApiError`] into a `worker::Response`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Extra members of the JSON body.
    pub extra: Map<String, Value>,
    /// Extra response headers (e.g. `WWW-Authenticate`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), extra: Map::new(), headers: Vec::new() }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, message)
    }
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_owned(), value.into());
        self
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = self.extra.clone();
        body.insert("error".to_owned(), Value::String(self.message.clone()));
        Value::Object(body)
    }
}

impl From<crate::auth::Refusal> for ApiError {
    fn from(r: crate::auth::Refusal) -> Self {
        match r {
            crate::auth::Refusal::Unauthenticated(m) => ApiError::new(401, m).header("WWW-Authenticate", "Bearer"),
            crate::auth::Refusal::Forbidden { token, needed, has, action } => {
                ApiError::new(403, format!("token {token:?} lacks the {} scope needed to {action}", needed.as_str()))
                    .with("requiredScope", needed.as_str())
                    .with("tokenScope", has.as_str())
            }
        }
    }
}
