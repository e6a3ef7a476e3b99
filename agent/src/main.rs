//! `scs-agent`: SCS Gateway edge agent. See ARCHITECTURE.md for the map.

mod broker_url;
mod cli;
mod clock;
mod collect;
mod command_registry_gen;
mod commands;
mod config;
mod context;
mod db;
mod devices;
mod enroll;
mod identity;
mod inventory;
mod logging;
mod net_probe;
mod publisher;
mod queue;
mod runner;
mod sd_notify;
mod secret;
mod self_test;
mod settings;
mod spool;
mod telemetry;
mod tls;
mod transport;
mod update;
mod upload;

use std::process::ExitCode;

use cli::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `upload-file`: spool + resumable upload of one file, for diagnostics, tests and bench.
    if args.first().map(String::as_str) == Some("upload-file") {
        return ExitCode::from(upload::cli::main(args.get(1..).unwrap_or_default()) as u8);
    }
    let cmd = match cli::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scs-agent: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Run(o) => match runner::run(&o) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("{e}");
                eprintln!("scs-agent: {e}");
                ExitCode::FAILURE
            }
        },
        Command::PrintConfig(o) => match config::load_with_identity(&o) {
            Ok((cfg, _, _)) => {
                print!("{}", config::redacted_toml(&cfg));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("scs-agent: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Provision { bundle, data_dir } => match identity::provision(&bundle, &data_dir) {
            Ok(id) => {
                println!(
                    "scs-agent: installed the identity of gateway {} in {} (broker {}, api {})",
                    id.gateway_id,
                    identity::path_in(&data_dir).display(),
                    id.broker_url,
                    id.api_url
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("scs-agent: provision refused: {e}");
                ExitCode::FAILURE
            }
        },
        Command::SelfTest => self_test::run(),
        Command::Version => {
            println!("scs-agent {}", inventory::AGENT_VERSION);
            ExitCode::SUCCESS
        }
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
    }
}
