//! MQTT transport on rumqttc's synchronous client (its own single-threaded tokio runtime inside),
//! TLS through rustls with the ring provider.
//!
//! One thread owns the connection and runs [`MqttTransport::run`]:
//! * builds a fresh client + connection for every attempt (rumqttc's own reconnect keeps stale
//!   requests and state; the outbox is our source of truth, so starting clean is simpler and safe);
//! * on CONNACK: subscribes to `down/#`, publishes the retained `online` status (the `offline`
//!   status is registered as Last Will), then hands the client to the [`Publisher`];
//! * decodes every downlink with `scs_protocol::decode_downlink`: receipts are applied to the queue
//!   here, commands and cancels go to the command executor's channel, and so does an invalid command
//!   with a readable id (`Downlink::InvalidCommand`, answered `rejected`);
//! * liveness watchdog: no packet from the broker for `watchdog_secs` (pings included), or a
//!   connect that does not finish, tears the client down and starts over — rumqttc has known
//!   hangs after broker restarts where its event loop stops making progress without an error;
//! * reconnects with jittered exponential backoff.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::commands::Inbound;
use rumqttc::{
    Client, Connection, Event, LastWill, MqttOptions, NetworkOptions, Packet, QoS, RecvTimeoutError, TlsConfiguration, Transport,
};
use scs_protocol::limits::{MAX_DOWNLINK_BYTES, MAX_UPLINK_BYTES};
use scs_protocol::topics::topic;
use scs_protocol::{decode_downlink, encode, Downlink, GatewayState, Status, TopicKind, PROTOCOL_VERSION};

use crate::config::{BrokerUrl, MqttConfig};
use crate::context::{AgentContext, AgentMetrics, Shutdown};
use crate::identity::{Opener, Sealer};
use crate::publisher::{Publisher, Sink, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("gateway {gateway}: broker URL: {reason}")]
    Url { gateway: String, reason: String },
    #[error("gateway {gateway}: TLS setup: {reason}")]
    Tls { gateway: String, reason: String },
    #[error("gateway {gateway}: MQTT TLS roots: {source}")]
    Ca { gateway: String, source: crate::tls::CaError },
}

/// Installs rustls' ring provider as the process default (once; later calls are no-ops). Every
/// TLS user in the agent (MQTT, HTTPS uploads) then agrees on ring, never aws-lc.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// TLS material that comes as PEM text rather than files (from the provisioning bundle).
#[derive(Clone, Default)]
pub struct TlsPems {
    pub ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<crate::secret::Secret>,
}

/// What the transport needs from the identity: signing, verification and TLS material.
#[derive(Clone)]
pub struct Security {
    pub sealer: Sealer,
    pub opener: Opener,
    pub tls: TlsPems,
}

impl Security {
    pub fn from_identity(id: &crate::identity::Identity) -> Security {
        Security {
            sealer: id.sealer(),
            opener: Opener::new(id.cloud_key),
            tls: TlsPems {
                ca: id.broker_ca_pem.clone(),
                client_cert: id.client_cert_pem.clone(),
                client_key: id.client_key_pem.clone(),
            },
        }
    }

    /// `--insecure-no-identity`: unsigned both ways (development only).
    pub fn insecure(gateway: &str) -> Security {
        Security { sealer: Sealer::insecure(gateway), opener: Opener::insecure(), tls: Default::default() }
    }
}

/// Builds the rustls client config: roots from `ca_file` (PEM), else the bundle's CA, else the system
/// store; client certificate from the files, else from the bundle.
pub fn tls_config(cfg: &MqttConfig, pems: &TlsPems, gateway: &str) -> Result<TlsConfiguration, TransportError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |reason: String| TransportError::Tls { gateway: gateway.to_owned(), reason };
    // A CA file (flag or config) wins over the bundle's CA; without either, the system store.
    let roots = match (&cfg.ca_file, &pems.ca) {
        (None, Some(pem)) => crate::tls::root_store_from_pem(pem),
        (file, _) => crate::tls::root_store(file.as_deref()),
    }
    .map_err(|source| TransportError::Ca { gateway: gateway.to_owned(), source })?;
    // Certificate validity is checked at the floored clock: a gateway at 1970 still connects.
    let builder = crate::tls::client_config_builder().map_err(|e| err(e.to_string()))?.with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file, &pems.client_cert, &pems.client_key) {
        (Some(cert), Some(key), _, _) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| err(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| err(format!("{}: {e}", key.display())))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| err(e.to_string()))?
        }
        (None, None, Some(cert), Some(key)) => {
            let chain = crate::tls::pem_certs(cert).map_err(|e| err(format!("identity client_cert_pem: {e}")))?;
            let key = crate::tls::pem_key(key.expose()).map_err(|e| err(format!("identity client_key_pem: {e}")))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| err(format!("identity client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// Jittered exponential backoff ("equal jitter": half fixed, half random), so a fleet that lost
/// its broker at the same moment does not reconnect in lockstep.
pub struct Backoff {
    min: Duration,
    max: Duration,
    cur: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        let min = min.max(Duration::from_millis(10));
        Backoff { min, max: max.max(min), cur: min, rng: seed }
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.cur;
        self.cur = self.cur.saturating_mul(2).min(self.max);
        self.rng = crate::clock::splitmix(self.rng);
        let half = base / 2;
        let jitter_ms = if half.as_millis() > 0 { self.rng % (half.as_millis() as u64 + 1) } else { 0 };
        half + Duration::from_millis(jitter_ms)
    }

    pub fn reset(&mut self) {
        self.cur = self.min;
    }
}

struct MqttSink {
    client: Client,
}

impl Sink for MqttSink {
    fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), SinkError> {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| SinkError { topic: topic.to_owned(), reason: e.to_string() })
    }
}

