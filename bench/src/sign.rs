//! Cost of message authenticity on the agent: per telemetry batch (64 devices, the realistic site
//! batch), COSE_Sign1 signing and verification (Ed25519, ring) next to what the agent already pays for
//! each message: encoding it and committing it to the outbox (one SQLite transaction, WAL, synchronous
//! FULL and NORMAL, like agent/src/queue.rs). Also verification next to decoding, the receiving side's
//! own per-message work before its store.

use std::path::PathBuf;
use std::time::Instant;

use rusqlite::{params, Connection};
use scs_protocol::cose::{self, SigningKey, KID_CLOUD};
use scs_protocol::topics::topic;
use scs_protocol::{decode_uplink, encode, TopicKind};

use crate::{site, Opts};

fn per_op(n: u64, f: &mut impl FnMut(u64)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

pub fn run(opts: &Opts) -> Result<(), String> {
    let n = opts.num("n", 2000)?.max(1);
    let devices = opts.num("devices", 64)? as usize;
    let dir = PathBuf::from(opts.str("dir", &std::env::temp_dir().display().to_string()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let gw = "gw-bench-sign";
    let t = topic(gw, TopicKind::Telemetry);
    let (key, _) = SigningKey::generate().map_err(|e| e.to_string())?;
    let vk = key.verifying_key();
    let batch = site::batch(gw, 1, 1, 1_795_000_000_000, devices);
    let payload = encode(&batch);
    let signed = cose::sign1(&key, gw.as_bytes(), t.as_bytes(), &payload);

    let encode_us = per_op(n, &mut |i| {
        let mut b = batch.clone();
        b.seq = i;
        std::hint::black_box(encode(&b));
    });
    let sign_us = per_op(n, &mut |_| {
        std::hint::black_box(cose::sign1(&key, gw.as_bytes(), t.as_bytes(), &payload));
    });
    let mut ok = true;
    let verify_us = per_op(n, &mut |_| {
        ok &= cose::verify1(&signed, t.as_bytes(), |kid| (kid == gw.as_bytes()).then_some(vk)).is_ok();
    });
    if !ok {
        return Err("a signature did not verify".into());
    }
    let decode_us = per_op(n, &mut |_| {
        std::hint::black_box(decode_uplink(&t, &payload).is_ok());
    });
    let _ = KID_CLOUD;

    let mut enqueue_us = Vec::new();
    for sync in ["FULL", "NORMAL"] {
        let db = dir.join(format!("sign-bench-{}.db", std::process::id()));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        let c = Connection::open(&db).map_err(|e| e.to_string())?;
        c.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; CREATE TABLE outbox (seq INTEGER PRIMARY KEY, \
             kind INTEGER NOT NULL, created_ms INTEGER NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL);"
        ))
        .map_err(|e| e.to_string())?;
        let mut err = None;
        let us = per_op(n, &mut |i| {
            let r = c.execute_batch("BEGIN IMMEDIATE").and_then(|_| {
                c.prepare_cached("INSERT INTO outbox (seq, kind, created_ms, size, payload) VALUES (?1, 1, 0, ?2, ?3)")?
                    .execute(params![i as i64, signed.len() as i64, signed])?;
                c.execute_batch("COMMIT")
            });
            if let Err(e) = r {
                err = Some(e.to_string());
            }
        });
        drop(c);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        if let Some(e) = err {
            return Err(e);
        }
        enqueue_us.push((sync, us));
    }
    println!(
        "{devices}-device batch: {} B payload, {} B signed (+{} B); per message: encode {encode_us:.1} us, \
         sign {sign_us:.1} us, verify {verify_us:.1} us, decode {decode_us:.1} us",
        payload.len(),
        signed.len(),
        signed.len() - payload.len()
    );
    let mut line = format!(
        "BENCH sign devices={devices} n={n} payload_bytes={} signed_bytes={} encode_us={encode_us:.2} sign_us={sign_us:.2} \
         verify_us={verify_us:.2} decode_us={decode_us:.2} verify_vs_decode={:.3}",
        payload.len(),
        signed.len(),
        verify_us / decode_us
    );
    for (sync, us) in &enqueue_us {
        let base = encode_us + us;
        println!("  sync={sync}: encode+enqueue {base:.1} us; sign adds {:.1}% ({:.3}x)", sign_us / base * 100.0, sign_us / base);
        line.push_str(&format!(
            " enqueue_{}_us={us:.2} sign_vs_encode_enqueue_{}={:.3}",
            sync.to_lowercase(),
            sync.to_lowercase(),
            sign_us / base
        ));
    }
    println!("  verify / decode = {:.3}x", verify_us / decode_us);
    println!("{line}");
    Ok(())
}
