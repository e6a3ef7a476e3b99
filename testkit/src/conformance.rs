//! One HTTP conformance suite for both clouds: the same checks run against a shim
//! (`cloud-shim/tests/conformance.rs`) and against the Worker (`worker/tests/conformance.rs`). Each check
//! takes the server's [`Api`] (admin token) and a gateway id that exists there with no agent connected,
//! so commands stay `queued`.

use serde_json::{json, Value};

use crate::Api;

fn commands_path(gw: &str) -> String {
    format!("/v1/gateways/{gw}/commands")
}

/// Create, read back, list, cancel while queued, cancel again (409), unknown id (404).
pub fn commands_lifecycle(api: &Api, gw: &str) {
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "expiresInSecs": 600}));
    assert_eq!(r.status, 201, "create: {}", r.text());
    let c = r.json();
    let id = c["id"].as_str().expect("id").to_owned();
    assert_eq!(r.header("location"), Some(format!("/v1/commands/{id}").as_str()));
    for (k, want) in
        [("state", json!("queued")), ("type", json!("device.info")), ("gatewayId", json!(gw)), ("terminal", json!(false))]
    {
        assert_eq!(c[k], want, "{k} in {c}");
    }
    assert_eq!(c["artifacts"], json!([]));
    assert_eq!(c["requestedBy"], "token:env");
    assert_eq!(c["expiresAt"].as_i64().unwrap() - c["createdAt"].as_i64().unwrap(), 600_000);
    let got = api.get_json(&format!("/v1/commands/{id}"));
    assert_eq!(got["id"], id.as_str());
    let audit = got["audit"].as_array().expect("audit");
    assert_eq!(audit.len(), 1, "{got}");
    assert_eq!(
        (audit[0]["actor"].as_str(), audit[0]["from"].is_null(), audit[0]["to"].as_str()),
        (Some("token:env"), true, Some("queued"))
    );
    let list = api.get_json(&commands_path(gw));
    assert_eq!(list["gatewayId"], gw);
    assert!(list["commands"].as_array().unwrap().iter().any(|x| x["id"] == id.as_str()), "{list}");
    let r = api.post_json(&format!("/v1/commands/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "cancel: {}", r.text());
    assert_eq!(r.json()["state"], "cancelled");
    let r = api.post_json(&format!("/v1/commands/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 409, "second cancel: {}", r.text());
    assert!(r.is_json_error());
    let got = api.get_json(&format!("/v1/commands/{id}"));
    let tos: Vec<&str> = got["audit"].as_array().unwrap().iter().filter_map(|a| a["to"].as_str()).collect();
    assert_eq!(tos, ["queued", "cancelled"]);
    assert_eq!(api.get("/v1/commands/cmd-does-not-exist").status, 404);
    assert_eq!(api.post_json("/v1/commands/cmd-does-not-exist/cancel", &json!({})).status, 404);
}

fn refused(api: &Api, gw: &str, body: Value, field: &str, rule: &str) {
    let r = api.post_json(&commands_path(gw), &body);
    assert_eq!(r.status, 400, "{body} -> {} {}", r.status, r.text());
    let e = r.json();
    assert!(e["error"].is_string(), "{e}");
    assert_eq!((e["field"].as_str(), e["rule"].as_str()), (Some(field), Some(rule)), "{body} -> {e}");
}

/// Validation refusals name the field and the rule; no token is 401, a read token 403.
pub fn commands_refusals(api: &Api, gw: &str) {
    refused(api, gw, json!({"type": "no.such.command"}), "type", "unknown");
    refused(api, gw, json!({}), "type", "required");
    refused(api, gw, json!({"type": "device.info", "expiresInSecs": 0}), "expiresInSecs", "min");
    refused(api, gw, json!({"type": "device.info", "expiresInSecs": 5, "expiresAt": 1}), "expiresAt", "exclusive");
    refused(api, gw, json!({"type": "net.tcp_probe", "params": {"host": "10.0.0.5", "port": 70000}}), "params.port", "max");
    refused(api, gw, json!({"type": "device.reboot"}), "confirm", "requiresConfirmation");
    let r = api.post(&commands_path(gw), "application/json", b"{not json");
    assert_eq!(r.status, 400, "{}", r.text());
    let anon = api.with_token(None);
    assert_eq!(anon.post_json(&commands_path(gw), &json!({"type": "device.info"})).status, 401);
    assert_eq!(anon.get("/v1/commands/x").status, 401);
}

/// A target that is not a child of the gateway, or whose class the command does not accept, is 400
/// naming `target`. `camera` must be a CAMERA child of `gw` on the server.
pub fn commands_target_refusals(api: &Api, gw: &str, camera: &str) {
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "target": "not-a-child"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "target");
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "target": gw}));
    assert_eq!(r.status, 400, "the gateway is not its own child: {}", r.text());
    assert_eq!(r.json()["field"], "target");
    // device.info acts on the gateway only: a camera child is the wrong class.
    let r = api.post_json(&commands_path(gw), &json!({"type": "device.info", "target": camera}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["field"], "target");
}
