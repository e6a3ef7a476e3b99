//! The artifact checks of the conformance suite (`scs_testkit::conformance_artifacts`) against a real
//! shim; the Worker runs the same checks in `worker/tests/conformance_artifacts.rs`.

use std::time::Duration;

use scs_testkit::{conformance_artifacts, Shim, ShimOpts};

fn shim() -> Shim {
    let mut s = Shim::start(ShimOpts::default());
    s.wait_ready(Duration::from_secs(30));
    s
}

#[test]
fn artifacts_roundtrip() {
    let s = shim();
    let creds = s.add_gateway("gw-conf-art");
    conformance_artifacts::artifacts_roundtrip(&s.api(), &creds.id, &creds.password);
}

#[test]
fn artifacts_refusals() {
    let s = shim();
    let creds = s.add_gateway("gw-conf-art");
    conformance_artifacts::artifacts_refusals(&s.api(), &creds.id, &creds.password);
}
