//! Uploader-supplied names and content types are display metadata only: they are cleaned here and never
//! used to build a path or an object key.

const MAX_NAME_LEN: usize = 128;
const MAX_CONTENT_TYPE_LEN: usize = 127;
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The last path component of `raw`, restricted to `[A-Za-z0-9._+-]` (others become `_`), without
/// leading dots, at most 128 bytes; `artifact` if nothing is left.
pub fn sanitize_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') { c } else { '_' }).collect();
    let trimmed = cleaned.trim_start_matches('.');
    let mut out: String = trimmed.chars().take(MAX_NAME_LEN).collect();
    if out.is_empty() || out.chars().all(|c| c == '_') {
        out = "artifact".to_string();
    }
    out
}

/// `type/subtype` made of RFC 6838 token characters, lower-cased; anything else becomes octet-stream.
pub fn sanitize_content_type(raw: &str) -> String {
    let raw = raw.trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'))
    };
    match raw.split_once('/') {
        Some((t, s)) if raw.len() <= MAX_CONTENT_TYPE_LEN && token(t) && token(s) => raw.to_ascii_lowercase(),
        _ => DEFAULT_CONTENT_TYPE.to_string(),
    }
}

/// Lower-case 64-digit hex, as the protocol's `ArtifactMeta.sha256`.
pub fn valid_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_paths_and_specials() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(sanitize_name("/"), "artifact");
        assert_eq!(sanitize_name(".."), "artifact");
        assert_eq!(sanitize_name("...hidden"), "hidden");
        assert_eq!(sanitize_name("log bundle\n\"x\".tar.gz"), "log_bundle__x_.tar.gz");
        assert_eq!(sanitize_name("ok-1_2.tar.gz"), "ok-1_2.tar.gz");
        assert_eq!(sanitize_name(&"a".repeat(500)).len(), 128);
    }

    #[test]
    fn content_types() {
        assert_eq!(sanitize_content_type("application/gzip"), "application/gzip");
        assert_eq!(sanitize_content_type("Text/Plain"), "text/plain");
        assert_eq!(sanitize_content_type("text/html\r\nX-Evil: 1"), DEFAULT_CONTENT_TYPE);
        assert_eq!(sanitize_content_type("nonsense"), DEFAULT_CONTENT_TYPE);
    }
}
