//! `scs-agent self-test`: proves on the target itself (or under qemu-user in CI) that the parts most
//! likely to break in a cross build work: the bundled SQLite on a real file in WAL mode, the CBOR wire
//! format, the ring crypto behind rustls (known answers, the OS random source), and the config parser.
//!
//! Prints one line per check, then `N passed, N failed`; the exit status is non-zero if any failed.
//! It touches nothing outside a fresh directory under `$TMPDIR`, so it is safe on a live gateway.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::spool::hex;
use scs_protocol::topics::topic;
use scs_protocol::{decode_uplink, encode, DeviceReport, Metric, TelemetryBatch, TopicKind, Uplink};

/// Why one check failed; the check's name is printed beside it.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("i/o on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("protocol: {0}")]
    Protocol(#[from] scs_protocol::ProtocolError),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("crypto: {0}")]
    Crypto(String),
    #[error("config: {0}")]
    Config(String),
    #[error("{what}: expected {expected}, got {got}")]
    Mismatch { what: &'static str, expected: String, got: String },
}

fn mismatch(what: &'static str, expected: impl ToString, got: impl ToString) -> SelfTestError {
    SelfTestError::Mismatch { what, expected: expected.to_string(), got: got.to_string() }
}

type CheckFn = fn(&Path) -> Result<String, SelfTestError>;

const CHECKS: &[(&str, CheckFn)] = &[
    ("sqlite", check_sqlite),
    ("cbor", check_cbor),
    ("crypto-sha256", check_sha256),
    ("crypto-hmac", check_hmac),
    ("crypto-random-ed25519", check_random_and_signature),
    ("tls-config", check_tls_config),
    ("config-parser", check_config),
];

/// Outcome of a whole run, for callers that want the numbers rather than the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

/// Runs every check, printing progress to stdout. Used by `scs-agent self-test`.
pub fn run() -> ExitCode {
    let summary = run_all(&mut std::io::stdout());
    if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs every check, writing one line per check and the summary line to `out`.
pub fn run_all(out: &mut impl std::io::Write) -> Summary {
    // Output errors are ignored: the summary and exit status still tell the truth.
    let _ =
        writeln!(out, "scs-agent {} self-test on {}-{}", env!("CARGO_PKG_VERSION"), std::env::consts::ARCH, std::env::consts::OS);
    let mut summary = Summary { passed: 0, failed: 0 };
    let dir = match ScratchDir::create() {
        Ok(d) => d,
        Err(e) => {
            let _ = writeln!(out, "FAIL scratch-dir: {e}");
            summary.failed = CHECKS.len();
            let _ = writeln!(out, "{} passed, {} failed", summary.passed, summary.failed);
            return summary;
        }
    };
    for (name, check) in CHECKS {
        match check(&dir.path) {
            Ok(detail) => {
                summary.passed += 1;
                let _ = writeln!(out, "ok   {name}: {detail}");
            }
            Err(e) => {
                summary.failed += 1;
                let _ = writeln!(out, "FAIL {name}: {e}");
            }
        }
    }
    let _ = writeln!(out, "{} passed, {} failed", summary.passed, summary.failed);
    summary
}

/// A private directory under `$TMPDIR`, removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create() -> Result<ScratchDir, SelfTestError> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("scs-agent-self-test-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| SelfTestError::Io { path: path.clone(), source })?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// WAL on a real file, a transaction of inserts, a read back after reopening (so the data went through
/// the file, not a cache), and SQLite's own integrity check.
fn check_sqlite(dir: &Path) -> Result<String, SelfTestError> {
    const ROWS: i64 = 200;
    let path = dir.join("self-test.db");
    {
        let mut conn = rusqlite::Connection::open(&path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(mismatch("journal_mode", "wal", mode));
        }
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, big INTEGER NOT NULL, body BLOB NOT NULL)")?;
        let tx = conn.transaction()?;
        for seq in 0..ROWS {
            // Values past 2^32 catch 32-bit truncation on armv7.
            tx.execute(
                "INSERT INTO t (seq, big, body) VALUES (?1, ?2, ?3)",
                rusqlite::params![seq, seq << 40, vec![seq as u8; 64]],
            )?;
        }
        tx.commit()?;
    }
    let conn = rusqlite::Connection::open(&path)?;
    let (count, sum_big, len): (i64, i64, i64) =
        conn.query_row("SELECT count(*), sum(big >> 40), sum(length(body)) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if count != ROWS || sum_big != ROWS * (ROWS - 1) / 2 || len != ROWS * 64 {
        return Err(mismatch("rows read back", format!("{ROWS} rows"), format!("{count} rows, sum {sum_big}, {len} bytes")));
    }
    let body: Vec<u8> = conn.query_row("SELECT body FROM t WHERE seq = 7", [], |r| r.get(0))?;
    if body != vec![7u8; 64] {
        return Err(mismatch("blob of row 7", "64 x 0x07", format!("{body:?}")));
    }
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        return Err(mismatch("integrity_check", "ok", integrity));
    }
    Ok(format!("WAL file, {ROWS} rows written and read back (SQLite {})", rusqlite::version()))
}

