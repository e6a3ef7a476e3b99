//! Minimal HTTP/1.1 (and RTSP/1.0, which has the same framing) client for device APIs: one request per
//! connection for HTTP, hard caps on header size, body size and total time, so a garbage-spewing or
//! slowloris device costs bounded memory and time. No redirects are followed: a camera API that
//! redirects is misconfigured, and following would open a loop.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::{future, Timer};

use super::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{target}: resolving: {source}")]
    Dns { target: String, source: std::io::Error },
    #[error("{target}: no address")]
    NoAddress { target: String },
    #[error("{target}: connecting: {source}")]
    Connect { target: String, source: std::io::Error },
    #[error("{target}: {source}")]
    Io { target: String, source: std::io::Error },
    #[error("{target}: timed out")]
    Timeout { target: String },
    #[error("{target}: response header over {limit} bytes")]
    HeaderTooLarge { target: String, limit: usize },
    #[error("{target}: response body over {limit} bytes")]
    BodyTooLarge { target: String, limit: usize },
    #[error("{target}: malformed response: {what}")]
    Malformed { target: String, what: &'static str },
    #[error("{target}: connection closed mid-response")]
    Truncated { target: String },
}

impl HttpError {
    pub fn class(&self) -> ErrorClass {
        match self {
            HttpError::Dns { .. } | HttpError::NoAddress { .. } => ErrorClass::Dns,
            HttpError::Connect { source, .. } => ErrorClass::of_io(source),
            HttpError::Io { source, .. } => match ErrorClass::of_io(source) {
                ErrorClass::Refused | ErrorClass::Unreachable => ErrorClass::Protocol,
                c => c,
            },
            HttpError::Timeout { .. } => ErrorClass::Timeout,
            HttpError::HeaderTooLarge { .. }
            | HttpError::BodyTooLarge { .. }
            | HttpError::Malformed { .. }
            | HttpError::Truncated { .. } => ErrorClass::Parse,
        }
    }
}

/// Caps for one exchange.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header: usize,
    pub max_body: usize,
    /// Total time for connect + request + response.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // ONVIF GetProfiles on a 16-channel NVR is ~100 KB; 512 KiB leaves room without letting a
        // broken device fill the gateway's memory.
        Limits { max_header: 16 * 1024, max_body: 512 * 1024, timeout: Duration::from_secs(10) }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// Runs `fut` until `deadline`; `None` when the deadline passed first.
pub async fn until<T>(deadline: Instant, fut: impl std::future::Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Timer::at(deadline).await;
        None
    })
    .await
}

/// Resolves and connects within `deadline`; returns the stream and the connect RTT. DNS runs on smol's
/// blocking pool, bounded here by the deadline so a dead resolver cannot stall the probe.
pub async fn connect(target: &str, deadline: Instant) -> Result<(TcpStream, Duration), HttpError> {
    let t = || target.to_owned();
    let addrs: Vec<SocketAddr> = match target.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => match until(deadline, smol::net::resolve(target)).await {
            None => return Err(HttpError::Timeout { target: t() }),
            Some(Err(source)) => return Err(HttpError::Dns { target: t(), source }),
            Some(Ok(a)) => a,
        },
    };
    let mut last = HttpError::NoAddress { target: t() };
    for addr in addrs {
        let start = Instant::now();
        match until(deadline, TcpStream::connect(addr)).await {
            None => return Err(HttpError::Timeout { target: t() }),
            Some(Ok(s)) => {
                // Small requests, latency-bound exchanges.
                let _ = s.set_nodelay(true);
                return Ok((s, start.elapsed()));
            }
            Some(Err(source)) => last = HttpError::Connect { target: t(), source },
        }
    }
    Err(last)
}

/// Largest single read into a [`Conn`]'s buffer.
const READ_CHUNK: usize = 4096;

/// One connection with a read buffer; bytes past a response stay buffered for the next read (RTSP
/// keeps the connection for several requests and interleaved RTP).
pub struct Conn {
    pub target: String,
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
}

