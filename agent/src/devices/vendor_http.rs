//! Authenticated HTTP to a device's own API for the device commands (snapshot, reboot, clip
//! download): any method, HTTP Digest (RFC 7616) or Basic as the device challenges, the Digest state
//! kept across requests. Small answers are collected under [`Limits`]; downloads are handed to a sink
//! chunk by chunk so a clip never sits in memory.

use std::time::Instant;

use super::digest::{self, Challenge, DigestSession};
use super::http::{self, Conn, HttpError, Limits, Request, Response};
use super::{Credentials, ErrorClass};

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{target}{path}: {source}")]
    Digest { target: String, path: String, source: digest::DigestError },
    #[error("{target}{path}: credentials rejected (HTTP {status})")]
    Auth { target: String, path: String, status: u16 },
    #[error("{target}{path}: HTTP {status}")]
    Status { target: String, path: String, status: u16 },
    #[error("{target}{path}: {what}")]
    Protocol { target: String, path: String, what: String },
    #[error("{target}{path}: download over {limit} bytes")]
    TooLarge { target: String, path: String, limit: u64 },
    #[error("{target}{path}: writing the download: {source}")]
    Sink { target: String, path: String, source: std::io::Error },
}

impl VendorError {
    pub fn class(&self) -> ErrorClass {
        match self {
            VendorError::Http(e) => e.class(),
            VendorError::Digest { source, .. } => source.class(),
            VendorError::Auth { .. } => ErrorClass::Auth,
            VendorError::Status { status, .. } if (300..400).contains(status) => ErrorClass::Protocol,
            VendorError::Status { .. } => ErrorClass::Fault,
            VendorError::Protocol { .. } | VendorError::TooLarge { .. } | VendorError::Sink { .. } => ErrorClass::Protocol,
        }
    }
}

/// One request to a device, for [`Client::download`].
#[derive(Debug, Clone, Copy)]
pub struct Call<'b> {
    pub method: &'b str,
    pub path: &'b str,
    pub content_type: Option<&'b str>,
    pub body: &'b [u8],
}

/// A device HTTP session: target, credentials and the Digest state of the last challenge.
pub struct Client<'a> {
    pub target: String,
    creds: Option<Credentials<'a>>,
    pub limits: Limits,
    digest: Option<DigestSession>,
    basic: bool,
}

impl<'a> Client<'a> {
    pub fn new(target: &str, creds: Option<Credentials<'a>>, limits: Limits) -> Client<'a> {
        Client { target: target.to_owned(), creds, limits, digest: None, basic: false }
    }

    fn auth_header(&mut self, method: &str, path: &str) -> Result<Option<String>, VendorError> {
        let Some(c) = self.creds else { return Ok(None) };
        if let Some(d) = self.digest.as_mut() {
            return d.authorization(method, path, c.user, c.pass).map(Some).map_err(|source| VendorError::Digest {
                target: self.target.clone(),
                path: path.to_owned(),
                source,
            });
        }
        Ok(self.basic.then(|| digest::basic(c.user, c.pass)))
    }

    /// Takes the challenge of a 401; `Err` when there is nothing to answer it with.
    fn on_challenge(&mut self, path: &str, resp: &Response) -> Result<(), VendorError> {
        if self.creds.is_none() {
            return Err(VendorError::Auth { target: self.target.clone(), path: path.to_owned(), status: 401 });
        }
        match digest::pick(resp.headers_named("www-authenticate")).map_err(|source| VendorError::Digest {
            target: self.target.clone(),
            path: path.to_owned(),
            source,
        })? {
            Challenge::Digest(c) => {
                self.digest = Some(DigestSession::new(c));
                self.basic = false;
            }
            Challenge::Basic => {
                self.digest = None;
                self.basic = true;
            }
        }
        Ok(())
    }

    fn refused(&mut self, path: &str, status: u16) -> VendorError {
        self.digest = None;
        VendorError::Auth { target: self.target.clone(), path: path.to_owned(), status }
    }

    /// One request with a bounded answer, answering one authentication challenge. Any status is
    /// returned except an authentication refusal.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, VendorError> {
        let mut resp = self.send(method, path, content_type, body).await?;
        if resp.status == 401 {
            self.on_challenge(path, &resp)?;
            resp = self.send(method, path, content_type, body).await?;
        }
        if resp.status == 401 || resp.status == 403 {
            return Err(self.refused(path, resp.status));
        }
        Ok(resp)
    }

