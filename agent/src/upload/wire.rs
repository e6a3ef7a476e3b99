//! A minimal blocking HTTP/1.1 client for the upload protocol, on rustls (ring) or plain TCP.
//!
//! Why not a general client: the agent needs four requests with small JSON answers and one streamed body,
//! and the armv7 binary budget is 3 MB; a general client (ureq + http + bytes + httparse) costs more than
//! this file. One connection per request (`Connection: close`): a 4 MiB chunk dwarfs a loopback or LAN
//! handshake, and a fresh connection after any error is exactly what resuming needs anyway.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Largest response head (status line + headers) and body we read; answers here are small JSON.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("invalid URL {0:?}")]
    Url(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("bad HTTP response: {0}")]
    Response(String),
}

impl WireError {
    /// The rustls error behind this failure, if any (handshake failures arrive wrapped in io errors).
    pub fn tls(&self) -> Option<&rustls::Error> {
        match self {
            WireError::Tls(e) => Some(e),
            WireError::Io(e) => e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Result<Url, WireError> {
        let bad = || WireError::Url(s.chars().take(200).collect());
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            // [v6]:port or [v6]
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad());
        }
        Ok(Url { https, host, port, path: path.to_string() })
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == if self.https { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// A request body: none, a small buffer, or `len` bytes streamed from a reader.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    Stream(&'a mut dyn Read, u64),
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// Header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub struct Client {
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    io_timeout: Duration,
    user_agent: String,
}

/// Loads trust anchors from a PEM file.
pub fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())?;
    for c in certs {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    if roots.is_empty() {
        return Err("no certificate in file".into());
    }
    Ok(roots)
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Client {
    pub fn new(roots: RootCertStore, connect_timeout: Duration, io_timeout: Duration) -> Result<Client, WireError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Client {
            tls: Arc::new(tls),
            connect_timeout,
            io_timeout,
            user_agent: concat!("scs-agent/", env!("CARGO_PKG_VERSION")).to_string(),
        })
    }

    fn connect(&self, url: &Url) -> Result<Conn, WireError> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{} did not resolve", url.host));
        let mut tcp = None;
        for addr in (url.host.as_str(), url.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or(last)?;
        tcp.set_read_timeout(Some(self.io_timeout))?;
        tcp.set_write_timeout(Some(self.io_timeout))?;
        let _ = tcp.set_nodelay(true);
        if !url.https {
            return Ok(Conn::Plain(tcp));
        }
        let name = ServerName::try_from(url.host.clone()).map_err(|_| WireError::Url(url.host.clone()))?;
        let conn = ClientConnection::new(self.tls.clone(), name)?;
        Ok(Conn::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }

    /// Sends one request on a fresh connection and reads the answer (head and a small body).
    pub fn request(&self, method: &str, url: &Url, headers: &[(&str, &str)], body: Body<'_>) -> Result<Response, WireError> {
        let mut conn = self.connect(url)?;
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nConnection: close\r\n",
            url.path,
            url.host_header(),
            self.user_agent
        );
        for (k, v) in headers {
            if v.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(WireError::Response(format!("header {k} contains a line break")));
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let len = match &body {
            Body::Empty => (method != "GET" && method != "HEAD").then_some(0),
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Stream(_, n) => Some(*n),
        };
        if let Some(n) = len {
            head.push_str(&format!("Content-Length: {n}\r\n"));
        }
        head.push_str("\r\n");
        // Through a buffer so small heads and body pieces leave in few TLS records / TCP segments.
        let mut w = io::BufWriter::with_capacity(64 * 1024, &mut conn);
        w.write_all(head.as_bytes())?;
        match body {
            Body::Empty => {}
            Body::Bytes(b) => w.write_all(b)?,
            Body::Stream(r, n) => {
                let copied = io::copy(&mut r.take(n), &mut w)?;
                if copied != n {
                    return Err(WireError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "request body source ended early")));
                }
            }
        }
        w.flush()?;
        drop(w);
        read_response(conn, method == "HEAD")
    }
}

