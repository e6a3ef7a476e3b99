//! Commands end to end: the real `scs-cloud-shim` and `scs-agent` binaries, the embedded broker and
//! Mosquitto, driven through the HTTP API (and, for injected commands, straight through MQTT).

use std::path::Path;
use std::time::Duration;

use scs_protocol::topics::topic;
use scs_protocol::{decode_uplink, encode, CommandRequest, CommandState, TopicKind, Uplink, Value, PROTOCOL_VERSION};
use scs_testkit::{wait_for, wait_until, Agent, Api, Mosquitto, Shim, ShimOpts};
use serde_json::{json, Value as Json};

/// The shim's own clock, so commands are stamped as the shim stamps them.
#[path = "../src/clock.rs"]
mod clock;
use clock::{now_ms, now_ms_u64};

const WAIT: Duration = Duration::from_secs(20);

/// A shim and (optionally running) agent for one gateway.
struct Site {
    // Field order: the agent stops before the shim, the shim before Mosquitto.
    agent: Option<Agent>,
    shim: Shim,
    _mosquitto: Option<Mosquitto>,
    gateway: String,
    agent_broker: String,
    agent_config: String,
}

impl Site {
    fn embedded(gateway: &str, agent_config: &str) -> Site {
        let mut shim = Shim::start(ShimOpts::default());
        shim.wait_ready(WAIT);
        let agent_broker = shim.mqtt_url();
        Site { agent: None, shim, _mosquitto: None, gateway: gateway.into(), agent_broker, agent_config: agent_config.into() }
    }

    fn mosquitto(gateway: &str, agent_config: &str) -> Site {
        let m = Mosquitto::start();
        let mut shim = Shim::start(ShimOpts::with_broker(&m.url()));
        shim.wait_ready(WAIT);
        Site {
            agent: None,
            shim,
            agent_broker: m.url(),
            _mosquitto: Some(m),
            gateway: gateway.into(),
            agent_config: agent_config.into(),
        }
    }

    fn start_agent(&mut self) {
        let mut o = self.shim.agent_opts(&self.gateway);
        o.broker = self.agent_broker.clone();
        o.config_toml = Some(self.agent_config.clone());
        self.agent = Some(Agent::start(o));
    }

    fn agent(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("agent started")
    }

    fn api(&self) -> Api {
        self.shim.api()
    }

    fn post(&self, body: Json) -> scs_testkit::Reply {
        self.api().post_json(&format!("/v1/gateways/{}/commands", self.gateway), &body)
    }

