//! `scs-cloud-shim`: the SCS cloud in one process — embedded MQTT broker (or an external one), ingest
//! into a D1-schema SQLite store (or a Worker), and the HTTP API. See ARCHITECTURE.md.

mod access;
mod api;
mod artifacts;
mod bridge;
mod broker;
mod broker_sockets;
mod clock;
mod command_registry_gen;
mod commands;
mod config;
mod downlink;
mod http_error;
mod identity;
mod ingest;
mod objects;
mod presence;
mod random;
mod rejection;
mod releases;
mod state;
mod stats;
mod store;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;

use thiserror::Error;

use crate::config::{BrokerMode, ConfigError, ServeConfig, USAGE};
use crate::presence::Presence;
use crate::state::{AppState, Health};
use crate::stats::Stats;
use crate::store::Store;

#[derive(Debug, Error)]
enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Worker(#[from] ingest::worker::WorkerError),
    #[error(transparent)]
    Bridge(#[from] bridge::BridgeError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("artifacts: {0}")]
    Artifacts(#[from] artifacts::ArtifactError),
    #[error("the ingest pipeline stopped; exiting so the shim is restarted")]
    IngestStopped,
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {}
        Some(cmd @ ("gateways" | "mosquitto-config" | "enroll-tokens")) => {
            let rest = args.get(1..).unwrap_or_default();
            let result = match cmd {
                "gateways" => identity::cli::gateways(rest),
                "enroll-tokens" => identity::cli::enroll_tokens(rest),
                _ => identity::cli::mosquitto_config(rest),
            };
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ identity::cli::CliError::Usage(_)) => {
                    eprintln!("scs-cloud-shim {cmd}: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("scs-cloud-shim {cmd}: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some("releases") => {
            return match releases::cli::releases(args.get(1..).unwrap_or_default()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e @ (releases::cli::ReleasesCliError::Usage(_) | releases::cli::ReleasesCliError::Args(_))) => {
                    eprintln!("scs-cloud-shim releases: {e}");
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("scs-cloud-shim releases: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Some("tokens") => return api::tokens::cli(&args[1..]),
        Some("version" | "--version" | "-V") => {
            println!("scs-cloud-shim {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}{}{}", identity::cli::USAGE, releases::cli::USAGE);
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}{}{}", identity::cli::USAGE, releases::cli::USAGE);
            return ExitCode::from(2);
        }
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // rumqttd logs routine events (even at error level) through tracing; keep them out unless RUST_LOG
    // names rumqttd explicitly (later directives for the same module win).
    env_logger::Builder::new()
        .filter_module("rumqttd", log::LevelFilter::Off)
        .filter_module("tracing", log::LevelFilter::Off)
        .parse_env(env_logger::Env::default().default_filter_or("info"))
        // Milliseconds, as the agent logs: a command's hops are milliseconds apart.
        .format_timestamp_millis()
        .init();
    let config = match ServeConfig::parse(&args[1..]) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scs-cloud-shim: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("shim").build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scs-cloud-shim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("scs-cloud-shim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The API token from SCS_API_TOKEN, or a generated one printed once so the operator can use it.
fn api_token() -> String {
    match std::env::var("SCS_API_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = random::random_hex(24);
            println!("SCS_API_TOKEN is not set; generated API token for this run: {t}");
            log::warn!("SCS_API_TOKEN is not set; using a generated token (printed on stdout)");
            t
        }
    }
}

async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    let token = api_token();
    let store = Store::open(&config.data_dir)?;
    log::info!("store {}", store.path().display());
    let registry = identity::Registry::open(store.path())?;
    let signer = identity::Signer::new(identity::keys::cloud_signing_key(&config.data_dir)?);
    let shim_secret = identity::keys::shim_mqtt_secret(&config.data_dir)?;
    log::info!("{} gateways provisioned", registry.len());
    if let BrokerMode::Embedded(addr) = config.broker {
        broker::start(addr, broker::BrokerAuth { registry: registry.clone(), shim_secret: shim_secret.clone() })?;
    }
    let http =
        tokio::net::TcpListener::bind(config.http).await.map_err(|source| ServeError::Http { addr: config.http, source })?;
    let (mqtt, eventloop) = bridge::client(&config, &shim_secret)?;
    let stats = Arc::new(Stats::default());
    let worker_token = std::env::var("SCS_WORKER_TOKEN").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| token.clone());
    let backend: Box<dyn ingest::Backend> = match &config.worker_url {
        Some(url) => {
            log::info!("ingest forwards to the Worker at {url}");
            Box::new(ingest::worker::WorkerBackend::new(url, &worker_token, config.worker_ca.as_deref())?)
        }
        None => Box::new(ingest::sqlite::SqliteIngest::new(
            store.connect()?,
            ingest::sqlite::Limits { max_children: config.max_children },
        )),
    };
    let receipts = ingest::ReceiptSender { client: mqtt.clone(), signer: signer.clone() };
    let ingest = ingest::start(backend, Some(receipts), stats.clone(), registry.clone())?;
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load_server_config(cert, key)?),
        _ => None,
    };
    // URLs handed to gateways and clients use --public-url when set (reverse proxy), else the address
    // this shim listens on.
    let public_url = config.public_url.clone().unwrap_or_else(|| {
        let scheme = if tls.is_some() { "https" } else { "http" };
        if config.http.ip().is_unspecified() {
            log::warn!("--http {} without --public-url: upload and download URLs will name an unroutable address", config.http);
        }
        format!("{scheme}://{}", config.http)
    });
    // `gateways add` puts these in bundles by default.
    let broker_url = match &config.broker {
        BrokerMode::Embedded(_) => {
            let (host, port) = config.mqtt_target();
            format!("mqtt://{host}:{port}")
        }
        BrokerMode::External { host, port, tls } => format!("{}://{host}:{port}", if *tls { "mqtts" } else { "mqtt" }),
    };
    identity::endpoints::Endpoints { broker_url, api_url: public_url.clone(), max_gateways: config.max_gateways }
        .write(&config.data_dir)?;
    let artifacts_cfg = artifacts::ArtifactsConfig::new(&config.data_dir, &public_url);
    let artifacts = artifacts::Artifacts::open(artifacts_cfg)?;
    let (command_sessions, command_sessions_rx) = commands::Sessions::new();
    let state = AppState {
        store,
        config: Arc::new(config.clone()),
        ingest: ingest.clone(),
        stats,
        presence: Arc::new(Presence::default()),
        health: Arc::new(Health::default()),
        api_token: token.into(),
        artifacts,
        commands: command_sessions,
    };
    let session_handles = commands::session::SessionHandles {
        store: state.store.clone(),
        mqtt: mqtt.clone(),
        presence: state.presence.clone(),
        grants: {
            let artifacts = state.artifacts.clone();
            Arc::new(move |command_id: &str, valid_for| artifacts.mint_upload_grant(command_id, valid_for))
        },
        signer,
    };
    // Subscribes to gateway events before the bridge can fire any.
    commands::session::start(session_handles, events.subscribe(), command_sessions_rx);
    if let Some(url) = &config.worker_url {
        // Commands created at the Worker arrive signed from its Durable Objects; this shim publishes them.
        let dl = downlink::Downlink::new(url, &worker_token, config.worker_ca.as_deref(), mqtt.clone(), state.presence.clone())?;
        downlink::start(dl, events.subscribe());
    }
    let bridge = bridge::Bridge {
        client: mqtt,
        ingest,
        events,
        presence: state.presence.clone(),
        health: state.health.clone(),
        stats: state.stats.clone(),
        filters: bridge::filters(config.share_group.as_deref()),
        registry,
    };
    // The bridge returns only if ingest died; then stop serving and exit non-zero so the supervisor
    // restarts the shim instead of keeping one that answers HTTP but stores nothing.
    let bridge_task = tokio::spawn(bridge.run(eventloop));
    let ingest_died = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let died = ingest_died.clone();
    let stop = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = bridge_task => died.store(true, std::sync::atomic::Ordering::SeqCst),
        }
    };
    let app = api::router(state);
    match tls {
        Some(tls_cfg) => {
            log::info!("HTTP API on https://{}", http.local_addr()?);
            axum::serve(tls::TlsListener::new(http, tls_cfg)?, app).with_graceful_shutdown(stop).await?;
        }
        None => {
            log::info!("HTTP API on http://{}", http.local_addr()?);
            axum::serve(http, app).with_graceful_shutdown(stop).await?;
        }
    }
    if ingest_died.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ServeError::IngestStopped);
    }
    log::info!("shut down");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
