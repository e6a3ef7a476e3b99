//! Command sessions end to end with real processes: the Worker in workerd (`scripts/worker-dev`), its
//! Durable Objects and local D1; `scs-cloud-shim serve --worker-url` bridging Mosquitto to it; a real
//! provisioned agent. A command created at the Worker reaches the agent, its updates come back through
//! ingest, and the audit trail names every transition; with two shims bridging one Worker each command
//! is published once.

mod common;
mod support;

use std::time::Duration;

use scs_testkit::Subscription;
use serde_json::json;
use support::Site;

#[test]
fn a_command_created_at_the_worker_runs_on_the_agent_and_its_audit_comes_back() {
    if common::require_tools().is_none() {
        return;
    }
    let mut site = Site::start("gw-w1", 1);
    site.start_agent();
    let id = site.create(json!({"type": "device.info"}));
    let done = site.wait_state(&id, "succeeded");
    assert!(done["result"].is_object(), "{done}");
    let trail: Vec<(String, String)> = done["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["actor"].as_str().unwrap().to_owned(), a["to"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(trail.first().unwrap(), &("token:env".to_owned(), "queued".to_owned()));
    assert_eq!(trail.get(1).unwrap(), &("worker".to_owned(), "delivered".to_owned()));
    assert_eq!(trail.last().unwrap(), &(format!("agent:{}", site.gw), "succeeded".to_owned()));
    assert_eq!(done["deliveries"], 1);
    // The history lists it; a second command after the first also runs.
    let h = site.worker.api().get_json(&format!("/v1/gateways/{}/commands", site.gw));
    assert_eq!(h["commands"][0]["id"], id.as_str());
}

#[test]
fn commands_wait_for_an_offline_gateway_and_cancel_before_delivery_never_sends() {
    if common::require_tools().is_none() {
        return;
    }
    let mut site = Site::start("gw-w2", 1);
    let held = site.create(json!({"type": "device.info"}));
    let cancelled = site.create(json!({"type": "device.info"}));
    let r = site.worker.api().post_json(&format!("/v1/commands/{cancelled}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "cancelled");
    let again = site.worker.api().post_json(&format!("/v1/commands/{cancelled}/cancel"), &json!({}));
    assert_eq!(again.status, 409);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(site.worker.api().get_json(&format!("/v1/commands/{held}"))["state"], "queued", "held while offline");
    site.start_agent();
    site.wait_state(&held, "succeeded");
    assert_eq!(site.worker.api().get_json(&format!("/v1/commands/{cancelled}"))["deliveries"], 0);
}

#[test]
fn two_shims_on_one_worker_publish_each_command_once() {
    if common::require_tools().is_none() {
        return;
    }
    let mut site = Site::start("gw-w3", 2);
    site.start_agent();
    let topic = format!("scs/v1/{}/down/command", site.gw);
    let watch = Subscription::start(site.broker.port(), &[topic.as_str()]);
    let ids: Vec<String> = (0..5).map(|_| site.create(json!({"type": "device.info"}))).collect();
    for id in &ids {
        let v = site.wait_state(id, "succeeded");
        assert_eq!(v["deliveries"], 1, "{v}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let seen = watch.messages().len();
    assert_eq!(seen, ids.len(), "each command published once on the broker:\n{}", site.logs());
}