    async fn send(&mut self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Result<Response, VendorError> {
        let mut headers = Vec::new();
        if let Some(a) = self.auth_header(method, path)? {
            headers.push(("Authorization", a));
        }
        if let Some(ct) = content_type {
            headers.push(("Content-Type", ct.to_owned()));
        }
        Ok(http::exchange(&self.target, &Request { method, path, headers, body }, &self.limits).await?)
    }

    /// A request whose `200` body is streamed into `sink` (at most `max` bytes, until `deadline`).
    /// Returns the response head and the body length. Content-Length and read-to-close framing;
    /// chunked transfer coding is refused (no device download seen so far uses it).
    pub async fn download(
        &mut self,
        call: &Call<'_>,
        max: u64,
        deadline: Instant,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(Response, u64), VendorError> {
        let path = call.path;
        let (mut conn, mut head) = self.open(call, deadline).await?;
        if head.status == 401 {
            self.on_challenge(path, &head)?;
            (conn, head) = self.open(call, deadline).await?;
        }
        if head.status == 401 || head.status == 403 {
            return Err(self.refused(path, head.status));
        }
        if head.status != 200 {
            return Err(VendorError::Status { target: self.target.clone(), path: path.to_owned(), status: head.status });
        }
        let perr = |what: &str| VendorError::Protocol { target: self.target.clone(), path: path.to_owned(), what: what.into() };
        if head.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            return Err(perr("chunked download not supported"));
        }
        let length = match head.header("content-length") {
            Some(v) => Some(v.trim().parse::<u64>().map_err(|_| perr("bad Content-Length"))?),
            None => None,
        };
        if length.is_some_and(|l| l > max) {
            return Err(VendorError::TooLarge { target: self.target.clone(), path: path.to_owned(), limit: max });
        }
        let mut got = 0u64;
        loop {
            let want = match length {
                Some(l) if got >= l => break,
                Some(l) => (l - got).min(64 * 1024) as usize,
                None => 64 * 1024,
            };
            let chunk = conn.read_some(want).await?;
            if chunk.is_empty() {
                if length.is_some() {
                    return Err(HttpError::Truncated { target: self.target.clone() }.into());
                }
                break;
            }
            got += chunk.len() as u64;
            if got > max {
                return Err(VendorError::TooLarge { target: self.target.clone(), path: path.to_owned(), limit: max });
            }
            sink(&chunk).map_err(|source| VendorError::Sink { target: self.target.clone(), path: path.to_owned(), source })?;
        }
        Ok((head, got))
    }

    /// Sends a request on a fresh connection and reads the response head only.
    async fn open(&mut self, call: &Call<'_>, deadline: Instant) -> Result<(Conn, Response), VendorError> {
        let Call { method, path, content_type, body } = *call;
        let (mut conn, _) = Conn::open(&self.target, deadline).await?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.target);
        if let Some(a) = self.auth_header(method, path)? {
            head.push_str(&format!("Authorization: {a}\r\n"));
        }
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        conn.send(&bytes).await?;
        let resp = conn.read_response("HTTP/1.", &self.limits, true).await?;
        Ok((conn, resp))
    }
}

/// Device clock minus gateway clock (seconds) from an HTTP `Date` header (RFC 9110 IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`), measured against `now_ms`. `None` when absent or unparseable.
pub fn date_offset_s(resp: &Response, now_ms: u64) -> Option<i64> {
    let device = parse_imf_date(resp.header("date")?)?;
    Some(device - (now_ms / 1000) as i64)
}

/// IMF-fixdate to Unix seconds.
pub fn parse_imf_date(s: &str) -> Option<i64> {
    let mut f = s.split_whitespace();
    let _weekday = f.next()?;
    let day: i64 = f.next()?.parse().ok()?;
    let month = match f.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = f.next()?.parse().ok()?;
    let mut t = f.next()?.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    if f.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(super::onvif::days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// True for a complete JPEG: SOI marker first, EOI marker last (trailing padding some cameras add,
/// NULs and line ends, is tolerated).
pub fn is_jpeg(b: &[u8]) -> bool {
    let end = b.iter().rposition(|&x| !matches!(x, 0 | b'\r' | b'\n')).map_or(0, |i| i + 1);
    let trimmed = b.get(..end).unwrap_or_default();
    trimmed.len() >= 4 && trimmed.starts_with(&[0xFF, 0xD8, 0xFF]) && trimmed.ends_with(&[0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imf_dates_parse() {
        assert_eq!(parse_imf_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_imf_date("Sun, 06 Nov 1994 08:49:37 CET"), None);
        assert_eq!(parse_imf_date("garbage"), None);
        let r = Response { status: 200, headers: vec![("Date".into(), "Sun, 06 Nov 1994 08:49:37 GMT".into())], body: vec![] };
        assert_eq!(date_offset_s(&r, 784_111_777_000 - 300_000), Some(300));
    }

    #[test]
    fn jpeg_markers_are_checked() {
        assert!(is_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 0xFF, 0xD9]));
        assert!(is_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 0xFF, 0xD9, 0, 0, b'\r', b'\n']));
        assert!(!is_jpeg(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2]), "truncated");
        assert!(!is_jpeg(b"<html>not an image</html>"));
        assert!(!is_jpeg(&[]));
    }
}