/// Reads one line of at most `limit` bytes (the line ending included); an empty read is an error.
fn read_line(r: &mut BufReader<Conn>, line: &mut String, limit: usize) -> Result<usize, WireError> {
    line.clear();
    let n = r.by_ref().take(limit as u64 + 1).read_line(line)?;
    if n == 0 || n > limit {
        return Err(WireError::Response("response line missing or too long".into()));
    }
    Ok(n)
}

fn read_response(conn: Conn, head_only: bool) -> Result<Response, WireError> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    let mut left = MAX_HEAD;
    left -= read_line(&mut r, &mut line, left)?;
    let status: u16 = line
        .strip_prefix("HTTP/1.")
        .and_then(|l| l.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| WireError::Response(format!("status line {:?}", line.trim_end())))?;
    let mut headers = Vec::new();
    loop {
        left -= read_line(&mut r, &mut line, left)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let resp = Response { status, headers, body: String::new() };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let mut body = Vec::new();
    if resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            read_line(&mut r, &mut line, 1024)?;
            let size_hex = line.trim().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size_hex, 16).map_err(|_| WireError::Response("bad chunk size".into()))?;
            if size == 0 {
                break;
            }
            // Keep what fits the cap, skip the rest of the chunk, then its CRLF.
            let keep = size.min(MAX_BODY.saturating_sub(body.len()) as u64);
            r.by_ref().take(keep).read_to_end(&mut body)?;
            io::copy(&mut r.by_ref().take(size - keep), &mut io::sink())?;
            read_line(&mut r, &mut line, 2)?;
        }
    } else if let Some(n) = resp.header("content-length").and_then(|v| v.parse::<u64>().ok()) {
        r.by_ref().take(n.min(MAX_BODY as u64)).read_to_end(&mut body)?;
    } else {
        r.by_ref().take(MAX_BODY as u64).read_to_end(&mut body)?;
    }
    Ok(Response { body: String::from_utf8_lossy(&body).into_owned(), ..resp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://cloud.example/v1/uploads").expect("url");
        assert_eq!((u.https, u.host.as_str(), u.port, u.path.as_str()), (true, "cloud.example", 443, "/v1/uploads"));
        assert_eq!(u.host_header(), "cloud.example");
        let u = Url::parse("http://127.0.0.1:8080").expect("url");
        assert_eq!((u.port, u.path.as_str(), u.host_header().as_str()), (8080, "/", "127.0.0.1:8080"));
        let u = Url::parse("http://[::1]:9/x?y=1").expect("url");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str(), u.host_header().as_str()), ("::1", 9, "/x?y=1", "[::1]:9"));
        for bad in ["ftp://x/", "http://", "http://u@h/", "http://h:port/", "http://h/a b", "cloud.example/x"] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    /// One canned answer from a loopback socket, read back through `request`.
    fn serve_once(answer: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<u8>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the head and the 5-byte body arrived.
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() < got.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4 + 5 {
                let n = s.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).expect("answer");
            got
        });
        (port, h)
    }

    #[test]
    fn request_and_responses() {
        let client = Client::new(RootCertStore::empty(), Duration::from_secs(5), Duration::from_secs(5)).expect("client");
        let (port, h) = serve_once(b"HTTP/1.1 200 OK\r\nUpload-Offset: 42\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        let url = Url::parse(&format!("http://127.0.0.1:{port}/v1/uploads/a")).expect("url");
        let r = client.request("PATCH", &url, &[("Upload-Offset", "0")], Body::Stream(&mut &b"hello"[..], 5)).expect("request");
        assert_eq!((r.status, r.header("upload-offset"), r.body.as_str()), (200, Some("42"), "abcde"));
        let sent = String::from_utf8(h.join().expect("server")).expect("utf8");
        assert!(sent.starts_with("PATCH /v1/uploads/a HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("\r\nContent-Length: 5\r\n") && sent.ends_with("\r\n\r\nhello"), "{sent}");

        let (port, h) = serve_once(b"HTTP/1.1 422 Unprocessable\r\nContent-Length: 7\r\n\r\n{\"e\":1}");
        let url = Url::parse(&format!("http://127.0.0.1:{port}/f")).expect("url");
        let r = client.request("POST", &url, &[], Body::Bytes(b"12345")).expect("request");
        assert_eq!((r.status, r.body.as_str()), (422, "{\"e\":1}"));
        h.join().expect("server");
    }
}
