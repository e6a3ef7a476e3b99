//! The artifact token format, without the MAC: shared by the shim (`tokens.rs`, HMAC from ring) and the
//! Worker (`worker/src/artifacts/tokens.rs`, HMAC from RustCrypto, which builds for wasm32), so both clouds
//! mint and accept exactly the same tokens. Pure and dependency-free.
//!
//! Format (URL-safe, no encoding needed): `v1~{u|d}~{artifact}~{command}~{expires_ms}~{hex hmac}`, the MAC
//! being HMAC-SHA256 over everything before the last `~`. `~` never occurs in ids (`[A-Za-z0-9._:-]`), so
//! the fields split unambiguously.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Upload,
    Download,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Upload => "u",
            Purpose::Download => "d",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub purpose: Purpose,
    pub artifact: String,
    pub command: String,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token is for {found:?}, not {wanted:?}")]
    WrongPurpose { wanted: Purpose, found: Purpose },
    #[error("token is bound to another artifact, not {artifact}")]
    OtherArtifact { artifact: String },
    #[error("token for artifact {artifact} expired")]
    Expired { artifact: String },
}

/// The signed part of a token for `claims` (the token is this, `~`, and the hex MAC over it).
pub fn signing_input(claims: &Claims) -> String {
    format!("v1~{}~{}~{}~{}", claims.purpose.tag(), claims.artifact, claims.command, claims.expires_ms)
}

/// `body~hex(mac)`.
pub fn assemble(body: String, mac: &[u8]) -> String {
    let mut t = body;
    t.push('~');
    for b in mac {
        t.push_str(&format!("{b:02x}"));
    }
    t
}

/// Checks signature (with `mac_ok(body, presented_mac)`, which must compare in constant time), purpose,
/// artifact binding and expiry, in that order.
pub fn verify_with(
    token: &str,
    purpose: Purpose,
    artifact: &str,
    now_ms: u64,
    mac_ok: impl FnOnce(&[u8], &[u8]) -> bool,
) -> Result<Claims, TokenError> {
    let (body, sig_hex) = token.rsplit_once('~').ok_or(TokenError::Malformed)?;
    let sig = hex_decode(sig_hex).ok_or(TokenError::Malformed)?;
    if !mac_ok(body.as_bytes(), &sig) {
        return Err(TokenError::BadSignature);
    }
    let parts: Vec<&str> = body.split('~').collect();
    let [version, tag, art, command, expires] = parts.as_slice() else {
        return Err(TokenError::Malformed);
    };
    if *version != "v1" {
        return Err(TokenError::Malformed);
    }
    let found = match *tag {
        "u" => Purpose::Upload,
        "d" => Purpose::Download,
        _ => return Err(TokenError::Malformed),
    };
    if found != purpose {
        return Err(TokenError::WrongPurpose { wanted: purpose, found });
    }
    if *art != artifact {
        return Err(TokenError::OtherArtifact { artifact: artifact.to_string() });
    }
    let expires_ms: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    if now_ms >= expires_ms {
        return Err(TokenError::Expired { artifact: artifact.to_string() });
    }
    Ok(Claims { purpose, artifact: art.to_string(), command: command.to_string(), expires_ms })
}

pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}
