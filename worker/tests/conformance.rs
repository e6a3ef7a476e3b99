//! The shared HTTP conformance suite (`scs_testkit::conformance`) against the Worker in workerd; the
//! shim runs the same checks in `cloud-shim/tests/conformance.rs`. One Worker serves every check (its
//! start costs seconds), each on its own gateway id.

mod common;

use scs_testkit::{conformance, free_port, gateways_add, TempDir};

#[test]
fn worker_passes_the_conformance_suite() {
    if common::require_tools().is_none() {
        return;
    }
    let dir = TempDir::new("conformance");
    // A gateway provisioned as a deployment does (the shim's CLI, its row copied into D1), so the read
    // checks seed it through the Worker's real ingest, signed with its key.
    let provisioning = TempDir::new("conformance-gw");
    let gw = gateways_add(
        provisioning.path(),
        "gw-read",
        &provisioning.join("gw.toml"),
        Some(("mqtt://127.0.0.1:9", "http://127.0.0.1:9")),
    );
    let seed = dir.join("seed.sql");
    common::gateway_seed(&provisioning.join("scs.db"), &seed);
    let mut sql = std::fs::read_to_string(&seed).unwrap();
    sql.push_str(
        "INSERT INTO sensors (id, type, gateway_id, created_at, updated_at) VALUES ('cam-conf', 'CAMERA', 'gw-conf-3', 0, 0);\n",
    );
    std::fs::write(&seed, sql).unwrap();
    let w = common::WorkerDev::start(free_port(), &dir.join("state"), &seed, &dir.join("worker-dev.log"), true);
    let api = w.api();
    conformance::commands_lifecycle(&api, "gw-conf-1");
    conformance::commands_refusals(&api, "gw-conf-2");
    conformance::commands_target_refusals(&api, "gw-conf-3", "cam-conf");
    conformance::seed_read(&api, &gw);
    conformance::fleet(&api, "gw-read");
    conformance::gateway_devices(&api, "gw-read");
    conformance::sensors_of_parent(&api, "gw-read");
    conformance::device_events(&api, "gw-read");
    // KV: the first read fills the cache, a repeat is served from it, and after an inventory through
    // ingest the next read is a fresh one showing the change.
    let cache = conformance::sensor_list_follows_ingest(&api, &gw);
    assert_eq!(cache, [Some("miss".to_owned()), Some("hit".to_owned()), Some("miss".to_owned())]);
}
