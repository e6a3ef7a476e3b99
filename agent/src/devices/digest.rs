//! HTTP Digest access authentication (RFC 7616), client side, for ONVIF, ISAPI, Dahua CGI and RTSP.
//! MD5 and SHA-256 (and their `-sess` variants), `qop=auth` or the RFC 2069 form without qop. The cnonce
//! comes from the system CSPRNG and `nc` increments per request on the same nonce, so no
//! (nonce, nc, cnonce) triple is ever sent twice. Also parses `Basic` challenges for RTSP servers.

use base64::Engine as _;
use md5::Digest as _;
use ring::rand::{SecureRandom, SystemRandom};

use super::ErrorClass;
use crate::spool::hex;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("no Digest or Basic challenge in WWW-Authenticate")]
    NoChallenge,
    #[error("Digest challenge without {0}")]
    Missing(&'static str),
    #[error("Digest algorithm {0:?} is not supported")]
    UnknownAlgorithm(String),
    #[error("Digest qop {0:?} offers no auth")]
    UnsupportedQop(String),
    #[error("system random source failed")]
    Random,
}

impl DigestError {
    /// An unsupported scheme is a protocol mismatch, not wrong credentials: backing off as for wrong
    /// credentials would hide a firmware problem behind an account problem.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Protocol
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl Algorithm {
    fn parse(s: &str) -> Option<Algorithm> {
        Some(match s.to_ascii_uppercase().as_str() {
            "MD5" => Algorithm::Md5,
            "MD5-SESS" => Algorithm::Md5Sess,
            "SHA-256" => Algorithm::Sha256,
            "SHA-256-SESS" => Algorithm::Sha256Sess,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
        }
    }

    fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex(&md5::Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => {
                hex(ring::digest::digest(&ring::digest::SHA256, data.as_bytes()).as_ref())
            }
        }
    }

    fn sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Digest(DigestChallenge),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `qop=auth` offered; `false` means the RFC 2069 compatibility form.
    pub qop_auth: bool,
}

/// Splits one header value into (scheme, auth-params) challenges. Params are `k=v` or `k="quoted"`.
fn challenges(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        // A token followed by '=' is a param of the current challenge; otherwise a new scheme.
        let tok_end = rest.find(|c: char| c == '=' || c == ',' || c.is_whitespace()).unwrap_or(rest.len());
        let (tok, after) = rest.split_at_checked(tok_end).unwrap_or((rest, ""));
        let after_trim = after.trim_start();
        if let Some(v) = after_trim.strip_prefix('=') {
            let v = v.trim_start();
            let (val, remain) = if let Some(q) = v.strip_prefix('"') {
                let mut val = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => val.push(c),
                    }
                }
                (val, q.get(end..).unwrap_or(""))
            } else {
                let e = v.find(',').unwrap_or(v.len());
                let (a, b) = v.split_at_checked(e).unwrap_or((v, ""));
                (a.trim().to_owned(), b)
            };
            if let Some((_, params)) = out.last_mut() {
                params.push((tok.to_ascii_lowercase(), val));
            }
            rest = remain.trim_start().trim_start_matches(',').trim_start();
        } else {
            if !tok.is_empty() {
                out.push((tok.to_owned(), Vec::new()));
            }
            rest = after_trim.trim_start_matches(',').trim_start();
            if tok.is_empty() && after_trim.is_empty() {
                break;
            }
        }
    }
    out
}

