//! The upload protocol's four requests over ureq (blocking, streaming bodies), and the HTTPS setup:
//! rustls with the ring provider installed explicitly, roots from the configured CA file or the system
//! bundle (no compiled-in root store, which keeps the binary small).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scs_protocol::ArtifactMeta;
use ureq::http::Response;
use ureq::{Body, SendBody};

use super::{UploadConfig, UploadError};

pub fn build_agent(cfg: &UploadConfig) -> Result<ureq::Agent, UploadError> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Uploads go to the configured cloud, never through an environment proxy picked up by accident.
        .proxy(None)
        .timeout_connect(Some(Duration::from_secs(cfg.connect_timeout_secs)))
        .timeout_per_read(Some(Duration::from_secs(cfg.io_timeout_secs)))
        .timeout_per_write(Some(Duration::from_secs(cfg.io_timeout_secs)))
        .user_agent(concat!("scs-agent/", env!("CARGO_PKG_VERSION")))
        .build();
    crate::tls::https_agent(config, load_roots(cfg.ca_file.as_deref())?).map_err(UploadError::TlsSetup)
}

/// The CA file's certificates, or the system store's; none when neither exists (plain HTTP still works,
/// HTTPS then fails the handshake with a clear "unknown issuer").
fn load_roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, UploadError> {
    match crate::tls::root_store(ca_file) {
        Ok(r) => Ok(r),
        Err(crate::tls::CaError::NoSystemRoots) => {
            log::warn!("no CA file configured and no system CA certificates found; HTTPS uploads will fail");
            Ok(rustls::RootCertStore::empty())
        }
        Err(e) => Err(e.into()),
    }
}

/// What the server says about an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    Offset(u64),
    Complete,
}

/// A response reduced to what the uploader needs.
pub struct Reply {
    pub status: u16,
    pub offset: Option<u64>,
    /// `Upload-Length`: the size the server's upload was created with.
    pub length: Option<u64>,
    /// `Upload-Part-Size`: the exact chunk size the server takes (every PATCH but the last), from servers
    /// that store chunks as fixed-size parts (the Worker's R2 multipart uploads).
    pub part_size: Option<u64>,
    pub body: String,
}

fn reply(mut resp: Response<Body>) -> Reply {
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let (offset, length, part_size) = (header("upload-offset"), header("upload-length"), header("upload-part-size"));
    // Error bodies are small JSON; cap what we read so a misbehaving server cannot grow our memory.
    let body = resp.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
    Reply { status: resp.status().as_u16(), offset, length, part_size, body }
}

pub struct UploadTarget<'a> {
    pub agent: &'a ureq::Agent,
    /// `{grant.url}/{artifact}`.
    pub url: String,
    pub token: &'a str,
    /// `Basic base64(gateway_id:mqtt_password)` from the gateway's identity: the upload endpoints accept
    /// a grant only together with the identity of the gateway it was issued to.
    pub basic: Option<&'a str>,
}

/// The `Authorization` value for HTTP Basic with the gateway's MQTT credentials (RFC 7617).
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

impl UploadTarget<'_> {
    /// Credentials on every request: the gateway's own (Basic) and the grant token. Without an identity
    /// (development mode) the token goes as a bearer, as older shims expect.
    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let req = req.header("Upload-Token", self.token);
        match self.basic {
            Some(b) => req.header("Authorization", b),
            None => req.header("Authorization", &format!("Bearer {}", self.token)),
        }
    }

    pub fn head(&self) -> Result<Reply, ureq::Error> {
        self.auth(self.agent.head(&self.url)).call().map(reply)
    }

    pub fn create(&self, name: &str, size: u64, sha256: &str, content_type: &str) -> Result<Reply, ureq::Error> {
        let body = format!(
            "{{\"name\":{},\"size\":{size},\"sha256\":\"{sha256}\",\"contentType\":{}}}",
            json_string(name),
            json_string(content_type)
        );
        self.auth(self.agent.post(&self.url)).content_type("application/json").send(body).map(reply)
    }

    /// Sends `len` bytes of `path` starting at `offset`, streamed from the file (memory stays flat).
    /// `sent` counts body bytes handed to the socket, including any the server never committed.
    pub fn patch(&self, path: &Path, offset: u64, len: u64, sent: &AtomicU64) -> Result<Reply, PatchError> {
        let mut file = File::open(path).map_err(PatchError::File)?;
        file.seek(SeekFrom::Start(offset)).map_err(PatchError::File)?;
        let mut reader = Counting { inner: file.take(len), sent };
        self.auth(self.agent.patch(&self.url))
            .header("Upload-Offset", &offset.to_string())
            .header("Content-Length", &len.to_string())
            .content_type("application/offset+octet-stream")
            .send(SendBody::from_reader(&mut reader))
            .map(reply)
            .map_err(PatchError::Http)
    }

    pub fn finalize(&self) -> Result<Reply, ureq::Error> {
        self.auth(self.agent.post(&format!("{}/finalize", self.url))).send_empty().map(reply)
    }
}

#[derive(Debug)]
pub enum PatchError {
    File(io::Error),
    Http(ureq::Error),
}

struct Counting<'a, R> {
    inner: R,
    sent: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Minimal JSON string encoding (serde_json is not worth its size in the agent for two fields).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Pulls the artifact metadata out of the finalize answer (`{"id","name","size","sha256","contentType"}`),
/// falling back to what we declared for fields the server left out.
pub fn meta_from_finalize(body: &str, declared: &ArtifactMeta) -> ArtifactMeta {
    let field = |k: &str| json_field(body, k);
    ArtifactMeta {
        id: declared.id.clone(),
        name: field("name").unwrap_or_else(|| declared.name.clone()),
        size: declared.size,
        sha256: declared.sha256.clone(),
        content_type: field("contentType").unwrap_or_else(|| declared.content_type.clone()),
    }
}

/// The string value of a top-level `"key":"value"` in a flat JSON object (no escapes expected: the
/// server sanitizes names and content types).
pub fn json_field(body: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":");
    let start = body.find(&pat)? + pat.len();
    let rest = body[start..].trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        let declared = ArtifactMeta { id: "a".into(), name: "n".into(), size: 1, sha256: "s".into(), content_type: "c".into() };
        let m = meta_from_finalize(r#"{"id":"a","name":"bundle.tar.gz","size":1,"contentType":"application/gzip"}"#, &declared);
        assert_eq!((m.name.as_str(), m.content_type.as_str()), ("bundle.tar.gz", "application/gzip"));
        assert_eq!(meta_from_finalize("not json", &declared), declared);
    }
}
