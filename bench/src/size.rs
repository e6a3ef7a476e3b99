//! Encoded batch size: CBOR (the wire format) vs the same batch as plain JSON. Target ratio <= 0.4.

use crate::opts::Opts;
use crate::site;

pub fn run(opts: &Opts) -> Result<(), String> {
    let devices = opts.num("devices", 64)? as usize;
    let mut line = String::from("BENCH size");
    for (label, n) in [("site", devices), ("gateway_only", 1)] {
        let b = site::batch("gw-site-a-01", 0x8f3a_5c21_0d4e_b7a9, 123_456, 1_795_000_000_000, n);
        let cbor = scs_protocol::encode(&b);
        let json = site::as_json(&b);
        let ratio = cbor.len() as f64 / json.len() as f64;
        println!(
            "batch of {n} devices, {} samples: CBOR {} bytes, JSON {} bytes, ratio {ratio:.3} (target <= 0.4)",
            b.sample_count(),
            cbor.len(),
            json.len()
        );
        line.push_str(&format!(
            " {label}_devices={n} {label}_samples={} {label}_cbor_bytes={} {label}_json_bytes={} {label}_ratio={ratio:.3}",
            b.sample_count(),
            cbor.len(),
            json.len()
        ));
    }
    println!("{line}");
    Ok(())
}
