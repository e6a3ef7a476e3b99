//! The artifact checks of the conformance suite (`scs_testkit::conformance_artifacts`) against the Worker
//! in workerd, bytes in its local R2 bucket; the shim runs the same checks in
//! `cloud-shim/tests/conformance_artifacts.rs`. One Worker serves both checks, each on its own gateway.

mod common;

use scs_testkit::{conformance_artifacts, free_port, TempDir};
use scs_worker::auth::sha256_hex;

#[test]
fn worker_passes_the_artifact_conformance_checks() {
    if common::require_tools().is_none() {
        return;
    }
    // SAFETY: set before the only Worker of this process starts; scripts/worker-dev passes it on.
    unsafe { std::env::set_var("SCS_SIGNING_KEY", "artifact-key-of-the-conformance-run") };
    let dir = TempDir::new("conformance-artifacts");
    let seed = dir.join("seed.sql");
    let rows: String = ["gw-conf-a1", "gw-conf-a2"]
        .iter()
        .map(|gw| {
            format!(
                "INSERT INTO gateways (id, public_key, mqtt_password_sha256, status, created_ms) VALUES ('{gw}', X'00', '{}', 'active', 0);\n",
                sha256_hex(format!("pw-{gw}").as_bytes())
            )
        })
        .collect();
    std::fs::write(&seed, rows).unwrap();
    let w = common::WorkerDev::start(free_port(), &dir.join("state"), &seed, &dir.join("worker-dev.log"), true);
    let api = w.api();
    conformance_artifacts::artifacts_roundtrip(&api, "gw-conf-a1", "pw-gw-conf-a1");
    conformance_artifacts::artifacts_refusals(&api, "gw-conf-a2", "pw-gw-conf-a2");
}
