//! The protocol version every message carries in key 0, and the check each message's `validate`
//! runs first. A leaf: the message modules and the codec depend on it, it depends on nothing but the
//! error type.

use crate::error::ProtocolError;

/// Version carried in key 0 of every message. A peer rejects any other value.
pub const PROTOCOL_VERSION: u8 = 1;

/// `Ok` for the version this crate speaks, else [`ProtocolError::Version`].
pub fn check_version(v: u8) -> Result<(), ProtocolError> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::Version { found: v.into(), expected: PROTOCOL_VERSION })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_version_passes() {
        assert!(check_version(PROTOCOL_VERSION).is_ok());
        assert!(matches!(check_version(PROTOCOL_VERSION + 1), Err(ProtocolError::Version { found: 2, expected: 1 })));
    }
}
