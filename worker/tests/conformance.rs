//! The shared HTTP conformance suite (`scs_testkit::conformance`) against the Worker in workerd; the
//! shim runs the same checks in `cloud-shim/tests/conformance.rs`. One Worker serves every check (its
//! start costs seconds), each on its own gateway id.

mod common;

use scs_testkit::{conformance, free_port, TempDir};

#[test]
fn worker_passes_the_conformance_suite() {
    if common::require_tools().is_none() {
        return;
    }
    let dir = TempDir::new("conformance");
    let seed = dir.join("seed.sql");
    std::fs::write(
        &seed,
        "INSERT INTO sensors (id, type, gateway_id, created_at, updated_at) VALUES ('cam-conf', 'CAMERA', 'gw-conf-3', 0, 0);\n",
    )
    .unwrap();
    let w = common::WorkerDev::start(free_port(), &dir.join("state"), &seed, &dir.join("worker-dev.log"), true);
    let api = w.api();
    conformance::commands_lifecycle(&api, "gw-conf-1");
    conformance::commands_refusals(&api, "gw-conf-2");
    conformance::commands_target_refusals(&api, "gw-conf-3", "cam-conf");
}
