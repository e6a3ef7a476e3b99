//! The shared HTTP conformance suite (`scs_testkit::conformance`) against a real shim; the Worker runs
//! the same checks in `worker/tests/conformance.rs`.

use std::time::Duration;

use scs_testkit::{conformance, Shim, ShimOpts};

fn shim() -> Shim {
    let mut s = Shim::start(ShimOpts::default());
    s.wait_ready(Duration::from_secs(30));
    s
}

#[test]
fn commands_lifecycle() {
    let s = shim();
    conformance::commands_lifecycle(&s.api(), "gw-conf");
}

#[test]
fn commands_refusals() {
    let s = shim();
    conformance::commands_refusals(&s.api(), "gw-conf");
}

#[test]
fn commands_target_refusals() {
    let s = shim();
    let conn = rusqlite::Connection::open(s.db_path()).unwrap();
    conn.execute(
        "INSERT INTO sensors (id, type, gateway_id, created_at, updated_at) VALUES ('cam-conf', 'CAMERA', 'gw-conf', 0, 0)",
        [],
    )
    .unwrap();
    conformance::commands_target_refusals(&s.api(), "gw-conf", "cam-conf");
}

#[test]
fn read_api_seeded_through_ingest() {
    let s = shim();
    let api = s.api();
    let gw = s.add_gateway("gw-read");
    conformance::seed_read(&api, &gw);
    conformance::fleet(&api, "gw-read");
    conformance::gateway_devices(&api, "gw-read");
    conformance::sensors_of_parent(&api, "gw-read");
    conformance::device_events(&api, "gw-read");
    let cache = conformance::sensor_list_follows_ingest(&api, &gw);
    assert_eq!(cache, [None, None, None], "the shim has no sensor cache");
}
