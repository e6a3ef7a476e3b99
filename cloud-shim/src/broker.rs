//! The embedded MQTT broker: rumqttd in-process, configured in code, MQTT 3.1.1 on one listener.
//! rumqttd supports `$share/{group}/...` shared subscriptions (round robin), retained messages and
//! Last Will, which is all the agent and the bridge use.
//!
//! Every client authenticates (rumqttd's external auth hook, see [`authenticate`]): gateways with their
//! id as username and their provisioned MQTT password, under a client id bound to that gateway; the
//! shim's own bridge as `scs-shim` with the secret in `{data_dir}/keys/`. rumqttd 0.20 has no topic ACL:
//! what an authenticated gateway can still do is stated in docs/protocol.md ("Security") and why the
//! message signatures make it harmless.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, Strategy};
use thiserror::Error;

use crate::broker_sockets;
use crate::identity::keys::{password_sha256, SHIM_MQTT_USER};
use crate::identity::Registry;

/// Largest publish the broker accepts. Above the protocol's 256 KiB uplink limit on purpose: slightly
/// oversized messages reach the shim, which rejects and counts them per gateway.
pub const MAX_PAYLOAD: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
}

/// Who may connect: the gateway registry (read live) and the shim's own secret.
#[derive(Clone)]
pub struct BrokerAuth {
    pub registry: Registry,
    pub shim_secret: String,
}

/// Prefix of the shim bridge's client ids (`scs-shim-{pid}-{random}`).
pub const SHIM_CLIENT_PREFIX: &str = "scs-shim-";

/// Why a connection was refused (for the log; never includes the password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    UnknownGateway,
    Revoked,
    WrongPassword,
    ClientIdNotBound,
}

/// The authentication decision for one CONNECT. Gateways: username = gateway id, password hashes to the
/// stored SHA-256, client id `scs-agent-{gateway}` or the gateway id itself (so no client can take
/// over another gateway's session, which would disconnect the real one). The shim: username `scs-shim`,
/// its secret, client id `scs-shim-...`.
pub fn authenticate(auth: &BrokerAuth, client_id: &str, username: &str, password: &str) -> Result<(), AuthRefusal> {
    if username == SHIM_MQTT_USER {
        if !constant_time_eq(password.as_bytes(), auth.shim_secret.as_bytes()) {
            return Err(AuthRefusal::WrongPassword);
        }
        return if client_id.starts_with(SHIM_CLIENT_PREFIX) { Ok(()) } else { Err(AuthRefusal::ClientIdNotBound) };
    }
    let entry = auth.registry.lookup(username).ok_or(AuthRefusal::UnknownGateway)?;
    if !entry.active {
        return Err(AuthRefusal::Revoked);
    }
    if !constant_time_eq(password_sha256(password).as_bytes(), entry.mqtt_password_sha256.as_bytes()) {
        return Err(AuthRefusal::WrongPassword);
    }
    let bound = client_id == username || client_id.strip_prefix("scs-agent-") == Some(username);
    if !bound {
        return Err(AuthRefusal::ClientIdNotBound);
    }
    Ok(())
}

/// Equality whose time does not depend on where the inputs differ (the lengths are not secret here:
/// both sides are fixed-length encodings).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn config(listen: SocketAddr, auth: BrokerAuth) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 256,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let refusals = std::sync::Arc::new(std::sync::Mutex::new(crate::stats::LogThrottle::new(20, Duration::from_secs(60))));
    connections.set_auth_handler(move |client_id: String, username: String, password: String| {
        let auth = auth.clone();
        let refusals = refusals.clone();
        async move {
            match authenticate(&auth, &client_id, &username, &password) {
                Ok(()) => true,
                Err(why) => {
                    if refusals.lock().map(|mut t| t.allow()).unwrap_or(false) {
                        log::warn!("MQTT connection refused: {why:?} (client id {client_id:.80}, username {username:.80})");
                    }
                    false
                }
            }
        }
    });
    let server = ServerSettings { name: "scs-mqtt".into(), listen, tls: None, next_connection_delay_ms: 0, connections };
    let router = RouterConfig {
        max_connections: 10_010,
        max_outgoing_packet_count: 256,
        // In-memory log per subscription filter: segment size x count bounds the memory a busy filter
        // holds (a segment must fit the largest payload).
        max_segment_size: 4 * MAX_PAYLOAD,
        max_segment_count: 4,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Strategy::RoundRobin,
    };
    Config { id: 0, router, v4: Some(HashMap::from([("1".to_owned(), server)])), ..Config::default() }
}

