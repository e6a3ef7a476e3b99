//! Helpers shared by the shim's end-to-end tests: a fake gateway speaking MQTT through rumqttc, and
//! builders for protocol messages.
#![allow(dead_code)] // each test file uses a different subset

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use scs_protocol::cose::{verify1, VerifyingKey};
use scs_protocol::topics::topic;
use scs_protocol::{decode_downlink, encode, Downlink, Inventory, Metric, Receipt, SensorInfo, TelemetryBatch, TopicKind};
use scs_protocol::{DeviceReport, GatewayState, Status};
use scs_testkit::{GatewayCreds, Shim};

/// A gateway's MQTT side: publishes uplinks and collects the receipts the shim sends back.
pub struct TestGateway {
    pub id: String,
    pub creds: Arc<GatewayCreds>,
    client: Client,
    receipts: Arc<Mutex<Vec<Receipt>>>,
    subscribed: Arc<Mutex<bool>>,
}

impl TestGateway {
    /// Provisions `id` on `shim`, connects to 127.0.0.1:`port` with its login, subscribes to its receipt
    /// topic and waits for the SUBACK. Publishes are signed with the gateway's key; only receipts that
    /// verify with the cloud key are collected.
    pub fn connect(shim: &Shim, port: u16, id: &str) -> TestGateway {
        TestGateway::connect_with(port, shim.add_gateway(id))
    }

    /// Provisions `id` on `shims[0]` and makes the others verify it too (forwarding shims and their
    /// Worker), then connects as with [`TestGateway::connect`].
    pub fn connect_on(shims: &[&Shim], port: u16, id: &str) -> TestGateway {
        let creds = shims[0].add_gateway(id);
        for other in &shims[1..] {
            scs_testkit::copy_gateway(shims[0].data_dir(), other.data_dir(), id);
        }
        TestGateway::connect_with(port, creds)
    }

    pub fn connect_with(port: u16, creds: GatewayCreds) -> TestGateway {
        let id = creds.id.clone();
        let id = id.as_str();
        let mut opts = MqttOptions::new(format!("scs-agent-{id}"), "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(10)).set_max_packet_size(1 << 20, 1 << 20);
        opts.set_credentials(id, creds.password.clone());
        let cloud = VerifyingKey(creds.cloud_public_key);
        let (client, mut connection) = Client::new(opts, 1000);
        let receipts = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(Mutex::new(false));
        let (r, s) = (receipts.clone(), subscribed.clone());
        let sub_client = client.clone();
        let receipt_topic = topic(id, TopicKind::Receipt);
        std::thread::spawn(move || {
            for ev in connection.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub_client.try_subscribe(receipt_topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => *s.lock().unwrap() = true,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let Ok(v) = verify1(&p.payload, p.topic.as_bytes(), |kid| (kid == b"cloud").then_some(cloud)) else {
                            continue;
                        };
                        if let Ok((_, Downlink::Receipt(rc))) = decode_downlink(&p.topic, v.payload) {
                            r.lock().unwrap().push(rc);
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        let gw = TestGateway { id: id.to_owned(), creds: Arc::new(creds), client, receipts, subscribed };
        assert!(
            scs_testkit::wait_until(Duration::from_secs(10), || *gw.subscribed.lock().unwrap()),
            "test gateway {id} could not subscribe on port {port}"
        );
        gw
    }

    pub fn publish(&self, kind: TopicKind, payload: Vec<u8>) {
        let t = topic(&self.id, kind);
        let signed = self.creds.sign(&t, &payload);
        self.client.publish(t, QoS::AtLeastOnce, false, signed).expect("queue publish");
    }

    pub fn publish_retained(&self, kind: TopicKind, payload: Vec<u8>) {
        let t = topic(&self.id, kind);
        let signed = self.creds.sign(&t, &payload);
        self.client.publish(t, QoS::AtLeastOnce, true, signed).expect("queue publish");
    }

    /// Publishes exactly these bytes (no signature added) on `topic`.
    pub fn publish_raw(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload).expect("queue publish");
    }

    pub fn accepted(&self) -> Vec<u64> {
        self.receipts.lock().unwrap().iter().flat_map(|r| r.accepted.clone()).collect()
    }

    pub fn rejected(&self) -> Vec<u64> {
        self.receipts.lock().unwrap().iter().flat_map(|r| r.rejected.clone().unwrap_or_default()).collect()
    }

    pub fn receipts(&self) -> Vec<Receipt> {
        self.receipts.lock().unwrap().clone()
    }

    /// Waits until every seq in `seqs` was named as accepted (at least once).
    pub fn wait_accepted(&self, seqs: &[u64], timeout: Duration) -> bool {
        scs_testkit::wait_until(timeout, || {
            let got = self.accepted();
            seqs.iter().all(|s| got.contains(s))
        })
    }

    /// Like the agent: publishes message `seq` again every `every` until a receipt accepts it (one sent
    /// while the connection was going down may be lost).
    pub fn resend_until_accepted(&self, kind: TopicKind, seq: u64, payload: &[u8], every: Duration, timeout: Duration) -> bool {
        scs_testkit::wait_until(timeout, || {
            if self.accepted().contains(&seq) {
                return true;
            }
            self.publish(kind, payload.to_vec());
            std::thread::sleep(every);
            false
        })
    }

    pub fn wait_rejected(&self, seq: u64, timeout: Duration) -> bool {
        scs_testkit::wait_until(timeout, || self.rejected().contains(&seq))
    }

    pub fn disconnect(&self) {
        let _ = self.client.disconnect();
    }
}

pub const BOOT: u64 = 0xfeed_f00d_1234_5678;

/// A telemetry batch for the gateway itself and one camera, with `n` gateway metrics.
pub fn telemetry(gw: &str, seq: u64, n: usize) -> Vec<u8> {
    let ts = 1_700_000_000_000 + seq * 1000;
    let mut b = TelemetryBatch::new(gw, BOOT, seq, ts);
    let mut metrics = vec![Metric::new("cpu.usage_pct", 10.0 + seq as f64)];
    for i in 1..n {
        metrics.push(Metric::labelled("net.rx_bytes", &format!("eth{i}"), (seq * 1000 + i as u64) as i64));
    }
    b.devices.push(DeviceReport { sensor: gw.to_owned(), ts, metrics });
    b.devices.push(DeviceReport { sensor: format!("{gw}-cam-1"), ts, metrics: vec![Metric::new("camera.fps", 25i64)] });
    encode(&b)
}

/// Metric rows one [`telemetry`] batch of `n` produces.
pub fn rows_per_batch(n: usize) -> usize {
    n + 1
}

pub fn inventory(gw: &str, seq: u64) -> Vec<u8> {
    let inv = Inventory {
        v: 1,
        gateway: gw.to_owned(),
        boot: BOOT,
        seq,
        ts: 1_700_000_000_000,
        sensors: vec![
            SensorInfo {
                id: gw.to_owned(),
                sensor_type: "EDGE_CONTROLLER".into(),
                parent: None,
                name: Some("Test gateway".into()),
                attrs: None,
            },
            SensorInfo {
                id: format!("{gw}-cam-1"),
                sensor_type: "CAMERA".into(),
                parent: Some(gw.to_owned()),
                name: Some("Gate camera".into()),
                attrs: Some([("vendor".to_owned(), "acme".to_owned())].into()),
            },
        ],
        agent: None,
    };
    encode(&inv)
}

pub fn status(gw: &str, state: GatewayState) -> Vec<u8> {
    encode(&Status { v: 1, gateway: gw.to_owned(), state, boot: BOOT, ts: 1_700_000_000_000, version: Some("test".into()) })
}
