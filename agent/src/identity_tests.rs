use super::*;

use base64::engine::general_purpose::STANDARD;

pub(crate) struct TestKeys {
    pub gateway_pkcs8: Vec<u8>,
    pub cloud: SigningKey,
    pub password: String,
}

pub(crate) fn keys() -> TestKeys {
    let (_, gateway_pkcs8) = SigningKey::generate().unwrap();
    TestKeys { gateway_pkcs8, cloud: SigningKey::generate().unwrap().0, password: "pw-Xq3-secret-9".into() }
}

pub(crate) fn bundle_text(gw: &str, k: &TestKeys) -> String {
    format!(
        "gateway_id = \"{gw}\"\nbroker_url = \"mqtt://127.0.0.1:1883\"\napi_url = \"http://127.0.0.1:8080\"\n\
         mqtt_username = \"{gw}\"\nmqtt_password = \"{}\"\nsigning_key = \"{}\"\ncloud_public_key = \"{}\"\n",
        k.password,
        STANDARD.encode(&k.gateway_pkcs8),
        STANDARD.encode(k.cloud.public_key())
    )
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scs-id-{tag}-{}-{}", std::process::id(), crate::clock::random_u64()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn parses_a_bundle_and_hides_secrets() {
    let k = keys();
    let text = bundle_text("gw-1", &k);
    let id = Identity::parse(&text, Path::new("b.toml")).unwrap();
    assert_eq!(id.gateway_id, "gw-1");
    assert_eq!(id.mqtt_password.expose(), k.password);
    assert_eq!(id.cloud_key, k.cloud.verifying_key());
    let dbg = format!("{id:?}");
    let key_b64 = STANDARD.encode(&k.gateway_pkcs8);
    assert!(!dbg.contains(&k.password) && !dbg.contains(&key_b64), "{dbg}");
}