/// Encodes a telemetry batch and decodes it through the same validating path the cloud uses.
fn check_cbor(_dir: &Path) -> Result<String, SelfTestError> {
    let gw = "self-test-gw";
    let mut batch = TelemetryBatch::new(gw, u64::MAX - 1, 1 << 40, 1_700_000_000_123);
    batch.devices.push(DeviceReport {
        sensor: gw.to_owned(),
        ts: 1_700_000_000_123,
        metrics: vec![
            Metric::new("cpu.usage_pct", 12.5),
            Metric::labelled("net.rx_bytes", "eth0", 5_000_000_000u64),
            Metric::new("vendor.custom_metric", -3.25),
        ],
    });
    let bytes = encode(&batch);
    let (_, decoded) = decode_uplink(&topic(gw, TopicKind::Telemetry), &bytes)?;
    match decoded {
        Uplink::Telemetry(back) if back == batch => Ok(format!("TelemetryBatch round trip, {} bytes", bytes.len())),
        other => Err(mismatch("decoded batch", format!("{batch:?}"), format!("{other:?}"))),
    }
}

/// FIPS 180-2 "abc" known answer.
fn check_sha256(_dir: &Path) -> Result<String, SelfTestError> {
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    let got = hex(ring::digest::digest(&ring::digest::SHA256, b"abc").as_ref());
    if got != ABC {
        return Err(mismatch("SHA-256(\"abc\")", ABC, got));
    }
    Ok("SHA-256 known answer (ring)".into())
}

/// RFC 4231 test case 2 known answer, plus verification of the same tag.
fn check_hmac(_dir: &Path) -> Result<String, SelfTestError> {
    const TAG: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
    let msg = b"what do ya want for nothing?";
    let tag = ring::hmac::sign(&key, msg);
    let got = hex(tag.as_ref());
    if got != TAG {
        return Err(mismatch("HMAC-SHA256 (RFC 4231 #2)", TAG, got));
    }
    ring::hmac::verify(&key, msg, tag.as_ref()).map_err(|_| SelfTestError::Crypto("HMAC verify rejected its own tag".into()))?;
    Ok("HMAC-SHA256 known answer (RFC 4231)".into())
}

/// The OS random source (getrandom on old kernels, under qemu) and a signature round trip.
fn check_random_and_signature(_dir: &Path) -> Result<String, SelfTestError> {
    use ring::rand::SecureRandom;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let mut buf = [0u8; 32];
    rng.fill(&mut buf).map_err(|_| SelfTestError::Crypto("system random source failed".into()))?;
    if buf == [0u8; 32] {
        return Err(SelfTestError::Crypto("system random source returned only zeros".into()));
    }
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SelfTestError::Crypto("Ed25519 key generation failed".into()))?;
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| SelfTestError::Crypto("Ed25519 key parse failed".into()))?;
    let sig = pair.sign(b"scs self-test");
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pair.public_key().as_ref());
    public
        .verify(b"scs self-test", sig.as_ref())
        .map_err(|_| SelfTestError::Crypto("Ed25519 signature did not verify".into()))?;
    if public.verify(b"scs self-tesT", sig.as_ref()).is_ok() {
        return Err(SelfTestError::Crypto("Ed25519 accepted a signature over different data".into()));
    }
    Ok("random source, Ed25519 sign/verify (ring)".into())
}

/// The TLS client setup the MQTT transport uses: rustls on the ring provider only.
fn check_tls_config(_dir: &Path) -> Result<String, SelfTestError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let suites = provider.cipher_suites.len();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("broker.example.invalid")
        .map_err(|e| SelfTestError::Crypto(format!("server name: {e}")))?;
    // Building a connection runs the key schedule setup and produces a ClientHello.
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).map_err(|source| SelfTestError::Io { path: PathBuf::from("<tls buffer>"), source })?;
    // A TLS record header: handshake (22), version 3.x.
    if !matches!(hello.as_slice(), [22, 3, _, _, _, ..]) {
        let head: Vec<u8> = hello.iter().take(5).copied().collect();
        return Err(mismatch("ClientHello record", "handshake record", format!("{head:02x?}")));
    }
    Ok(format!("rustls ClientConfig on ring ({suites} cipher suites), ClientHello {} bytes", hello.len()))
}

/// The agent's own config parser and validator on a representative file, and a bad one refused.
fn check_config(_dir: &Path) -> Result<String, SelfTestError> {
    const GOOD: &str = r#"
gateway_id = "gw-self-test"
data_dir = "/var/lib/scs-agent"
interval_secs = 30

[mqtt]
broker = "mqtts://broker.example.invalid:8883"
ca_file = "/etc/scs/ca.pem"

[[devices]]
id = "cam-1"
type = "CAMERA"
"#;
    let cfg = crate::config::parse(GOOD).map_err(SelfTestError::Config)?;
    crate::config::validate(&cfg).map_err(|e| SelfTestError::Config(e.to_string()))?;
    if cfg.gateway_id != "gw-self-test" || cfg.interval_secs != 30 || cfg.devices.len() != 1 {
        return Err(mismatch("parsed config", "gw-self-test, 30 s, 1 device", format!("{cfg:?}")));
    }
    let bad = GOOD.replace("interval_secs = 30", "interval_secs = 0");
    let refused = match crate::config::parse(&bad) {
        Err(_) => true,
        Ok(c) => crate::config::validate(&c).is_err(),
    };
    if !refused {
        return Err(mismatch("config with interval_secs = 0", "refused", "accepted"));
    }
    Ok("TOML parsed and validated; invalid interval refused".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_passes_on_the_host() {
        let mut out = Vec::new();
        let summary = run_all(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(summary, Summary { passed: CHECKS.len(), failed: 0 }, "{text}");
        assert!(text.ends_with(&format!("{} passed, 0 failed\n", CHECKS.len())), "{text}");
    }

    #[test]
    fn a_failing_check_is_reported_with_its_reason() {
        let err = mismatch("thing", "a", "b");
        assert_eq!(err.to_string(), "thing: expected a, got b");
    }
}
