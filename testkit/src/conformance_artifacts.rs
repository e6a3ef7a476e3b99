//! Artifact checks of the conformance suite, run against a shim (`cloud-shim/tests/conformance_artifacts.rs`)
//! and against the Worker (`worker/tests/conformance_artifacts.rs`). Each check takes the server's [`Api`]
//! (admin token) and a gateway that exists there with the given MQTT password and no agent connected.
//! Uploads follow the documented protocol as a client that honours `Upload-Part-Size` does (the Worker
//! announces its R2 part size; the shim takes any chunk).

use serde_json::{json, Value};

use crate::Api;

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A grant for `command` and the gateway credentials that go with it.
struct Grant<'a> {
    api: Api,
    basic: String,
    token: String,
    artifact: String,
    admin: &'a Api,
}

impl<'a> Grant<'a> {
    fn new(admin: &'a Api, gw: &str, password: &str, command: &str) -> Grant<'a> {
        use base64::Engine as _;
        let r = admin.post_json("/v1/artifacts/grants", &json!({ "commandId": command }));
        assert_eq!(r.status, 201, "grant: {}", r.text());
        let g = r.json();
        for k in ["url", "token", "artifact", "expires", "maxBytes"] {
            assert!(!g[k].is_null(), "{k} missing from {g}");
        }
        assert!(g["url"].as_str().unwrap().ends_with("/v1/uploads"), "{g}");
        Grant {
            api: Api::new(admin.base(), None),
            basic: format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{gw}:{password}"))),
            token: g["token"].as_str().unwrap().to_owned(),
            artifact: g["artifact"].as_str().unwrap().to_owned(),
            admin,
        }
    }

    fn send(&self, method: &str, suffix: &str, extra: &[(&str, &str)], body: Option<(&str, &[u8])>) -> crate::Reply {
        let mut h: Vec<(&str, &str)> = vec![("Authorization", &self.basic), ("Upload-Token", &self.token)];
        h.extend_from_slice(extra);
        self.api.request_with(method, &format!("/v1/uploads/{}{suffix}", self.artifact), &h, body)
    }

    fn create(&self, size: usize, sha256: &str) -> crate::Reply {
        let body =
            json!({ "name": "../conf data.bin", "size": size, "sha256": sha256, "contentType": "application/octet-stream" });
        self.send("POST", "", &[], Some(("application/json", body.to_string().as_bytes())))
    }

    fn patch(&self, offset: usize, bytes: &[u8]) -> crate::Reply {
        let o = offset.to_string();
        self.send("PATCH", "", &[("Upload-Offset", &o)], Some(("application/offset+octet-stream", bytes)))
    }

    /// Sends `bytes` from 0 in chunks of the server's part size (or 1000 bytes when it names none).
    fn upload(&self, bytes: &[u8], part_size: Option<usize>) {
        let chunk = part_size.unwrap_or(1000);
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + chunk).min(bytes.len());
            let r = self.patch(offset, &bytes[offset..end]);
            assert_eq!(r.status, 204, "PATCH at {offset}: {}", r.text());
            assert_eq!(r.header("upload-offset"), Some(end.to_string().as_str()));
            offset = end;
        }
    }

    fn command_json(&self, command: &str) -> Value {
        self.admin.get_json(&format!("/v1/commands/{command}"))
    }
}

fn new_command(api: &Api, gw: &str) -> String {
    let r = api.post_json(&format!("/v1/gateways/{gw}/commands"), &json!({ "type": "device.info", "expiresInSecs": 600 }));
    assert_eq!(r.status, 201, "create command: {}", r.text());
    r.json()["id"].as_str().expect("id").to_owned()
}

