//! The MQTT bridge: the shim's own client of the (embedded or external) broker. It subscribes to every
//! gateway's uplink and status topics, hands messages to ingest, tracks presence and fires
//! [`GatewayEvent`]s. Uplinks go through `$share/{group}/...` when a share group is set, so several
//! shims on one broker split the load; status is subscribed plainly by every shim, because brokers do
//! not replay retained messages to shared subscriptions and every shim needs every gateway's presence.
//!
//! Nothing a gateway sends can stop this loop: decoding errors are ingest's business (counted and
//! rejected), connection errors are logged at a limited rate and followed by a reconnect with backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use scs_protocol::topics::{shared, STATUS_FILTER_ALL, UPLINK_FILTER_ALL};
use scs_protocol::{decode_uplink, GatewayState, TopicKind, Uplink};
use thiserror::Error;
use tokio::sync::broadcast;

use crate::config::{BrokerMode, ServeConfig};
use crate::ingest::IngestHandle;
use crate::rejection::UNKNOWN_GATEWAY;
use crate::state::{GatewayEvent, Health, Presence};
use crate::stats::{Count, LogThrottle, Stats};

/// Incoming packets up to this size reach the shim (so oversized uplinks are counted, not dropped by
/// the client); beyond it the client drops the connection and reconnects.
const MAX_INCOMING_PACKET: usize = 2 * 1024 * 1024;
const MAX_OUTGOING_PACKET: usize = 256 * 1024;
/// Requests (receipts, commands) buffered while the connection is busy or down.
const REQUEST_CAPACITY: usize = 16_384;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A healthy event loop yields at least a ping every keep-alive; this much silence means it is wedged
/// (rumqttc has known hangs after broker restarts), so the bridge drops the connection and reconnects.
const STALL: Duration = Duration::from_secs(45);

#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("broker CA file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("TLS setup for the broker: {0}")]
    Tls(#[from] rustls::Error),
    #[error("broker client certificate {path}: {reason}")]
    ClientCert { path: PathBuf, reason: String },
    #[error("--broker-client-cert needs an mqtts:// broker")]
    ClientCertWithoutTls,
}

/// PEM certificate chain and private key of the shim's client certificate.
fn client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>), BridgeError> {
    let err = |path: &Path, reason: String| BridgeError::ClientCert { path: path.to_owned(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(err(cert, "no certificate in the file".into()));
    }
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, e.to_string()))?;
    Ok((chain, key_der))
}

/// TLS to an `mqtts://` broker: rustls with ring, verified against `ca` or the public web roots.
fn tls_transport(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> Result<Transport, BridgeError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let err = |reason: String| BridgeError::Ca { path: path.to_owned(), reason };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("no certificate in the file".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let (chain, key) = client_identity(cert, key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))))
}

/// Creates the shim's MQTT client; `run` drives its event loop. On the embedded broker it logs in as
/// `scs-shim` with `shim_secret`; on an external one with the configured username/password and/or
/// client certificate.
pub fn client(config: &ServeConfig, shim_secret: &str) -> Result<(AsyncClient, EventLoop), BridgeError> {
    let (host, port) = config.mqtt_target();
    let id = format!("{}{}-{}", crate::broker::SHIM_CLIENT_PREFIX, std::process::id(), crate::random::random_hex(4));
    let mut opts = MqttOptions::new(id, host, port);
    let client_cert = config.broker_client_cert.as_deref().zip(config.broker_client_key.as_deref());
    match config.broker {
        BrokerMode::Embedded(_) => {
            opts.set_credentials(crate::identity::keys::SHIM_MQTT_USER, shim_secret);
        }
        BrokerMode::External { tls, .. } => {
            if tls {
                opts.set_transport(tls_transport(config.broker_ca.as_deref(), client_cert)?);
            } else if client_cert.is_some() {
                return Err(BridgeError::ClientCertWithoutTls);
            }
            if let Some(user) = &config.broker_username {
                opts.set_credentials(user.clone(), config.broker_password.as_ref().map(|p| p.0.clone()).unwrap_or_default());
            }
        }
    }
    opts.set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET)
        .set_inflight(200)
        .set_request_channel_capacity(REQUEST_CAPACITY);
    let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_CAPACITY);
    // Receipts and commands are small: without TCP_NODELAY, Nagle + delayed ACK adds ~40 ms per exchange.
    let mut net = rumqttc::NetworkOptions::new();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
    Ok((client, eventloop))
}

/// Filters the bridge subscribes to.
pub fn filters(share_group: Option<&str>) -> Vec<String> {
    let uplink = match share_group {
        Some(g) => shared(g, UPLINK_FILTER_ALL),
        None => UPLINK_FILTER_ALL.to_owned(),
    };
    vec![uplink, STATUS_FILTER_ALL.to_owned()]
}