    /// Posts a command that must be accepted; returns its id.
    fn submit(&self, body: Json) -> String {
        let r = self.post(body.clone());
        assert!(r.is_success(), "POST {body} -> {} {}", r.status, r.text());
        let v = r.json();
        assert_eq!(v["state"], "queued", "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    fn get(&self, id: &str) -> Json {
        let r = self.api().get(&format!("/v1/commands/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    fn wait_state(&self, id: &str, pred: impl Fn(&str) -> bool, what: &str) -> Json {
        let mut last = Json::Null;
        let found = wait_until(WAIT, || {
            last = self.get(id);
            pred(last["state"].as_str().unwrap_or(""))
        });
        assert!(found, "command {id} never became {what}; last: {last}\nshim:\n{}", self.shim.logs());
        last
    }

    fn wait_terminal(&self, id: &str) -> Json {
        self.wait_state(id, |s| CommandState::parse(s).is_some_and(CommandState::is_terminal), "terminal")
    }

    fn run(&self, body: Json) -> Json {
        let id = self.submit(body);
        let v = self.wait_terminal(&id);
        assert_eq!(v["state"], "succeeded", "{v}");
        v
    }
}

fn toml_list(parts: &[&str]) -> String {
    let quoted: Vec<String> = parts.iter().map(|p| format!("'{p}'")).collect();
    format!("[commands]\nreboot_command = [{}]\n", quoted.join(", "))
}

/// True while `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> u32 {
    wait_for(WAIT, "the child's pid file", || std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()))
}

fn audit_trail(v: &Json) -> Vec<String> {
    v["audit"].as_array().expect("audit").iter().map(|a| a["to"].as_str().unwrap_or("").to_owned()).collect()
}

/// The happy path of every built-in (the log bundle has its own test with the artifacts).
fn every_builtin(mut site: Site) {
    site.start_agent();
    let info = site.run(json!({"type": "device.info"}));
    assert_eq!(info["result"]["gatewayId"], site.gateway.as_str());
    assert!(info["result"]["agentVersion"].is_string() && info["result"]["uptimeSecs"].is_number(), "{info}");
    assert_eq!(audit_trail(&info), ["queued", "delivered", "accepted", "running", "succeeded"]);

    let time = site.run(json!({"type": "device.time", "params": {}}));
    let gw_ms = time["result"]["utcMs"].as_i64().unwrap();
    assert!((now_ms() - gw_ms).abs() < 60_000, "{time}");

    let iv = site.run(json!({"type": "telemetry.set_interval", "params": {"intervalSecs": 7}}));
    assert_eq!(iv["result"]["intervalSecs"], 7);

    let probe = site.run(json!({"type": "net.tcp_probe", "params": {"host": "127.0.0.1", "port": site.shim.http_port()}}));
    assert_eq!(probe["result"]["reachable"], true, "{probe}");
    assert!(probe["result"]["latencyMs"].as_f64().unwrap() >= 0.0);

    let cfg = site.run(json!({"type": "agent.config"}));
    let text = cfg["result"]["config"].as_str().unwrap();
    assert!(text.contains(&site.gateway), "{text}");

    let tail = site.run(json!({"type": "agent.log_tail", "params": {"lines": 20}}));
    let lines = tail["result"]["lines"].as_array().unwrap();
    assert!(!lines.is_empty() && lines.len() <= 20, "{tail}");

    let reboot = site.run(json!({"type": "device.reboot", "params": {"delaySecs": 0}, "confirm": true}));
    assert_eq!(reboot["result"]["initiated"], true);

    let hist = site.api().get_json(&format!("/v1/gateways/{}/commands", site.gateway));
    let states: Vec<&str> = hist["commands"].as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["succeeded"; 7], "{hist}");
    assert_eq!(hist["commands"][0]["type"], "device.reboot", "newest first");
}

#[test]
fn every_builtin_with_the_embedded_broker() {
    every_builtin(Site::embedded("gw-cmd-emb", &toml_list(&["true"])));
}

#[test]
fn every_builtin_with_mosquitto() {
    every_builtin(Site::mosquitto("gw-cmd-mosq", &toml_list(&["true"])));
}

#[test]
fn agent_restart_succeeds_after_the_agent_comes_back() {
    let mut site = Site::embedded("gw-cmd-restart", "");
    site.start_agent();
    let id = site.submit(json!({"type": "agent.restart"}));
    let agent = site.agent();
    let status = wait_for(WAIT, "the agent to exit", || agent.process().exit_status());
    assert_eq!(status.code(), Some(75), "restart exit code");
    let v = site.get(&id);
    assert_ne!(v["state"], "succeeded", "success reported before the restart: {v}");
    site.agent().start_again();
    let v = site.wait_terminal(&id);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(v["result"]["restarted"], true);
    assert_ne!(v["result"]["boot"], v["result"]["previousBoot"]);
}

#[test]
fn the_registry_is_served() {
    let site = Site::embedded("gw-cmd-reg", "");
    let r = site.api().with_token(None).get("/v1/registry");
    assert_eq!(r.status, 200);
    let reg = r.json();
    let list = reg.as_array().expect("a list of commands");
    for c in list {
        for k in ["type", "path", "operation", "timeoutSecs", "safety", "params"] {
            assert!(c.get(k).is_some(), "{k} missing: {c}");
        }
    }
    let reboot = list.iter().find(|c| c["type"] == "device.reboot").unwrap();
    assert_eq!(reboot["path"], "/3/0/4");
    assert_eq!(reboot["safety"]["destructive"], true);
    assert!(list.iter().any(|c| c["type"].as_str().unwrap().contains("log_bundle") && c["artifact"] == true));
}

