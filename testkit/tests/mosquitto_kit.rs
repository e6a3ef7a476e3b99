//! The kit against a real Mosquitto: start, binary-safe publish/subscribe, stop and start on the same port.

use std::time::Duration;

use scs_testkit::{port_open, Mosquitto};

#[test]
fn binary_payloads_round_trip_and_broker_restarts_on_same_port() {
    let mut broker = Mosquitto::start();
    let sub = broker.subscribe("scs/v1/+/up/#");
    let payload: Vec<u8> = (0u8..=255).chain([b'\n', 0, b' ', b'\r']).collect();
    broker.publish("scs/v1/gw-1/up/telemetry", &payload);
    broker.publish("scs/v1/gw-1/up/inventory", b"");
    assert!(sub.wait_for_count(2, Duration::from_secs(10)), "messages: {:?}", sub.messages());
    assert_eq!(sub.payloads_on("scs/v1/gw-1/up/telemetry"), vec![payload]);
    assert_eq!(sub.payloads_on("scs/v1/gw-1/up/inventory"), vec![Vec::<u8>::new()]);

    let port = broker.port();
    broker.stop();
    assert!(!port_open(port));
    broker.start_again();
    assert_eq!(broker.port(), port);
    let sub2 = broker.subscribe("a/b");
    broker.publish("a/b", b"x");
    assert_eq!(sub2.wait_for_topic("a/b", Duration::from_secs(10)), Some(b"x".to_vec()));
}