impl Conn {
    pub async fn open(target: &str, deadline: Instant) -> Result<(Conn, Duration), HttpError> {
        let (stream, rtt) = connect(target, deadline).await?;
        Ok((Conn { target: target.to_owned(), stream, buf: Vec::new(), deadline }, rtt))
    }

    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }

    fn err_io(&self, source: std::io::Error) -> HttpError {
        HttpError::Io { target: self.target.clone(), source }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        match until(self.deadline, self.stream.write_all(bytes)).await {
            None => Err(HttpError::Timeout { target: self.target.clone() }),
            Some(Err(e)) => Err(self.err_io(e)),
            Some(Ok(())) => Ok(()),
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream. At most `room` bytes are read so the
    /// buffer never exceeds the caller's cap by more than one read.
    ///
    /// Reads straight into the buffer's tail: a chunk array on the stack would live in the state of
    /// every future awaiting this, and those states stay allocated for each device's probe tasks.
    async fn fill(&mut self, room: usize) -> Result<usize, HttpError> {
        let want = room.clamp(1, READ_CHUNK);
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        let r = until(self.deadline, self.stream.read(self.buf.get_mut(old..).unwrap_or_default())).await;
        let n = match &r {
            Some(Ok(n)) => *n,
            _ => 0,
        };
        self.buf.truncate(old + n);
        match r {
            None => Err(HttpError::Timeout { target: self.target.clone() }),
            Some(Err(e)) => Err(self.err_io(e)),
            Some(Ok(n)) => Ok(n),
        }
    }

    /// The first `n` bytes without consuming them, reading more as needed.
    pub async fn peek(&mut self, n: usize) -> Result<&[u8], HttpError> {
        while self.buf.len() < n {
            if self.fill(n - self.buf.len()).await? == 0 {
                return Err(HttpError::Truncated { target: self.target.clone() });
            }
        }
        Ok(self.buf.get(..n).unwrap_or_default())
    }

    /// Removes and returns the first `n` buffered bytes, reading more as needed.
    pub async fn take(&mut self, n: usize) -> Result<Vec<u8>, HttpError> {
        while self.buf.len() < n {
            if self.fill(n - self.buf.len()).await? == 0 {
                return Err(HttpError::Truncated { target: self.target.clone() });
            }
        }
        let rest = self.buf.split_off(n);
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// Up to `max` bytes of what follows: buffered bytes first, else one read. Empty at end of stream.
    /// For bodies streamed to disk instead of collected ([`Conn::read_response`] with `no_body`).
    pub async fn read_some(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        if self.buf.is_empty() && self.fill(max).await? == 0 {
            return Ok(Vec::new());
        }
        let rest = self.buf.split_off(self.buf.len().min(max.max(1)));
        Ok(std::mem::replace(&mut self.buf, rest))
    }

    /// Reads one line ending in CRLF (without it), capped at `max` bytes.
    async fn line(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let mut line = self.take(i + 2).await?;
                line.truncate(i);
                return Ok(line);
            }
            if self.buf.len() > max {
                return Err(HttpError::HeaderTooLarge { target: self.target.clone(), limit: max });
            }
            if self.fill(max + 2 - self.buf.len().min(max)).await? == 0 {
                return Err(HttpError::Truncated { target: self.target.clone() });
            }
        }
    }

    /// Reads one response. `proto` is the expected version prefix (`HTTP/1.` or `RTSP/1.0`);
    /// `no_body` for HEAD-like exchanges.
    pub async fn read_response(&mut self, proto: &str, limits: &Limits, no_body: bool) -> Result<Response, HttpError> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() >= limits.max_header {
                return Err(HttpError::HeaderTooLarge { target: self.target.clone(), limit: limits.max_header });
            }
            let room = limits.max_header - self.buf.len();
            if self.fill(room).await? == 0 {
                return Err(HttpError::Truncated { target: self.target.clone() });
            }
        };
        if head_end + 4 > limits.max_header {
            return Err(HttpError::HeaderTooLarge { target: self.target.clone(), limit: limits.max_header });
        }
        let head = self.take(head_end + 4).await?;
        let (status, headers) =
            parse_head(&head, proto).map_err(|what| HttpError::Malformed { target: self.target.clone(), what })?;
        let mut resp = Response { status, headers, body: Vec::new() };
        if no_body || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = self.read_chunked(limits.max_body).await?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize =
                len.trim().parse().map_err(|_| HttpError::Malformed { target: self.target.clone(), what: "content-length" })?;
            if len > limits.max_body {
                return Err(HttpError::BodyTooLarge { target: self.target.clone(), limit: limits.max_body });
            }
            resp.body = self.take(len).await?;
        } else if proto.starts_with("HTTP") {
            // No length: the body runs to connection close.
            loop {
                if self.buf.len() > limits.max_body {
                    return Err(HttpError::BodyTooLarge { target: self.target.clone(), limit: limits.max_body });
                }
                if self.fill(limits.max_body + 1 - self.buf.len()).await? == 0 {
                    break;
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    async fn read_chunked(&mut self, max_body: usize) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line = self.line(64).await?;
            let text = std::str::from_utf8(&line).unwrap_or("");
            let size_hex = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| HttpError::Malformed { target: self.target.clone(), what: "chunk size" })?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.line(1024).await?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > max_body {
                return Err(HttpError::BodyTooLarge { target: self.target.clone(), limit: max_body });
            }
            let mut chunk = self.take(size + 2).await?;
            if chunk.get(size..) != Some(b"\r\n".as_slice()) {
                return Err(HttpError::Malformed { target: self.target.clone(), what: "chunk framing" });
            }
            chunk.truncate(size);
            body.extend_from_slice(&chunk);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Status line and headers. Header values may fold (obsolete, but old camera firmware does it).
type Head = (u16, Vec<(String, String)>);

fn parse_head(head: &[u8], proto: &str) -> Result<Head, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "header not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or("empty")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with(proto) {
        return Err("unexpected protocol version");
    }
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or("status code")?;
    if !(100..600).contains(&status) {
        return Err("status code");
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            return Err("folded first header");
        }
        let (k, v) = line.split_once(':').ok_or("header without colon")?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok((status, headers))
}

/// An HTTP request to a device.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: &'a [u8],
}

/// Sends `req` to `target` on a fresh connection and reads the response, all within `limits.timeout`.
pub async fn exchange(target: &str, req: &Request<'_>, limits: &Limits) -> Result<Response, HttpError> {
    let deadline = Instant::now() + limits.timeout;
    let (mut conn, _) = Conn::open(target, deadline).await?;
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", req.method, req.path, target);
    for (k, v) in &req.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if !req.body.is_empty() || req.method == "POST" || req.method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(req.body);
    conn.send(&bytes).await?;
    conn.read_response("HTTP/1.", limits, req.method == "HEAD").await
}

/// Splits `http://host[:port]/path` into (`host:port`, `/path`). Only plain HTTP: the probes do not
/// speak TLS to cameras yet, and an `https` XAddr is reported as such by the caller.
pub fn split_url(url: &str, default_port: u16) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "rtsp" => default_port,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at_checked(i)?,
        None => (rest, "/"),
    };
    // Drop userinfo: credentials come from the config, never from a URL the device hands out.
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return None;
    }
    let has_port = if host.starts_with('[') { host.contains("]:") } else { host.contains(':') };
    let target = if has_port { host.to_owned() } else { format!("{host}:{port}") };
    Some((target, path.to_owned()))
}
