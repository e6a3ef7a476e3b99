//! `scs-cloud-shim`: the SCS cloud in one process — embedded MQTT broker (or an external one), ingest
//! into a D1-schema SQLite store (or a Worker), and the HTTP API. See ARCHITECTURE.md.

mod api;
mod bridge;
mod broker;
mod commands;
mod config;
mod ingest;
mod random;
mod rejection;
mod state;
mod stats;
mod store;

use std::process::ExitCode;
use std::sync::Arc;

use thiserror::Error;

use crate::config::{BrokerMode, ConfigError, ServeConfig, USAGE};
use crate::state::{AppState, Health, Presence};
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
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => {}
        Some("version" | "--version" | "-V") => {
            println!("scs-cloud-shim {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprint!("{USAGE}");
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
    if let BrokerMode::Embedded(addr) = config.broker {
        broker::start(addr)?;
    }
    let http = tokio::net::TcpListener::bind(config.http).await.map_err(|source| ServeError::Http { addr: config.http, source })?;
    let (mqtt, eventloop) = bridge::client(&config);
    let stats = Arc::new(Stats::default());
    let backend: Box<dyn ingest::Backend> = match &config.worker_url {
        Some(url) => {
            let worker_token = std::env::var("SCS_WORKER_TOKEN").ok().filter(|t| !t.is_empty()).unwrap_or_else(|| token.clone());
            log::info!("ingest forwards to the Worker at {url}");
            Box::new(store::worker::WorkerBackend::new(url, &worker_token))
        }
        None => Box::new(store::sqlite_ingest::SqliteIngest::new(store.connect()?)),
    };
    let ingest = ingest::start(backend, Some(mqtt.clone()), stats.clone())?;
    let (events, _) = tokio::sync::broadcast::channel(1024);
    let state = AppState {
        store,
        config: Arc::new(config.clone()),
        mqtt: mqtt.clone(),
        events: events.clone(),
        ingest: ingest.clone(),
        stats,
        presence: Arc::new(Presence::default()),
        health: Arc::new(Health::default()),
        api_token: token.into(),
    };
    let bridge = bridge::Bridge {
        client: mqtt,
        ingest,
        events,
        presence: state.presence.clone(),
        health: state.health.clone(),
        filters: bridge::filters(config.share_group.as_deref()),
    };
    tokio::spawn(bridge.run(eventloop));
    log::info!("HTTP API on http://{}", http.local_addr()?);
    let app = api::router(state);
    axum::serve(http, app).with_graceful_shutdown(shutdown_signal()).await?;
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