/// Picks the strongest usable challenge from all `WWW-Authenticate` values: Digest SHA-256 over Digest
/// MD5 over Basic. A Digest challenge whose algorithm is unknown is an error only when nothing usable
/// is offered besides it.
pub fn pick<'a>(values: impl Iterator<Item = &'a str>) -> Result<Challenge, DigestError> {
    let mut best: Option<Challenge> = None;
    let mut first_err: Option<DigestError> = None;
    for value in values {
        for (scheme, params) in challenges(value) {
            let get = |k: &str| params.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
            if scheme.eq_ignore_ascii_case("basic") {
                if best.is_none() {
                    best = Some(Challenge::Basic);
                }
                continue;
            }
            if !scheme.eq_ignore_ascii_case("digest") {
                continue;
            }
            let parsed = (|| {
                let algorithm = match get("algorithm") {
                    None => Algorithm::Md5,
                    Some(a) => Algorithm::parse(&a).ok_or(DigestError::UnknownAlgorithm(a))?,
                };
                let qop_auth = match get("qop") {
                    None => false,
                    Some(q) => {
                        if !q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")) {
                            return Err(DigestError::UnsupportedQop(q));
                        }
                        true
                    }
                };
                Ok(DigestChallenge {
                    realm: get("realm").ok_or(DigestError::Missing("realm"))?,
                    nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
                    opaque: get("opaque"),
                    algorithm,
                    qop_auth,
                })
            })();
            match parsed {
                Ok(d) => {
                    let better = match &best {
                        Some(Challenge::Digest(b)) => d.algorithm.rank() > b.algorithm.rank(),
                        _ => true,
                    };
                    if better {
                        best = Some(Challenge::Digest(d));
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    best.ok_or(first_err.unwrap_or(DigestError::NoChallenge))
}

/// Client state for one challenge: counts requests so `nc` never repeats for a nonce.
#[derive(Debug, Clone)]
pub struct DigestSession {
    pub challenge: DigestChallenge,
    nc: u32,
}

impl DigestSession {
    pub fn new(challenge: DigestChallenge) -> DigestSession {
        DigestSession { challenge, nc: 0 }
    }

    /// The `Authorization` header value for one request, with a fresh random cnonce.
    pub fn authorization(&mut self, method: &str, uri: &str, user: &str, pass: &str) -> Result<String, DigestError> {
        let mut raw = [0u8; 16];
        SystemRandom::new().fill(&mut raw).map_err(|_| DigestError::Random)?;
        let cnonce = hex(&raw);
        Ok(self.authorization_with(method, uri, user, pass, &cnonce))
    }

    /// As [`authorization`](Self::authorization) with a given cnonce (tests use the RFC's).
    pub fn authorization_with(&mut self, method: &str, uri: &str, user: &str, pass: &str, cnonce: &str) -> String {
        self.nc = self.nc.wrapping_add(1);
        let c = &self.challenge;
        let alg = c.algorithm;
        let nc = format!("{:08x}", self.nc);
        let mut ha1 = alg.hash_hex(&format!("{user}:{}:{pass}", c.realm));
        if alg.sess() {
            ha1 = alg.hash_hex(&format!("{ha1}:{}:{cnonce}", c.nonce));
        }
        let ha2 = alg.hash_hex(&format!("{method}:{uri}"));
        let response = if c.qop_auth {
            alg.hash_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce))
        } else {
            alg.hash_hex(&format!("{ha1}:{}:{ha2}", c.nonce))
        };
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{}\", uri=\"{}\", algorithm={}, nonce=\"{}\"",
            q(user),
            q(&c.realm),
            q(uri),
            alg.name(),
            q(&c.nonce)
        );
        if c.qop_auth {
            h.push_str(&format!(", nc={nc}, cnonce=\"{cnonce}\", qop=auth"));
        }
        h.push_str(&format!(", response=\"{response}\""));
        if let Some(o) = &c.opaque {
            h.push_str(&format!(", opaque=\"{}\"", q(o)));
        }
        h
    }
}

/// Why an authenticated GET failed before any HTTP status could be judged.
#[derive(Debug, thiserror::Error)]
pub enum AuthedGetError {
    #[error(transparent)]
    Http(#[from] super::http::HttpError),
    #[error(transparent)]
    Digest(DigestError),
    /// 401/403 after the one authenticated retry, or 401 with no credentials configured.
    #[error("credentials rejected (HTTP {0})")]
    Rejected(u16),
}

/// GET `path` on `target` with HTTP Digest (Basic only when offered alone): the kept `session` is used
/// first; a 401 is answered once with fresh state from its challenge. Any other status is returned for
/// the caller to judge. Shared by the vendor CGI/REST drivers.
pub async fn authed_get(
    target: &str,
    path: &str,
    creds: Option<super::Credentials<'_>>,
    limits: &super::http::Limits,
    session: &mut Option<DigestSession>,
) -> Result<super::http::Response, AuthedGetError> {
    use super::http::{exchange, Request};
    let send = |auth: Option<String>| {
        let headers = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
        async move { exchange(target, &Request { method: "GET", path, headers, body: &[] }, limits).await }
    };
    let auth = match (session.as_mut(), creds) {
        (Some(d), Some(c)) => Some(d.authorization("GET", path, c.user, c.pass).map_err(AuthedGetError::Digest)?),
        _ => None,
    };
    let resp = send(auth).await?;
    if resp.status != 401 {
        return Ok(resp);
    }
    let Some(c) = creds else { return Err(AuthedGetError::Rejected(401)) };
    let auth = match pick(resp.headers_named("www-authenticate")).map_err(AuthedGetError::Digest)? {
        Challenge::Digest(ch) => {
            let mut d = DigestSession::new(ch);
            let a = d.authorization("GET", path, c.user, c.pass).map_err(AuthedGetError::Digest)?;
            *session = Some(d);
            a
        }
        Challenge::Basic => basic(c.user, c.pass),
    };
    let resp = send(Some(auth)).await?;
    if resp.status == 401 || resp.status == 403 {
        *session = None;
        return Err(AuthedGetError::Rejected(resp.status));
    }
    Ok(resp)
}

/// `Authorization: Basic ...` value.
pub fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 section 3.9.1: the same request answered with SHA-256 and MD5.
    const RFC_CHALLENGE: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const RFC_CHALLENGE_MD5: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn response_of(header: &str) -> String {
        let (_, params) = challenges(header).into_iter().next().unwrap();
        params.into_iter().find(|(k, _)| k == "response").unwrap().1
    }

    #[test]
    fn rfc7616_sha256_example() {
        let Challenge::Digest(c) = pick([RFC_CHALLENGE].into_iter()).unwrap() else { panic!("not digest") };
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.qop_auth);
        let mut s = DigestSession::new(c);
        let h = s.authorization_with("GET", "/dir/index.html", "Mufasa", "Circle of Life", CNONCE);
        assert_eq!(response_of(&h), "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1");
        assert!(h.contains("nc=00000001"), "{h}");
        assert!(h.contains("opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""), "{h}");
    }

    #[test]
    fn rfc7616_md5_example() {
        let Challenge::Digest(c) = pick([RFC_CHALLENGE_MD5].into_iter()).unwrap() else { panic!("not digest") };
        let mut s = DigestSession::new(c);
        let h = s.authorization_with("GET", "/dir/index.html", "Mufasa", "Circle of Life", CNONCE);
        assert_eq!(response_of(&h), "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn server_offering_both_gets_sha256_and_nc_increments() {
        let c = pick([RFC_CHALLENGE_MD5, RFC_CHALLENGE].into_iter()).unwrap();
        let Challenge::Digest(c) = c else { panic!("not digest") };
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let mut s = DigestSession::new(c);
        let a = s.authorization("GET", "/", "u", "p").unwrap();
        let b = s.authorization("GET", "/", "u", "p").unwrap();
        assert!(a.contains("nc=00000001") && b.contains("nc=00000002"));
        assert_ne!(response_of(&a), response_of(&b), "fresh cnonce each request");
    }

    #[test]
    fn unknown_algorithm_and_missing_fields_are_typed() {
        let e = pick(["Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256, qop=\"auth\""].into_iter()).unwrap_err();
        assert_eq!(e, DigestError::UnknownAlgorithm("SHA-512-256".into()));
        assert_eq!(e.class(), ErrorClass::Protocol);
        assert_eq!(pick(["Digest realm=\"r\""].into_iter()).unwrap_err(), DigestError::Missing("nonce"));
        assert_eq!(pick(["Bearer x"].into_iter()).unwrap_err(), DigestError::NoChallenge);
        assert_eq!(pick([""].into_iter()).unwrap_err(), DigestError::NoChallenge);
        // A usable Basic next to an unknown Digest: Basic is taken.
        let both = ["Digest realm=\"r\", nonce=\"n\", algorithm=FOO", "Basic realm=\"r\""];
        assert_eq!(pick(both.into_iter()).unwrap(), Challenge::Basic);
    }

    #[test]
    fn rfc2069_form_without_qop() {
        let Challenge::Digest(c) = pick(["Digest realm=\"cam\", nonce=\"abc\""].into_iter()).unwrap() else {
            panic!("not digest")
        };
        assert!(!c.qop_auth);
        let h = DigestSession::new(c).authorization_with("DESCRIBE", "rtsp://h/s", "u", "p", "x");
        let ha1 = Algorithm::Md5.hash_hex("u:cam:p");
        let ha2 = Algorithm::Md5.hash_hex("DESCRIBE:rtsp://h/s");
        assert_eq!(response_of(&h), Algorithm::Md5.hash_hex(&format!("{ha1}:abc:{ha2}")));
        assert!(!h.contains("nc="));
    }

    #[test]
    fn garbage_headers_do_not_panic() {
        for g in ["Digest", "Digest ,,,", "Digest realm=\"unterminated", "=\"x\"", "Digest a=b=c", "\u{0}\u{ff}"] {
            let _ = pick([g].into_iter());
        }
    }

    #[test]
    fn basic_header() {
        assert_eq!(basic("Aladdin", "open sesame"), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    }
}
