//! The downlink in `--worker-url` mode: commands and cancels come from each gateway's Durable Object in
//! the Worker, already signed with the cloud key there, and this shim publishes them unchanged to the
//! gateway's MQTT topics. The shim holds no command state and needs no signing key for them.
//!
//! While a gateway is online (a status this shim verified), one task long-polls
//! `POST {worker}/v1/gateways/{id}/downlink?bridge=&resend=&wait=` and publishes what comes back (QoS 1);
//! it stops when the gateway goes offline. `bridge` names this shim process (the Worker hands a gateway's
//! commands to one bridge at a time, so several shims publish each command once); `resend` names the
//! gateway's connection (`boot:ts` of its status), on which the Worker re-sends unacknowledged commands
//! once. Command updates come back the uplink way, through ingest. See `docs/protocol.md`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use scs_protocol::topics::topic;
use scs_protocol::TopicKind;
use thiserror::Error;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::ingest::worker::{http_agent, WorkerError};
use crate::presence::{GatewayEvent, Presence};
use scs_protocol::http_ingest::{decode_batch, BatchError};

/// How long the Worker may hold a poll open; the HTTP timeout allows for it.
const WAIT_SECS: u64 = 20;
const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum DownlinkError {
    #[error("downlink of {gateway}: {source}")]
    Transport { gateway: String, source: ureq::Error },
    #[error("downlink of {gateway}: worker answered HTTP {status}: {body}")]
    Status { gateway: String, status: u16, body: String },
    #[error("downlink of {gateway}: {source}")]
    Body { gateway: String, source: BatchError },
    #[error("downlink of {gateway}: the worker sent a message for topic {topic:?}")]
    ForeignTopic { gateway: String, topic: String },
}

/// What the downlink tasks share.
#[derive(Clone)]
pub struct Downlink {
    agent: ureq::Agent,
    base: String,
    auth: String,
    bridge: String,
    mqtt: AsyncClient,
    presence: Arc<Presence>,
}

impl Downlink {
    pub fn new(
        base: &str,
        token: &str,
        ca: Option<&Path>,
        mqtt: AsyncClient,
        presence: Arc<Presence>,
    ) -> Result<Downlink, WorkerError> {
        Ok(Downlink {
            agent: http_agent(ca, Duration::from_secs(WAIT_SECS + 30))?,
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {token}"),
            bridge: format!("shim-{}-{}", std::process::id(), crate::random::random_hex(6)),
            mqtt,
            presence,
        })
    }

    /// One long-poll: the messages to publish, each checked to be a downlink of this gateway.
    fn poll(&self, gateway: &str, connection: &str) -> Result<Vec<(String, Vec<u8>)>, DownlinkError> {
        let url = format!("{}/v1/gateways/{gateway}/downlink", self.base);
        let mut resp = self
            .agent
            .post(&url)
            .query("bridge", &self.bridge)
            .query("resend", connection)
            .query("wait", WAIT_SECS.to_string())
            .header("Authorization", &self.auth)
            .send_empty()
            .map_err(|source| DownlinkError::Transport { gateway: gateway.to_owned(), source })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|source| DownlinkError::Transport { gateway: gateway.to_owned(), source })?;
        if status != 200 {
            let body = String::from_utf8_lossy(&bytes).chars().take(300).collect();
            return Err(DownlinkError::Status { gateway: gateway.to_owned(), status, body });
        }
        let messages = decode_batch(&bytes).map_err(|source| DownlinkError::Body { gateway: gateway.to_owned(), source })?;
        let allowed = [topic(gateway, TopicKind::Command), topic(gateway, TopicKind::Cancel)];
        if let Some((t, _)) = messages.iter().find(|(t, _)| !allowed.contains(t)) {
            return Err(DownlinkError::ForeignTopic { gateway: gateway.to_owned(), topic: t.clone() });
        }
        Ok(messages)
    }

    /// Polls for `gateway` while it is online.
    async fn run_gateway(self, gateway: String) {
        let mut backoff = Duration::from_millis(200);
        while let Some(p) = self.presence.get(&gateway).filter(|p| p.online) {
            let connection = format!("{}:{}", p.boot, p.ts);
            let (me, gw) = (self.clone(), gateway.clone());
            let polled = tokio::task::spawn_blocking(move || me.poll(&gw, &connection)).await;
            match polled {
                Ok(Ok(messages)) => {
                    backoff = Duration::from_millis(200);
                    for (t, payload) in messages {
                        if let Err(e) = self.mqtt.publish(t.clone(), QoS::AtLeastOnce, false, payload).await {
                            log::error!("downlink {t}: publish failed: {e}");
                        } else {
                            log::info!("downlink {t} published");
                        }
                    }
                }
                Ok(Err(e)) => {
                    log::warn!("{e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    log::error!("downlink poll task of {gateway}: {e}");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
        log::debug!("gateway {gateway} offline: downlink poll stopped");
    }
}

/// Starts the downlink: a poll task per online gateway. Pass a receiver subscribed before the bridge
/// starts, so no status is missed.
pub fn start(downlink: Downlink, mut events: broadcast::Receiver<GatewayEvent>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
        loop {
            let online = match events.recv().await {
                Ok(GatewayEvent::Online(gw)) => vec![gw],
                Ok(GatewayEvent::Offline(_)) => continue,
                Err(RecvError::Lagged(n)) => {
                    log::warn!("downlink missed {n} gateway events; polling every online gateway");
                    downlink.presence.online()
                }
                Err(RecvError::Closed) => break,
            };
            tasks.retain(|_, t| !t.is_finished());
            for gw in online {
                if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(gw) {
                    let gw = slot.key().clone();
                    slot.insert(tokio::spawn(downlink.clone().run_gateway(gw)));
                }
            }
        }
    })
}