/// How long `start` waits for rumqttd to bind before giving up on TCP_NODELAY (it normally takes a few ms).
const LISTENER_WAIT: Duration = Duration::from_secs(2);

/// Starts the broker on `listen` in its own threads. Returns once rumqttd's listener exists and has
/// TCP_NODELAY (or a warning said why not); the bridge's first connection proves it is serving.
pub fn start(listen: SocketAddr, auth: BrokerAuth) -> Result<(), BrokerError> {
    // rumqttd binds inside its thread and only logs a failure; bind once here so a taken port is a
    // start-up error with a clear message instead of a shim that never becomes ready.
    drop(std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Bind { addr: listen, source })?);
    let mut broker = Broker::new(config(listen, auth));
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                log::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;
    log::info!("embedded MQTT broker listening on {listen}");
    // rumqttd leaves Nagle on for its clients, which adds a delayed ACK (~40 ms) to every command hop.
    // Setting the option before the bridge connects means every broker connection has it.
    match broker_sockets::disable_nagle(listen.port(), LISTENER_WAIT) {
        Ok(r) => log::info!(
            "embedded MQTT broker: TCP_NODELAY set on its listening socket, inherited by the connections it \
             accepts ({} accepted earlier set directly)",
            r.already_accepted
        ),
        Err(e) => log::warn!("embedded MQTT broker keeps Nagle on (~40 ms extra per command hop): {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::registry::add;
    use crate::store::test_support::TestDir;
    use crate::store::Store;

    #[test]
    fn only_provisioned_active_gateways_with_their_password_and_client_id() {
        let dir = TestDir::new("broker-auth");
        let store = Store::open(dir.path()).unwrap();
        let mut c = store.connect().unwrap();
        add(&mut c, "gw-1", &[1; 32], &password_sha256("pw-1"), 1, 10).unwrap();
        add(&mut c, "gw-2", &[2; 32], &password_sha256("pw-2"), 1, 10).unwrap();
        let auth = BrokerAuth { registry: Registry::open(store.path()).unwrap(), shim_secret: "shim-secret".into() };
        assert_eq!(authenticate(&auth, "scs-agent-gw-1", "gw-1", "pw-1"), Ok(()));
        assert_eq!(authenticate(&auth, "gw-1", "gw-1", "pw-1"), Ok(()));
        assert_eq!(authenticate(&auth, "scs-agent-gw-1", "gw-1", "pw-2"), Err(AuthRefusal::WrongPassword));
        assert_eq!(authenticate(&auth, "scs-agent-gw-1", "gw-1", ""), Err(AuthRefusal::WrongPassword));
        // A valid gateway cannot take another gateway's client id (which would disconnect it).
        assert_eq!(authenticate(&auth, "scs-agent-gw-1", "gw-2", "pw-2"), Err(AuthRefusal::ClientIdNotBound));
        assert_eq!(authenticate(&auth, "scs-shim-1", "gw-2", "pw-2"), Err(AuthRefusal::ClientIdNotBound));
        assert_eq!(authenticate(&auth, "x", "nobody", "pw"), Err(AuthRefusal::UnknownGateway));
        assert_eq!(authenticate(&auth, "scs-shim-1", SHIM_MQTT_USER, "shim-secret"), Ok(()));
        assert_eq!(authenticate(&auth, "scs-agent-gw-1", SHIM_MQTT_USER, "shim-secret"), Err(AuthRefusal::ClientIdNotBound));
        assert_eq!(authenticate(&auth, "scs-shim-1", SHIM_MQTT_USER, "nope"), Err(AuthRefusal::WrongPassword));
        crate::identity::registry::revoke(&c, "gw-1", 2).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(authenticate(&auth, "scs-agent-gw-1", "gw-1", "pw-1"), Err(AuthRefusal::Revoked));
    }
}