#[test]
fn invalid_requests_are_refused_at_the_shim_naming_field_and_rule() {
    let site = Site::embedded("gw-cmd-400", "");
    let cases = [
        (json!({"type": "device.nope"}), "type", "unknown"),
        (json!({"params": {}}), "type", "required"),
        (json!({"type": "net.tcp_probe", "params": {"host": "example.org"}}), "params.port", "required"),
        (json!({"type": "net.tcp_probe", "params": {"host": "example.org", "port": 70000}}), "params.port", "max"),
        (json!({"type": "net.tcp_probe", "params": {"host": "example.org", "port": "80"}}), "params.port", "type"),
        (json!({"type": "net.tcp_probe", "params": {"host": "a.b; rm -rf /", "port": 80}}), "params.host", "pattern"),
        (json!({"type": "net.tcp_probe", "params": {"host": "x", "port": 80, "bogus": 1}}), "params.bogus", "unknown"),
        (json!({"type": "agent.log_tail", "params": {"minLevel": "loud"}}), "params.minLevel", "enum"),
        (json!({"type": "agent.log_tail", "params": {"contains": ""}}), "params.contains", "minLength"),
        (json!({"type": "diag.log_bundle", "params": {"include": []}}), "params.include", "minItems"),
        (json!({"type": "device.reboot"}), "confirm", "requiresConfirmation"),
        (json!({"type": "device.reboot", "confirm": false}), "confirm", "requiresConfirmation"),
        (json!({"type": "device.info", "timeoutSecs": 11}), "timeoutSecs", "max"),
    ];
    for (body, field, rule) in cases {
        let r = site.post(body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let v = r.json();
        assert_eq!((v["field"].as_str(), v["rule"].as_str()), (Some(field), Some(rule)), "{body}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert!(site.post(json!({"type": "device.reboot"})).json()["error"].as_str().unwrap().contains("confirm"));
    let bad_gw = site.api().post_json("/v1/gateways/bad%2Fgw/commands", &json!({"type": "device.info"}));
    assert_eq!(bad_gw.status, 400);
    let hist = site.api().get_json(&format!("/v1/gateways/{}/commands", site.gateway));
    assert_eq!(hist["commands"], json!([]), "nothing was queued");
    assert_eq!(site.api().with_token(None).post_json("/v1/gateways/x/commands", &json!({"type": "device.info"})).status, 401);
    assert_eq!(site.api().get("/v1/commands/cmd-nope").status, 404);
}

/// A command published straight to MQTT, past the shim, is still checked by the agent.
#[test]
fn commands_injected_into_mqtt_are_validated_by_the_agent() {
    let mut site = Site::mosquitto("gw-cmd-inject", &toml_list(&["true"]));
    let port = site._mosquitto.as_ref().unwrap().port();
    let sub = scs_testkit::Subscription::start(port, &[&topic(&site.gateway, TopicKind::CommandUpdate)]);
    site.start_agent();
    // Online once a command through the shim has gone round.
    site.run(json!({"type": "device.time"}));
    let now = now_ms_u64();
    let cloud_pk8 = std::fs::read(site.shim.data_dir().join("keys/cloud-sign.pk8")).expect("cloud key");
    let cloud = scs_protocol::cose::SigningKey::from_pkcs8(&cloud_pk8).expect("cloud key is PKCS#8");
    let inject = |id: &str, ty: &str, params: Value, confirm: bool| {
        let req = CommandRequest {
            v: PROTOCOL_VERSION,
            id: id.into(),
            command_type: ty.into(),
            params,
            issued: now,
            expires: now + 60_000,
            timeout_secs: 10,
            confirm,
            upload: None,
            requested_by: Some("intruder".into()),
            target: None,
        };
        // Signed with the cloud key as the shim would: what is tested is the agent's own validation.
        let t = topic(&site.gateway, TopicKind::Command);
        scs_testkit::publish(port, &t, &scs_protocol::cose::sign1(&cloud, b"cloud", t.as_bytes(), &encode(&req)));
    };
    inject("inj-port", "net.tcp_probe", Value::map([("host", "127.0.0.1".into()), ("port", Value::Int(70000))]), false);
    inject("inj-shell", "net.tcp_probe", Value::map([("host", "x;reboot".into()), ("port", Value::Int(22))]), false);
    inject("inj-reboot", "device.reboot", Value::map(Vec::<(&str, Value)>::new()), false);
    inject("inj-type", "device.format_disk", Value::map(Vec::<(&str, Value)>::new()), true);
    // Fails the protocol checks (params must be a map) but has a readable id: rejected, not dropped.
    inject("inj-params", "device.time", Value::Array(vec![Value::Int(1)]), false);
    inject("inj-params", "device.time", Value::Text("again".into()), false);
    let t = topic(&site.gateway, TopicKind::CommandUpdate);
    let creds = site.shim.add_gateway(&site.gateway);
    let updates = || -> Vec<scs_protocol::CommandUpdate> {
        sub.messages()
            .into_iter()
            .filter_map(|(_, p)| match decode_uplink(&t, creds.open(&t, &p)?) {
                Ok((_, Uplink::Command(u))) => Some(u),
                _ => None,
            })
            .collect()
    };
    let expect = [
        ("inj-port", "port"),
        ("inj-shell", "pattern"),
        ("inj-reboot", "confirm"),
        ("inj-type", "unknown command type"),
        ("inj-params", "params"),
    ];
    for (id, needle) in expect {
        let u = wait_for(WAIT, id, || updates().into_iter().find(|u| u.id == id));
        assert_eq!(u.state, CommandState::Rejected, "{u:?}");
        assert!(u.error.as_deref().unwrap_or("").contains(needle), "{id}: {u:?}");
    }
    // Never accepted, never run.
    assert!(updates().iter().filter(|u| u.id.starts_with("inj-")).all(|u| u.state == CommandState::Rejected));
    // The redelivered broken command is a duplicate: reported once.
    assert_eq!(updates().iter().filter(|u| u.id == "inj-params").count(), 1, "{:?}", updates());
}

#[test]
fn offline_gateway_holds_commands_in_order_until_it_reconnects() {
    let mut site = Site::embedded("gw-cmd-offline", &toml_list(&["true"]));
    let ids: Vec<String> = [
        json!({"type": "telemetry.set_interval", "params": {"intervalSecs": 3}}),
        json!({"type": "device.time"}),
        json!({"type": "device.info"}),
    ]
    .into_iter()
    .map(|b| site.submit(b))
    .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for id in &ids {
        let v = site.get(id);
        assert_eq!(v["state"], "queued", "held while offline: {v}");
        assert_eq!(v["deliveries"], 0);
    }
    site.start_agent();
    let done: Vec<Json> = ids.iter().map(|id| site.wait_terminal(id)).collect();
    for v in &done {
        assert_eq!(v["state"], "succeeded", "{v}");
        assert_eq!(audit_trail(v), ["queued", "delivered", "accepted", "running", "succeeded"]);
    }
    let delivered: Vec<i64> = done.iter().map(|v| v["deliveredAt"].as_i64().unwrap()).collect();
    assert!(delivered.windows(2).all(|w| w[0] <= w[1]), "delivered out of order: {delivered:?}");
}

#[test]
fn undelivered_commands_expire() {
    let mut site = Site::embedded("gw-cmd-expire", "");
    let id = site.submit(json!({"type": "device.info", "expiresInSecs": 1}));
    let v = site.wait_state(&id, |s| s == "expired", "expired");
    assert_eq!(v["deliveries"], 0);
    assert_eq!(audit_trail(&v), ["queued", "expired"]);
    // Coming online later does not resurrect it.
    site.start_agent();
    site.run(json!({"type": "device.time"}));
    assert_eq!(site.get(&id)["state"], "expired");
}

#[test]
fn duplicate_delivery_is_not_executed_twice() {
    let dir = scs_testkit::TempDir::new("dup");
    let runs = dir.join("runs");
    let cfg = toml_list(&["sh", "-c", "echo run >> \"$0\"", runs.to_str().unwrap()]);
    let mut site = Site::embedded("gw-cmd-dup", &cfg);
    site.start_agent();
    let id = site.submit(json!({"type": "device.reboot", "confirm": true}));
    let v = site.wait_terminal(&id);
    assert_eq!(v["state"], "succeeded", "{v}");
    // Redeliver the very same request straight through the broker, before and after an agent restart.
    let now = now_ms_u64();
    let req = CommandRequest {
        v: PROTOCOL_VERSION,
        id: id.clone(),
        command_type: "device.reboot".into(),
        params: Value::map([("delaySecs", Value::Int(0))]),
        issued: now,
        expires: now + 60_000,
        timeout_secs: 10,
        confirm: true,
        upload: None,
        requested_by: None,
        target: None,
    };
    let port = site.shim.mqtt_port().unwrap();
    scs_testkit::publish(port, &topic(&site.gateway, TopicKind::Command), &encode(&req));
    std::thread::sleep(Duration::from_millis(700));
    site.agent().restart();
    site.run(json!({"type": "device.time"}));
    scs_testkit::publish(port, &topic(&site.gateway, TopicKind::Command), &encode(&req));
    std::thread::sleep(Duration::from_millis(700));
    let n = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(n, 1, "the reboot program ran {n} times");
    assert_eq!(site.get(&id)["state"], "succeeded");
}

#[test]
fn timeout_kills_the_long_running_child() {
    let dir = scs_testkit::TempDir::new("timeout");
    let pidfile = dir.join("pid");
    let cfg = toml_list(&["sh", "-c", "echo $$ > \"$0\"; exec sleep 60", pidfile.to_str().unwrap()]);
    let mut site = Site::embedded("gw-cmd-timeout", &cfg);
    site.start_agent();
    let id = site.submit(json!({"type": "device.reboot", "confirm": true, "timeoutSecs": 2}));
    let pid = read_pid(&pidfile);
    assert!(alive(pid));
    let v = site.wait_terminal(&id);
    assert_eq!(v["state"], "timed_out", "{v}");
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)), "child {pid} still alive after the timeout");
}

