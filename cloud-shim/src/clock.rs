//! The shim's one wall clock. A leaf: it depends on nothing in the crate, so every module can use it
//! (and the durability test includes this very file).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as the store keeps them (SQLite INTEGER); 0 before 1970.
pub fn now_ms() -> i64 {
    i64::try_from(now_ms_u64()).unwrap_or(i64::MAX)
}

/// [`now_ms`] unsigned, for the artifact tokens' expiry arithmetic.
pub fn now_ms_u64() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}
