//! Random identifiers and tokens from the kernel's CSPRNG (no extra crate for a few bytes).

use std::io::Read;

/// `n` random bytes as lower-case hex. Falls back to a time/pid mix only if /dev/urandom is unreadable,
/// which on Linux means the system is badly broken; callers use this for ids and generated tokens.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok();
    if !ok {
        log::warn!("/dev/urandom unreadable; using a weak time-based value");
        let mut x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        for b in buf.iter_mut() {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    crate::access::hex(&buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_of_requested_length_and_distinct() {
        let a = super::random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::random_hex(16));
    }
}