#[test]
fn cancel_before_and_during_execution() {
    let dir = scs_testkit::TempDir::new("cancel");
    let pidfile = dir.join("pid");
    let cfg = toml_list(&["sh", "-c", "echo $$ > \"$0\"; exec sleep 60", pidfile.to_str().unwrap()]);
    let mut site = Site::embedded("gw-cmd-cancel", &cfg);

    // Before: the gateway is offline, the command never leaves the shim.
    let early = site.submit(json!({"type": "device.info"}));
    let r = site.api().post_json(&format!("/v1/commands/{early}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"], "cancelled");
    assert_eq!(site.api().post_json(&format!("/v1/commands/{early}/cancel"), &json!({})).status, 409);

    // During: the child runs until the cancel kills it.
    site.start_agent();
    let id = site.submit(json!({"type": "device.reboot", "confirm": true}));
    let pid = read_pid(&pidfile);
    site.wait_state(&id, |s| s == "running", "running");
    let r = site.api().post_json(&format!("/v1/commands/{id}/cancel"), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["cancelRequested"], true);
    let v = site.wait_terminal(&id);
    assert_eq!(v["state"], "cancelled", "{v}");
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)), "child {pid} survived the cancel");
    assert_eq!(site.get(&early)["deliveries"], 0, "a command cancelled before delivery is never sent");
    let trail = audit_trail(&v);
    assert_eq!(trail.last().map(String::as_str), Some("cancelled"), "{trail:?}");
}

