//! A small HTTP JSON client for the shim's API (ureq, plain HTTP on loopback), bearer token included.

use std::time::Duration;

use serde_json::Value;

/// An HTTP answer, whatever its status.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    /// Every response header, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("HTTP {} body is not JSON ({e}): {}", self.status, self.text()))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// True when the body is JSON with a string `error` member (the API's error shape).
    pub fn is_json_error(&self) -> bool {
        self.content_type.as_deref().is_some_and(|ct| ct.starts_with("application/json"))
            && serde_json::from_slice::<Value>(&self.body).is_ok_and(|v| v["error"].is_string())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Api {
    /// `base` like `http://127.0.0.1:8080`; `token` is sent as `Authorization: Bearer`.
    pub fn new(base: &str, token: Option<&str>) -> Api {
        let config =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build();
        Api { base: base.trim_end_matches('/').to_owned(), token: token.map(str::to_owned), agent: config.into() }
    }

    /// Same server, another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api { token: token.map(str::to_owned), ..self.clone() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Absolute URL for `path` (paths start with `/`; absolute URLs pass through).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Any request; `Err` only for transport failures (connection refused, timeout).
    pub fn try_request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Result<Reply, ureq::Error> {
        self.try_request_with(method, path, &[], body)
    }

    /// Any request with extra headers; an `Authorization` among them replaces the bearer token.
    pub fn try_request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Result<Reply, ureq::Error> {
        let url = self.url(path);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        let own_auth = headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let (Some(t), false) = (&self.token, own_auth) {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let resp = match body {
            Some((ct, bytes)) => {
                let req = req.header("Content-Type", ct).body(bytes.to_vec())?;
                self.agent.run(req)?
            }
            None => {
                let req = req.body(())?;
                self.agent.run(req)?
            }
        };
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let headers =
            resp.headers().iter().filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
        let body = resp.into_body().with_config().limit(1 << 30).read_to_vec()?;
        Ok(Reply { status, content_type, headers, body })
    }

    pub fn try_get(&self, path: &str) -> Result<Reply, ureq::Error> {
        self.try_request("GET", path, None)
    }

    /// Any request; panics on transport failure.
    pub fn request(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> Reply {
        self.try_request(method, path, body).unwrap_or_else(|e| panic!("{method} {}: {e}", self.url(path)))
    }

    /// Any request with extra headers; panics on transport failure.
    pub fn request_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<(&str, &[u8])>) -> Reply {
        self.try_request_with(method, path, headers, body).unwrap_or_else(|e| panic!("{method} {}: {e}", self.url(path)))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None)
    }

    /// GET expecting 2xx JSON; panics otherwise (with the body).
    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert!(r.is_success(), "GET {path}: HTTP {} {}", r.status, r.text());
        r.json()
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("serialising a serde_json::Value cannot fail");
        self.request("POST", path, Some(("application/json", &bytes)))
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        self.request("POST", path, Some((content_type, body)))
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, None)
    }
}
