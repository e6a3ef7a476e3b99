//! The checked-in generated files must match what the registry renders to, and the staleness check must
//! actually notice a change.

use std::path::Path;

#[test]
fn checked_in_generated_files_are_up_to_date() {
    let stale = registry_gen::stale_files(&registry_gen::default_root()).expect("registry renders");
    assert!(stale.is_empty(), "stale generated files (run `cargo run -p registry-gen`): {stale:?}");
}

#[test]
fn staleness_is_detected_after_a_registry_edit() {
    let root = registry_gen::default_root();
    let tmp = std::env::temp_dir().join(format!("registry-gen-test-{}", std::process::id()));
    let copy = |rel: &str, content: &str| {
        let p = tmp.join(rel);
        std::fs::create_dir_all(p.parent().expect("has a parent")).unwrap();
        std::fs::write(p, content).unwrap();
    };
    let source = std::fs::read_to_string(root.join(registry_gen::SOURCE)).unwrap();
    copy(registry_gen::SOURCE, &source);
    // Fresh tree: everything is missing, hence stale; after writing, nothing is.
    assert_eq!(registry_gen::stale_files(&tmp).unwrap().len(), 3);
    assert_eq!(registry_gen::write_all(&tmp).unwrap().len(), 3);
    assert!(registry_gen::stale_files(&tmp).unwrap().is_empty());
    // Edit the registry: every consumer's file goes stale.
    copy(registry_gen::SOURCE, &source.replace("\"timeoutSecs\": 10,", "\"timeoutSecs\": 11,"));
    assert_eq!(registry_gen::stale_files(&tmp).unwrap().len(), 3);
    // Hand-edit one generated file: only that one is stale after regenerating the rest.
    registry_gen::write_all(&tmp).unwrap();
    let agent = tmp.join(registry_gen::AGENT_OUT);
    let text = std::fs::read_to_string(&agent).unwrap();
    std::fs::write(&agent, text.replace("timeout_secs: 11", "timeout_secs: 12")).unwrap();
    assert_eq!(registry_gen::stale_files(&tmp).unwrap(), vec![agent]);
    let _ = std::fs::remove_dir_all(Path::new(&tmp));
}

#[test]
fn invalid_registries_are_refused() {
    let root = registry_gen::default_root();
    let source = std::fs::read_to_string(root.join(registry_gen::SOURCE)).unwrap();
    let cases = [
        ("\"operation\": \"read\"", "\"operation\": \"fetch\"", "unknown operation"),
        ("\"pattern\": \"host\"", "\"pattern\": \"^[a-z]+$\"", "unknown pattern"),
        ("\"default\": 3000", "\"default\": 3", "default"),
        ("\"requiresConfirmation\": true", "\"requiresConfirmation\": false", "confirmation"),
        ("\"timeoutSecs\": 10,", "\"timeoutSecs\": 10, \"bogus\": 1,", "unknown field"),
    ];
    for (from, to, expect) in cases {
        assert!(source.contains(from), "fixture text {from:?} vanished from the registry");
        let err = match registry_gen::parse(&source.replacen(from, to, 1)) {
            Ok(_) => panic!("{to:?} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expect), "{to:?}: {err}");
    }
}

#[test]
fn served_json_has_the_documented_fields() {
    let reg = registry_gen::load(&registry_gen::default_root()).unwrap();
    let json = registry_gen::registry_json(&reg);
    let list = json.as_array().expect("a list of commands");
    assert!(list.iter().any(|c| c["type"].as_str().is_some_and(|t| t.contains("log_bundle")) && c["artifact"] == true));
    for c in list {
        for key in ["type", "path", "operation", "timeoutSecs", "safety", "params"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
    }
}