#[test]
fn bad_bundles_are_refused_with_the_field_named() {
    let k = keys();
    let good = bundle_text("gw-1", &k);
    let cases: Vec<(&str, String)> = vec![
        ("gateway_id", good.replace("gateway_id = \"gw-1\"", "gateway_id = \"gw/1\"")),
        ("broker_url", good.replace("mqtt://127.0.0.1:1883", "http://x")),
        ("api_url", good.replace("http://127.0.0.1:8080", "ftp://x")),
        ("mqtt_password", good.replace(&k.password, "")),
        ("signing_key", good.replace(&STANDARD.encode(&k.gateway_pkcs8), "bm90IGEga2V5")),
        ("signing_key", good.replace(&STANDARD.encode(&k.gateway_pkcs8), "***")),
        ("cloud_public_key", good.replace(&STANDARD.encode(k.cloud.public_key()), "AAAA")),
        ("broker_ca_pem", format!("{good}broker_ca_pem = \"x\"\n")),
        ("client_cert_pem", format!("{}client_cert_pem = \"x\"\n", good.replace("mqtt://", "mqtts://"))),
    ];
    for (field, text) in cases {
        let e = Identity::parse(&text, Path::new("b.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(field), "{field}: {msg}");
        assert!(!msg.contains(&k.password), "{msg}");
    }
    assert!(matches!(Identity::parse("gateway_id = 1", Path::new("b")), Err(IdentityError::Parse { .. })));
    // A broken line holding a key is not quoted back in the error.
    let key_b64 = STANDARD.encode(&k.gateway_pkcs8);
    let broken = good.replace(&format!("signing_key = \"{key_b64}\""), &format!("signing_key = \"{key_b64}"));
    let msg = Identity::parse(&broken, Path::new("b")).unwrap_err().to_string();
    assert!(!msg.contains(&key_b64), "{msg}");
    assert!(matches!(Identity::parse("", Path::new("b")), Err(IdentityError::Parse { .. })));
}

#[test]
fn provision_installs_with_safe_modes_atomically() {
    let k = keys();
    let dir = temp("prov");
    let bundle = dir.join("gw-1.bundle.toml");
    std::fs::write(&bundle, bundle_text("gw-1", &k)).unwrap();
    let adir = dir.join("agent");
    assert!(load(&adir).unwrap().is_none());
    let id = provision(&bundle, &adir).unwrap();
    assert_eq!(id.gateway_id, "gw-1");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&adir), 0o700);
    assert_eq!(mode(&path_in(&adir)), 0o600);
    assert_eq!(std::fs::read_to_string(path_in(&adir)).unwrap(), bundle_text("gw-1", &k));
    assert_eq!(load(&adir).unwrap().unwrap().gateway_id, "gw-1");

    // A bad bundle leaves the installed identity as it was.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, bundle_text("gw-2", &k).replace("mqtt_password", "mqtt_pass")).unwrap();
    assert!(provision(&bad, &adir).is_err());
    assert_eq!(load(&adir).unwrap().unwrap().gateway_id, "gw-1");
    assert!(std::fs::read_dir(&adir).unwrap().count() == 1, "no temp file left behind");

    // Re-provisioning replaces it.
    let other = dir.join("gw-2.toml");
    std::fs::write(&other, bundle_text("gw-2", &k)).unwrap();
    provision(&other, &adir).unwrap();
    assert_eq!(load(&adir).unwrap().unwrap().gateway_id, "gw-2");

    // Readable by others: refused.
    std::fs::set_permissions(path_in(&adir), std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(load(&adir), Err(IdentityError::Permissions { mode: 0o644, .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sealed_uplinks_verify_only_for_their_topic_and_opener_checks_downlinks() {
    let k = keys();
    let id = Identity::parse(&bundle_text("gw-1", &k), Path::new("b")).unwrap();
    let sealed = id.sealer().seal(TopicKind::Telemetry, b"\xa0".to_vec());
    assert!(Sealer::is_sealed(&sealed));
    assert!(!Sealer::is_sealed(b"\xa0"));
    let gw_key = id.signing_key.verifying_key();
    let t = topic("gw-1", TopicKind::Telemetry);
    assert_eq!(cose::verify1(&sealed, t.as_bytes(), |kid| (kid == b"gw-1").then_some(gw_key)).unwrap().payload, b"\xa0");
    let other = topic("gw-1", TopicKind::Inventory);
    assert!(cose::verify1(&sealed, other.as_bytes(), |_| Some(gw_key)).is_err());
    assert_eq!(Sealer::insecure("gw-1").seal(TopicKind::Status, b"x".to_vec()), b"x");

    let opener = Opener::new(id.cloud_key);
    let down = topic("gw-1", TopicKind::Command);
    let signed = cose::sign1(&k.cloud, cose::KID_CLOUD, down.as_bytes(), b"cmd");
    assert_eq!(opener.open(&down, &signed).unwrap(), b"cmd");
    // Signed for another gateway, by the gateway's own key, under another kid, or bare: refused.
    assert!(opener.open(&topic("gw-2", TopicKind::Command), &signed).is_err());
    let by_gateway = cose::sign1(&id.signing_key, cose::KID_CLOUD, down.as_bytes(), b"cmd");
    assert!(opener.open(&down, &by_gateway).is_err());
    let other_kid = cose::sign1(&k.cloud, b"gw-1", down.as_bytes(), b"cmd");
    assert!(matches!(opener.open(&down, &other_kid), Err(cose::CoseError::UnknownKey { .. })));
    assert!(opener.open(&down, b"\xa0").is_err());
    assert_eq!(Opener::insecure().open(&down, b"\xa0").unwrap(), b"\xa0");
}

#[test]
fn run_takes_everything_from_the_identity_and_dumps_hide_it() {
    let k = keys();
    let dir = temp("cfg");
    let bundle = dir.join("b.toml");
    std::fs::write(&bundle, bundle_text("gw-7", &k)).unwrap();
    let adir = dir.join("agent");
    provision(&bundle, &adir).unwrap();
    let cfg_file = dir.join("agent.toml");
    std::fs::write(&cfg_file, "gateway_id = \"from-file\"\n[mqtt]\nbroker = \"mqtt://file:1\"\n").unwrap();
    let o = crate::config::Overrides { config: Some(cfg_file.clone()), data_dir: Some(adir.clone()), ..Default::default() };
    let (cfg, _, id) = crate::config::load_with_identity(&o).unwrap();
    assert!(id.is_some());
    assert_eq!(cfg.gateway_id, "gw-7");
    assert_eq!(cfg.mqtt.broker, "mqtt://127.0.0.1:1883");
    assert_eq!(cfg.api_url.as_deref(), Some("http://127.0.0.1:8080"));
    assert_eq!(cfg.mqtt.username.as_deref(), Some("gw-7"));
    assert_eq!(cfg.mqtt.password.as_ref().map(|p| p.expose()), Some(k.password.as_str()));
    // What print-config and the agent.config command show.
    let dump = crate::config::redacted_toml(&cfg);
    let key_b64 = STANDARD.encode(&k.gateway_pkcs8);
    assert!(!dump.contains(&k.password) && !dump.contains(&key_b64), "{dump}");
    assert!(!format!("{cfg:?}").contains(&k.password));

    // Flags override the URLs; another gateway id is refused.
    let o2 = crate::config::Overrides { broker: Some("mqtt://10.0.0.1:1".into()), ..o.clone() };
    assert_eq!(crate::config::load_with_identity(&o2).unwrap().0.mqtt.broker, "mqtt://10.0.0.1:1");
    let o3 = crate::config::Overrides { gateway_id: Some("gw-8".into()), ..o.clone() };
    assert!(matches!(crate::config::load_with_identity(&o3), Err(crate::config::ConfigError::Invalid(m)) if m.contains("gw-8")));
    // A broken identity is an error, not a silent fall-back to no identity.
    std::fs::write(path_in(&adir), "gateway_id = 5").unwrap();
    assert!(matches!(crate::config::load_with_identity(&o), Err(crate::config::ConfigError::Identity(_))));
    std::fs::remove_dir_all(&dir).unwrap();
}
