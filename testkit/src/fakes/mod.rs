//! Camera and NVR fakes that speak the real protocols over real sockets on 127.0.0.1 (the only fakes
//! the project allows: nobody can run a rack of cameras in CI). Each runs on plain threads and is
//! stopped when its handle drops.

pub mod blackhole;
pub mod dahua;
pub mod gst;
pub mod h264;
pub mod http;
pub mod isapi;
pub mod onvif;
pub mod rtsp;
pub mod rtsp_replay;
pub mod site;
pub mod wsdiscovery;

use base64::Engine as _;
use md5::Digest as _;
use std::collections::HashMap;

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn md5_hex(b: &[u8]) -> String {
    hex(&md5::Md5::digest(b))
}

pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

pub(crate) fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

/// `k=v, k="v"` pairs of an Authorization header (after the scheme), keys lower-cased.
pub(crate) fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = rest[eq + 1..].trim_start();
        let (val, remain) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (q[..end].to_string(), &q[(end + 1).min(q.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, val);
        rest = remain.trim_start().trim_start_matches(',');
    }
    out
}
