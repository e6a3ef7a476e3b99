//! The embedded MQTT broker: rumqttd in-process, configured in code, MQTT 3.1.1 on one listener.
//! rumqttd supports `$share/{group}/...` shared subscriptions (round robin), retained messages and
//! Last Will, which is all the agent and the bridge use.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings, Strategy};
use thiserror::Error;

use crate::broker_sockets;

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

fn config(listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PAYLOAD,
        max_inflight_count: 256,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
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
pub fn start(listen: SocketAddr) -> Result<(), BrokerError> {
    // rumqttd binds inside its thread and only logs a failure; bind once here so a taken port is a
    // start-up error with a clear message instead of a shim that never becomes ready.
    drop(std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Bind { addr: listen, source })?);
    let mut broker = Broker::new(config(listen));
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
