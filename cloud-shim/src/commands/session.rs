//! Command sessions (the platform's per-gateway Durable Object role): one task that publishes each
//! gateway's queued commands in creation order while the gateway is online, holds them while it is
//! offline, re-sends unacknowledged ones when it reconnects, forwards cancels, and expires commands
//! that never got out. All state is in the store, so a restarted shim picks up where it stopped.
//!
//! One task for all gateways keeps per-gateway order trivially (every publish for a gateway goes
//! through the same MQTT client queue in sequence); the work per command is one small transaction
//! and one publish, far below what a site's gateways generate.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use scs_protocol::registry::find;
use scs_protocol::topics::topic;
use scs_protocol::{encode, CommandCancel, CommandRequest, TopicKind, UploadGrant, PROTOCOL_VERSION};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::store::{self, CommandRow, CommandStoreError};
use super::value_json::json_to_value;
use crate::clock::now_ms;
use crate::command_registry_gen::COMMANDS;
use crate::presence::{GatewayEvent, Presence};
use crate::store::Store;

/// How often queued commands are checked for expiry (and online gateways for anything missed).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Work for the session task.
#[derive(Debug)]
pub enum Kick {
    /// New commands for this gateway: publish if it is online.
    Gateway(String),
    /// A cancel was requested for a command on this gateway.
    Cancel { gateway: String, id: String },
}

/// Handle the API uses to wake the session task. Clone is cheap.
#[derive(Clone)]
pub struct Sessions {
    tx: mpsc::UnboundedSender<Kick>,
}

pub struct SessionsRx(mpsc::UnboundedReceiver<Kick>);

impl Sessions {
    pub fn new() -> (Sessions, SessionsRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Sessions { tx }, SessionsRx(rx))
    }

    pub fn kick(&self, k: Kick) {
        // The task lives as long as the process; if it is gone, the sweep of the next shim start delivers.
        if self.tx.send(k).is_err() {
            log::error!("command session task is not running");
        }
    }
}

/// Mints an upload grant for an artifact of a command, valid for the given time.
pub type GrantMinter = Arc<dyn Fn(&str, Duration) -> UploadGrant + Send + Sync>;

/// What the session task works with, and nothing more.
#[derive(Clone)]
pub struct SessionHandles {
    /// The database holding the commands (see `commands::store`).
    pub store: Store,
    /// Publishes commands and cancels to the broker.
    pub mqtt: AsyncClient,
    /// Which gateways are online now.
    pub presence: Arc<Presence>,
    /// Upload grants for artifact-producing commands (the artifact service's, in the running shim).
    pub grants: GrantMinter,
    /// Signs commands and cancels with the cloud key.
    pub signer: crate::identity::Signer,
}

/// Starts the session task. Pass a receiver subscribed before the MQTT bridge starts, so no status is
/// missed.
pub fn start(state: SessionHandles, events: broadcast::Receiver<GatewayEvent>, rx: SessionsRx) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(state, rx.0, events))
}

async fn run(state: SessionHandles, mut rx: mpsc::UnboundedReceiver<Kick>, mut events: broadcast::Receiver<GatewayEvent>) {
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // After a shim restart the gateways' retained status may have arrived before anything listened:
    // the first sweep re-sends everything open for gateways known to be online.
    let mut first_sweep = true;
    loop {
        tokio::select! {
            k = rx.recv() => match k {
                Some(Kick::Gateway(gw)) => deliver(&state, &gw, false).await,
                Some(Kick::Cancel { gateway, id }) => send_cancel(&state, &gateway, &id).await,
                None => break,
            },
            ev = events.recv() => match ev {
                Ok(GatewayEvent::Online(gw)) => deliver(&state, &gw, true).await,
                Ok(GatewayEvent::Offline(gw)) => log::debug!("gateway {gw} offline: holding its commands"),
                Err(RecvError::Lagged(n)) => {
                    log::warn!("command sessions missed {n} gateway events; re-sending open commands");
                    resend_all_online(&state).await;
                }
                Err(RecvError::Closed) => break,
            },
            _ = sweep.tick() => {
                expire(&state).await;
                if first_sweep {
                    first_sweep = false;
                    resend_all_online(&state).await;
                }
            }
        }
    }
    log::info!("command session task stopped");
}

async fn resend_all_online(state: &SessionHandles) {
    let now = now_ms();
    let gateways = match state.store.call(move |c| store::gateways_with_open_commands(c, now)).await {
        Ok(g) => g,
        Err(e) => return log::error!("command sessions: {e}"),
    };
    for gw in gateways {
        deliver(state, &gw, true).await;
    }
}