/// A connection up at least this long counts as healthy: the next reconnect starts from the
/// shortest backoff again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Why one connection's life ended.
enum End {
    Shutdown,
    Lost(String),
    Stalled(String),
}

pub struct MqttTransport {
    gateway: String,
    boot: u64,
    cfg: MqttConfig,
    url: BrokerUrl,
    tls: Option<TlsConfiguration>,
    publisher: Publisher,
    downlink: Sender<Inbound>,
    metrics: Arc<AgentMetrics>,
    shutdown: Shutdown,
    downlink_closed_logged: bool,
    /// Signs the status messages (online, offline, Last Will) as this gateway.
    sealer: Sealer,
    /// Verifies every downlink against the cloud's key and its topic before anything looks inside.
    opener: Opener,
}

impl MqttTransport {
    pub fn new(
        ctx: &AgentContext,
        publisher: Publisher,
        downlink: Sender<Inbound>,
        security: Security,
    ) -> Result<MqttTransport, TransportError> {
        let cfg = ctx.config.mqtt.clone();
        let url =
            BrokerUrl::parse(&cfg.broker).map_err(|reason| TransportError::Url { gateway: ctx.gateway_id.clone(), reason })?;
        let tls = if url.tls { Some(tls_config(&cfg, &security.tls, &ctx.gateway_id)?) } else { None };
        Ok(MqttTransport {
            gateway: ctx.gateway_id.clone(),
            boot: ctx.boot,
            cfg,
            url,
            tls,
            publisher,
            downlink,
            metrics: ctx.metrics.clone(),
            shutdown: ctx.shutdown.clone(),
            downlink_closed_logged: false,
            sealer: security.sealer,
            opener: security.opener,
        })
    }

    /// The signed status message; the Last Will's is signed when the connection is set up.
    fn status(&self, state: GatewayState) -> Vec<u8> {
        let status = encode(&Status {
            v: PROTOCOL_VERSION,
            gateway: self.gateway.clone(),
            state,
            boot: self.boot,
            ts: crate::clock::now_ms(),
            version: Some(crate::inventory::AGENT_VERSION.into()),
        });
        self.sealer.seal(TopicKind::Status, status)
    }