pub struct Bridge {
    pub client: AsyncClient,
    pub ingest: IngestHandle,
    pub events: broadcast::Sender<GatewayEvent>,
    pub presence: Arc<Presence>,
    pub health: Arc<Health>,
    pub stats: Arc<Stats>,
    pub filters: Vec<String>,
    /// Status messages change presence (and so command delivery) only when they verify.
    pub registry: crate::identity::Registry,
}

impl Bridge {
    /// Drives the event loop; returns only when the ingest pipeline has stopped (the shim then exits,
    /// so a supervisor restarts it rather than leaving a shim that subscribes but stores nothing).
    pub async fn run(self, mut eventloop: EventLoop) {
        let mut backoff = Duration::from_millis(100);
        let mut errors = LogThrottle::new(5, Duration::from_secs(60));
        // Set on every CONNACK until the SUBSCRIBE is queued: with a full request channel (many receipts
        // waiting) the first try fails, and a missed subscription would silently stop ingest.
        let mut need_subscribe = false;
        loop {
            if need_subscribe {
                let subs = self.filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                // try_: the request channel is drained by this very loop, so awaiting could deadlock.
                match self.client.try_subscribe_many(subs) {
                    Ok(()) => need_subscribe = false,
                    Err(e) => log::debug!("subscription not queued yet ({e}); retrying"),
                }
            }
            let Ok(polled) = tokio::time::timeout(STALL, eventloop.poll()).await else {
                log::warn!("no MQTT activity for {STALL:?}; dropping the connection and reconnecting");
                self.health.set_mqtt_subscribed(false);
                eventloop.clean();
                continue;
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(100);
                    log::info!("connected to MQTT broker; subscribing to {:?}", self.filters);
                    need_subscribe = true;
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let failed = ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure));
                    if failed {
                        log::error!("broker refused a subscription ({:?}); ingest is incomplete", ack.return_codes);
                    } else {
                        log::info!("subscribed; ingest is live");
                    }
                    self.health.set_mqtt_subscribed(!failed);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let payload = p.payload.to_vec();
                    if p.topic.ends_with(TopicKind::Status.suffix()) {
                        if payload.is_empty() {
                            // Someone cleared a retained status: nothing to record.
                            continue;
                        }
                        self.on_status(&p.topic, &payload);
                    }
                    if self.ingest.submit_mqtt(p.topic, payload).await.is_err() {
                        log::error!("ingest pipeline stopped; bridge exits");
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.health.set_mqtt_subscribed(false);
                    if let rumqttc::ConnectionError::MqttState(rumqttc::StateError::Deserialization(
                        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
                    )) = &e
                    {
                        // The client cannot read the packet, so not its topic either: charged to no gateway.
                        // The clean session means the broker does not send it again after the reconnect.
                        let error = format!("incoming packet of {size} bytes exceeds the client limit of {MAX_INCOMING_PACKET}");
                        let at = crate::store::now_ms();
                        self.stats.record(UNKNOWN_GATEWAY, Count::Rejected { reason: "too_large", error: &error, topic: "", at });
                    }
                    if errors.allow() {
                        log::warn!("MQTT connection: {e}; reconnecting in {backoff:?}");
                    }
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Presence and events; storing the status is ingest's job (it receives the same message).
    /// A status that does not verify for the gateway in its topic (a spoofed "offline" meant to hold
    /// commands, or a forged "online") changes nothing here; ingest counts it as rejected.
    fn on_status(&self, topic: &str, signed: &[u8]) {
        let Ok(Some(payload)) = crate::identity::verify_uplink(&self.registry, topic, signed) else { return };
        if let Ok((t, Uplink::Status(s))) = decode_uplink(topic, payload) {
            self.presence.set(&t.gateway, s.state, s.boot, s.ts, s.version.clone());
            let ev = match s.state {
                GatewayState::Online => GatewayEvent::Online(t.gateway),
                GatewayState::Offline => GatewayEvent::Offline(t.gateway),
            };
            log::info!("gateway status: {ev:?}");
            // No receivers is fine: nobody is listening yet.
            let _ = self.events.send(ev);
        }
    }
}

/// 75–125 % of `d`, so many shims do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = u64::from_str_radix(&crate::random::random_hex(2), 16).unwrap_or(0) % 500;
    d * (750 + r as u32) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_only_for_uplinks() {
        assert_eq!(filters(None), vec!["scs/v1/+/up/#".to_owned(), "scs/v1/+/status".to_owned()]);
        assert_eq!(filters(Some("g")), vec!["$share/g/scs/v1/+/up/#".to_owned(), "scs/v1/+/status".to_owned()]);
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..50 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(750) && j < Duration::from_millis(1250), "{j:?}");
        }
    }
}