async fn expire(state: &SessionHandles) {
    let now = now_ms();
    match state.store.call(move |c| store::expire_due(c, now)).await {
        Ok(rows) => {
            for r in rows {
                log::info!("command {} ({}) for {} expired undelivered", r.id, r.command_type, r.gateway_id);
            }
        }
        Err(e) => log::error!("command expiry sweep: {e}"),
    }
}

/// Upload permission for a command whose registry entry produces an artifact, valid until the
/// command could still be running.
fn upload_grant(state: &SessionHandles, row: &CommandRow) -> Option<UploadGrant> {
    let spec = find(COMMANDS, &row.command_type)?;
    if !spec.artifact {
        return None;
    }
    let horizon_ms = (row.expires_at - now_ms()).max(0) as u64 + u64::from(row.timeout_secs) * 1000;
    Some((state.grants)(&row.id, Duration::from_millis(horizon_ms) + Duration::from_secs(600)))
}

fn request_for(state: &SessionHandles, row: &CommandRow) -> CommandRequest {
    CommandRequest {
        v: PROTOCOL_VERSION,
        id: row.id.clone(),
        command_type: row.command_type.clone(),
        params: json_to_value(&row.params),
        issued: row.created_at.max(0) as u64,
        expires: row.expires_at.max(0) as u64,
        timeout_secs: row.timeout_secs,
        confirm: row.confirm,
        upload: upload_grant(state, row),
        requested_by: Some(row.requested_by.chars().take(64).collect()),
        target: row.target.clone(),
    }
}

/// Publishes the gateway's open commands in creation order (with `resend`, also the delivered but
/// unacknowledged ones), then any pending cancels. Does nothing while the gateway is offline.
pub async fn deliver(state: &SessionHandles, gateway: &str, resend: bool) {
    if !state.presence.is_online(gateway) {
        return;
    }
    let gw = gateway.to_owned();
    let now = now_ms();
    let rows = match state.store.call(move |c| store::pending_for(c, &gw, resend, now)).await {
        Ok(r) => r,
        Err(e) => return log::error!("command session for {gateway}: {e}"),
    };
    let t = topic(gateway, TopicKind::Command);
    for row in rows {
        // Signed and bound to this gateway's command topic: the agent runs nothing else.
        let payload = state.signer.sign(&t, &encode(&request_for(state, &row)));
        let id = row.id.clone();
        // Marked first so the audit trail reads queued → delivered → accepted even when the agent
        // answers faster than this task.
        let marked = state.store.call(move |c| store::mark_delivered(c, &id, now_ms())).await;
        if let Err(e) = marked {
            log::error!("command {}: {e}", row.id);
            continue;
        }
        if let Err(e) = state.mqtt.publish(t.clone(), QoS::AtLeastOnce, false, payload).await {
            log::error!("command {} for {gateway}: publish failed: {e}", row.id);
            let id = row.id.clone();
            let why = format!("publish failed: {e}");
            let _ = state.store.call(move |c| store::unmark_delivered(c, &id, now_ms(), &why)).await.map_err(log_err);
            return;
        }
        log::info!("command {} ({}) published to {gateway}", row.id, row.command_type);
    }
    if resend {
        let gw = gateway.to_owned();
        match state.store.call(move |c| store::pending_cancels(c, &gw)).await {
            Ok(rows) => {
                for r in rows {
                    publish_cancel(state, gateway, &r.id).await;
                }
            }
            Err(e) => log::error!("command session for {gateway}: {e}"),
        }
    }
}

fn log_err(e: CommandStoreError) {
    log::error!("command session: {e}");
}

async fn send_cancel(state: &SessionHandles, gateway: &str, id: &str) {
    if state.presence.is_online(gateway) {
        publish_cancel(state, gateway, id).await;
    }
}

async fn publish_cancel(state: &SessionHandles, gateway: &str, id: &str) {
    let msg = CommandCancel { v: PROTOCOL_VERSION, id: id.to_owned() };
    let t = topic(gateway, TopicKind::Cancel);
    let signed = state.signer.sign(&t, &encode(&msg));
    match state.mqtt.publish(t, QoS::AtLeastOnce, false, signed).await {
        Ok(()) => log::info!("cancel of command {id} published to {gateway}"),
        Err(e) => log::error!("cancel of command {id} for {gateway}: publish failed: {e}"),
    }
}