#[test]
fn agent_killed_mid_command_reports_interrupted() {
    let dir = scs_testkit::TempDir::new("kill9");
    let pidfile = dir.join("pid");
    let cfg = toml_list(&["sh", "-c", "echo $$ > \"$0\"; exec sleep 60", pidfile.to_str().unwrap()]);
    let mut site = Site::embedded("gw-cmd-kill9", &cfg);
    site.start_agent();
    let id = site.submit(json!({"type": "device.reboot", "confirm": true}));
    let pid = read_pid(&pidfile);
    site.wait_state(&id, |s| s == "running", "running");
    site.agent().kill9();
    // The orphaned child is in its own process group; a reboot would have ended it. Clean up.
    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    site.agent().start_again();
    let v = site.wait_terminal(&id);
    assert_eq!(v["state"], "interrupted", "{v}");
    assert!(v["error"].as_str().unwrap().contains("unknown"), "{v}");
}

#[test]
fn audit_names_who_asked() {
    let mut site = Site::embedded("gw-cmd-audit", "");
    site.start_agent();
    let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    let mut resp = agent
        .post(&site.shim.url(&format!("/v1/gateways/{}/commands", site.gateway)))
        .header("Authorization", &format!("Bearer {}", site.shim.token()))
        // Self-asserted and ignored: the audit names the API token.
        .header("X-SCS-User", "alice")
        .header("Content-Type", "application/json")
        .send(json!({"type": "device.info"}).to_string())
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Json = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["requestedBy"], "token:env");
    let v = site.wait_terminal(&id);
    let audit = v["audit"].as_array().unwrap();
    assert_eq!(audit[0]["actor"], "token:env");
    assert_eq!(audit[0]["from"], Json::Null);
    assert_eq!(audit[1]["actor"], "shim");
    for a in &audit[2..] {
        assert_eq!(a["actor"], format!("agent:{}", site.gateway));
    }
    for w in audit.windows(2) {
        assert_eq!(w[0]["to"], w[1]["from"], "transitions chain: {audit:?}");
        assert!(w[0]["at"].as_i64() <= w[1]["at"].as_i64());
    }
}