/// Create, resync on a wrong offset, upload, finalize (idempotent), read back in the command and the
/// listing, download whole and by Range (206, 416), refused download tokens.
pub fn artifacts_roundtrip(api: &Api, gw: &str, password: &str) {
    let command = new_command(api, gw);
    let g = Grant::new(api, gw, password, &command);
    let bytes = data(3000);
    let sha = sha256_hex(&bytes);
    let r = g.create(bytes.len(), &sha);
    assert_eq!(r.status, 201, "create: {}", r.text());
    assert_eq!((r.header("upload-offset"), r.header("upload-length")), (Some("0"), Some("3000")));
    let part_size = r.header("upload-part-size").map(|p| p.parse::<usize>().expect("Upload-Part-Size is a number"));
    let again = g.create(bytes.len(), &sha);
    assert_eq!((again.status, again.header("upload-offset")), (200, Some("0")), "create is idempotent: {}", again.text());
    assert_eq!(g.create(bytes.len() + 1, &sha).status, 409, "another size for the same artifact");

    let r = g.patch(500, &bytes[500..600]);
    assert_eq!((r.status, r.header("upload-offset")), (409, Some("0")), "wrong offset: {}", r.text());
    g.upload(&bytes, part_size);
    let h = g.send("HEAD", "", &[], None);
    assert_eq!((h.status, h.header("upload-offset")), (200, Some("3000")));
    let r = g.send("POST", "/finalize", &[], None);
    assert_eq!(r.status, 200, "finalize: {}", r.text());
    let a = r.json();
    assert_eq!(
        (a["id"].as_str(), a["size"].as_u64(), a["sha256"].as_str()),
        (Some(g.artifact.as_str()), Some(3000), Some(sha.as_str()))
    );
    assert_eq!(a["name"], "conf_data.bin", "the name is sanitized");
    assert_eq!(g.send("POST", "/finalize", &[], None).status, 200, "finalize is idempotent");
    let h = g.send("HEAD", "", &[], None);
    assert_eq!((h.header("upload-offset"), h.header("upload-complete")), (Some("3000"), Some("1")));

    let c = g.command_json(&command);
    let listed = &c["artifacts"][0];
    assert_eq!((listed["id"].as_str(), listed["sha256"].as_str()), (Some(g.artifact.as_str()), Some(sha.as_str())), "{c}");
    let url = api.url(listed["url"].as_str().unwrap_or_else(|| panic!("no url in {c}")));
    let list = api.get_json(&format!("/v1/artifacts?commandId={command}"));
    assert_eq!(list["artifacts"].as_array().map(Vec::len), Some(1), "{list}");

    let anon = Api::new(api.base(), None);
    let r = anon.request("GET", &url, None);
    assert_eq!(r.status, 200);
    assert!(r.body == bytes, "downloaded bytes differ");
    assert_eq!(r.header("etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(r.header("content-disposition"), Some("attachment; filename=\"conf_data.bin\""));
    let r = anon.request_with("GET", &url, &[("Range", "bytes=100-199")], None);
    assert_eq!((r.status, r.body.as_slice()), (206, &bytes[100..200]));
    assert_eq!(r.header("content-range"), Some("bytes 100-199/3000"));
    let r = anon.request_with("GET", &url, &[("Range", "bytes=3000-")], None);
    assert_eq!((r.status, r.header("content-range")), (416, Some("bytes */3000")));
    let (base, token) = url.split_once("?token=").expect("token in the URL");
    let forged = format!("{base}?token={}", token.replace("~d~", "~u~"));
    assert_eq!(anon.request("GET", &forged, None).status, 403);
    assert_eq!(anon.request("GET", base, None).status, 403);
}

/// Missing or wrong gateway credentials 401, a forged or other artifact's grant 403, grants for unknown
/// commands 404, a bad TTL 400, a wrong SHA-256 422 with the upload discarded.
pub fn artifacts_refusals(api: &Api, gw: &str, password: &str) {
    use base64::Engine as _;
    let command = new_command(api, gw);
    let g = Grant::new(api, gw, password, &command);
    let sha = sha256_hex(b"x");
    let anon = g.api.request_with("HEAD", &format!("/v1/uploads/{}", g.artifact), &[("Upload-Token", &g.token)], None);
    assert_eq!(anon.status, 401);
    let wrong_password = base64::engine::general_purpose::STANDARD.encode(format!("{gw}:not-{password}"));
    let wrong = Grant { basic: format!("Basic {wrong_password}"), ..Grant::new(api, gw, password, &command) };
    assert_eq!(wrong.create(1, &sha).status, 401);
    let forged = Grant { token: g.token.replace("~u~", "~d~"), ..Grant::new(api, gw, password, &command) };
    assert_eq!(forged.create(1, &sha).status, 403);
    let other = Grant { artifact: "a-00000000000000000000".into(), ..Grant::new(api, gw, password, &command) };
    assert_eq!(other.create(1, &sha).status, 403);
    assert_eq!(api.post_json("/v1/artifacts/grants", &json!({ "commandId": "cmd-does-not-exist" })).status, 404);
    assert_eq!(api.post_json("/v1/artifacts/grants", &json!({ "commandId": command, "ttlSecs": 0 })).status, 400);

    let bytes = data(1000);
    let r = g.create(bytes.len(), &sha256_hex(b"other bytes"));
    assert_eq!(r.status, 201, "{}", r.text());
    g.upload(&bytes, None);
    let r = g.send("POST", "/finalize", &[], None);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.json()["actual"], sha256_hex(&bytes));
    assert_eq!(g.send("HEAD", "", &[], None).status, 404, "a rejected upload is discarded");
    assert!(g.command_json(&command)["artifacts"].as_array().is_some_and(Vec::is_empty));
}
