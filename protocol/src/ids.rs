//! Identifier rules. Gateway ids appear inside MQTT topics, so `/`, `+`, `#` and `$` must never reach
//! them; one rule for every id keeps the shim, the store and the topics consistent.

use crate::error::ProtocolError;
use crate::limits::MAX_ID_LEN;

const RULE: &str = "1-64 characters from A-Z a-z 0-9 . _ : -";

/// Checks an identifier (`what` names it in the error: "gateway id", "sensor id", ...).
pub fn validate_id(what: &'static str, value: &str) -> Result<(), ProtocolError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::InvalidId { what, value: truncate(value), rule: RULE })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ID_LEN + 8).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("gateway id", "gw-01.site_a:x").is_ok());
        for bad in ["", "a/b", "a+b", "#", "$SYS", "a b", &"x".repeat(65)] {
            assert!(validate_id("gateway id", bad).is_err(), "{bad:?} accepted");
        }
    }
}