    fn options(&self) -> MqttOptions {
        let c = &self.cfg;
        let client_id = c.client_id.clone().unwrap_or_else(|| format!("scs-agent-{}", self.gateway));
        let mut o = MqttOptions::new(client_id, self.url.host.clone(), self.url.port);
        o.set_keep_alive(Duration::from_secs(c.keep_alive_secs));
        // The outbox, not the broker session, holds what must be delivered; a clean session also
        // means no stale downlinks are replayed (the cloud re-sends held commands itself).
        o.set_clean_session(true);
        o.set_max_packet_size(MAX_DOWNLINK_BYTES * 2 + 1024, MAX_UPLINK_BYTES + 1024);
        // rumqttc's own QoS 1 window must never be the bottleneck of ours.
        o.set_inflight(u16::try_from(c.inflight_window + 16).unwrap_or(u16::MAX));
        o.set_last_will(LastWill::new(
            topic(&self.gateway, TopicKind::Status),
            self.status(GatewayState::Offline),
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(user) = &c.username {
            o.set_credentials(user.clone(), c.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default());
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(tls.clone()));
        }
        o
    }

    fn heartbeat(&self) {
        self.metrics.mqtt_heartbeat_ms.store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// Connection loop; returns at shutdown.
    pub fn run(mut self) {
        let mut backoff = Backoff::new(
            Duration::from_millis(self.cfg.reconnect_min_ms),
            Duration::from_secs(self.cfg.reconnect_max_secs),
            crate::clock::random_u64(),
        );
        log::info!(
            "mqtt: gateway {} -> {}://{}:{}",
            self.gateway,
            if self.url.tls { "mqtts" } else { "mqtt" },
            self.url.host,
            self.url.port
        );
        loop {
            self.heartbeat();
            // Channel room for a full window plus subscribe/status/acks, so try_publish never fails
            // for lack of space while the connection is healthy.
            let (client, conn) = Client::new(self.options(), self.cfg.inflight_window * 2 + 32);
            let mut conn = conn;
            let mut net = NetworkOptions::new();
            net.set_connection_timeout(self.cfg.connect_timeout_secs);
            // Small messages (command updates, acks) must not wait for Nagle + delayed ACK (~40 ms).
            net.set_tcp_nodelay(true);
            conn.eventloop.set_network_options(net);

            let (end, up_for) = self.drive(&client, &mut conn);
            let was_connected = up_for.is_some();
            // Only a connection that stayed up a while resets the backoff: one the broker drops
            // right after CONNACK (auth hook, overload) must not turn into a reconnect storm.
            if up_for.is_some_and(|d| d >= STABLE_AFTER) {
                backoff.reset();
            }
            self.publisher.disconnected();
            self.metrics.connected.store(false, Ordering::Relaxed);
            drop(conn);
            match end {
                End::Shutdown => return,
                End::Lost(reason) if was_connected => log::warn!("mqtt: connection to {} lost: {reason}", self.url.host),
                End::Lost(reason) => log::warn!("mqtt: connect to {}:{} failed: {reason}", self.url.host, self.url.port),
                End::Stalled(reason) => {
                    AgentMetrics::add(&self.metrics.watchdog_resets, 1);
                    log::warn!("mqtt watchdog: {reason}; recreating the client");
                }
            }
            if was_connected {
                AgentMetrics::add(&self.metrics.reconnects, 1);
            }
            let delay = backoff.next_delay();
            log::info!("mqtt: reconnecting in {} ms", delay.as_millis());
            let end = Instant::now() + delay;
            while Instant::now() < end {
                self.heartbeat();
                if self.shutdown.sleep((end - Instant::now()).min(Duration::from_millis(500))) {
                    return;
                }
            }
        }
    }

    /// Runs one client until the connection ends. Returns why, and how long it had been up.
    fn drive(&mut self, client: &Client, conn: &mut Connection) -> (End, Option<Duration>) {
        let watchdog = Duration::from_secs(self.cfg.watchdog_secs);
        // A connect attempt is bounded by rumqttc's connection timeout; give it slack before the
        // watchdog calls it stuck (and never cancel a connect that is still within its timeout).
        let connect_wait = Duration::from_secs(self.cfg.connect_timeout_secs + 5);
        let mut connected_at: Option<Instant> = None;
        let mut last_rx = Instant::now();
        loop {
            self.heartbeat();
            let connected = connected_at.is_some();
            let up_for = connected_at.map(|t| t.elapsed());
            if self.shutdown.requested() {
                if connected {
                    self.say_goodbye(client, conn);
                }
                return (End::Shutdown, up_for);
            }
            let wait = if connected { Duration::from_secs(1) } else { connect_wait };
            match conn.recv_timeout(wait) {
                Ok(Ok(Event::Incoming(packet))) => {
                    last_rx = Instant::now();
                    match packet {
                        Packet::ConnAck(_) => {
                            if let Err(e) = self.on_connack(client) {
                                return (End::Lost(format!("setting up the session: {e}")), up_for);
                            }
                            connected_at = Some(Instant::now());
                        }
                        Packet::Publish(p) => self.on_downlink(&p.topic, &p.payload),
                        _ => {}
                    }
                }
                Ok(Ok(Event::Outgoing(_))) => {}
                Ok(Err(e)) => return (End::Lost(e.to_string()), connected_at.map(|t| t.elapsed())),
                Err(RecvTimeoutError::Timeout) => {
                    if !connected {
                        return (
                            End::Stalled(format!("connect to {} did not finish in {:?}", self.url.host, connect_wait)),
                            None,
                        );
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return (End::Lost("client request channel closed".into()), connected_at.map(|t| t.elapsed()))
                }
            }
            if let Some(t) = connected_at {
                if last_rx.elapsed() > watchdog {
                    return (End::Stalled(format!("nothing from the broker for {:?}", last_rx.elapsed())), Some(t.elapsed()));
                }
            }
        }
    }

    fn on_connack(&mut self, client: &Client) -> Result<(), rumqttc::ClientError> {
        let down = format!("{}/{}/down/#", scs_protocol::topics::PREFIX, self.gateway);
        client.try_subscribe(down, QoS::AtLeastOnce)?;
        client.try_publish(topic(&self.gateway, TopicKind::Status), QoS::AtLeastOnce, true, self.status(GatewayState::Online))?;
        self.metrics.connected.store(true, Ordering::Relaxed);
        log::info!(
            "mqtt: connected to {}:{} as gateway {} (boot {:016x})",
            self.url.host,
            self.url.port,
            self.gateway,
            self.boot
        );
        // Requests are sent in order, so the subscription is in place before any message that
        // could trigger a receipt.
        self.publisher.connected(Box::new(MqttSink { client: client.clone() }));
        Ok(())
    }

    fn on_downlink(&mut self, topic_name: &str, signed: &[u8]) {
        // Nothing unverified reaches the decoder, the queue or the executor: a forged receipt must not
        // delete, a forged command must not run (not even be answered "rejected").
        let payload = match self.opener.open(topic_name, signed) {
            Ok(p) => p,
            Err(e) => {
                AgentMetrics::add(&self.metrics.downlink_unverified, 1);
                log::warn!(
                    "downlink on {topic_name} ({} bytes) for gateway {} refused, not authentic: {e}",
                    signed.len(),
                    self.gateway
                );
                return;
            }
        };
        match decode_downlink(topic_name, payload) {
            Ok((t, _)) if t.gateway != self.gateway => {
                AgentMetrics::add(&self.metrics.downlink_invalid, 1);
                log::warn!("downlink for gateway {} on {topic_name} ignored (this is {})", t.gateway, self.gateway);
            }
            Ok((_, Downlink::Receipt(r))) => {
                if let Err(e) = self.publisher.on_receipt(&r) {
                    // The rows stay queued and are sent again; the cloud deduplicates.
                    log::error!("applying receipt for {} seqs: {e}", r.accepted.len());
                }
            }
            Ok((_, Downlink::Command(c))) => self.forward_to_executor(Inbound::Command(c)),
            Ok((_, Downlink::Cancel(c))) => self.forward_to_executor(Inbound::Cancel(c)),
            Err(e) => {
                AgentMetrics::add(&self.metrics.downlink_invalid, 1);
                // A broken command with a readable id is answered `rejected`, so the cloud learns why.
                if let Some(id) = self.command_id_of_invalid(topic_name, payload) {
                    log::warn!("invalid command {id} on {topic_name} for gateway {}: {e}", self.gateway);
                    return self.forward_to_executor(Inbound::Invalid { id, error: e.to_string() });
                }
                log::warn!("invalid downlink on {topic_name} ({} bytes) for gateway {}: {e}", payload.len(), self.gateway);
            }
        }
    }

    fn forward_to_executor(&mut self, dl: Inbound) {
        if self.downlink.send(dl).is_err() && !self.downlink_closed_logged {
            self.downlink_closed_logged = true;
            log::error!("command executor is not running; dropping commands for gateway {}", self.gateway);
        }
    }

    /// The id of an undecodable message on this gateway's command topic, if it has a valid one.
    fn command_id_of_invalid(&self, topic_name: &str, payload: &[u8]) -> Option<String> {
        let t = scs_protocol::topics::Topic::parse(topic_name).ok()?;
        if t.kind != TopicKind::Command || t.gateway != self.gateway {
            return None;
        }
        scs_protocol::command::peek_command_id(payload)
    }

    /// Clean shutdown: retained `offline` status, then DISCONNECT (so the broker drops the will).
    fn say_goodbye(&self, client: &Client, conn: &mut Connection) {
        let _ = client.try_publish(
            topic(&self.gateway, TopicKind::Status),
            QoS::AtLeastOnce,
            true,
            self.status(GatewayState::Offline),
        );
        let _ = client.try_disconnect();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match conn.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                    break
                }
                _ => {}
            }
        }
        log::info!("mqtt: disconnected cleanly (status offline)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000), 42);
        let d: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        // each delay lies in [base/2, base] with base 100, 200, 400, 800, 1000, 1000
        for (delay, base) in d.iter().zip([100u64, 200, 400, 800, 1000, 1000]) {
            assert!(*delay >= Duration::from_millis(base / 2) && *delay <= Duration::from_millis(base), "{delay:?} vs {base}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn tls_config_from_ca_file_and_errors() {
        install_crypto_provider();
        let dir = std::env::temp_dir().join(format!("scs-tls-{}-{}", std::process::id(), crate::clock::random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let cfg = MqttConfig { ca_file: Some(empty), ..Default::default() };
        assert!(matches!(tls_config(&cfg, &TlsPems::default(), "gw"), Err(TransportError::Ca { .. })));
        let cfg = MqttConfig { ca_file: Some(dir.join("missing.pem")), ..Default::default() };
        assert!(tls_config(&cfg, &TlsPems::default(), "gw").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
