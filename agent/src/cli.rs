//! Command line: `scs-agent run|self-test|version|print-config [flags]`. Hand-rolled: a handful of
//! flags does not justify an argument-parsing crate in a 3 MB binary.

use std::path::PathBuf;

use crate::config::Overrides;

pub const USAGE: &str = "\
usage: scs-agent <command> [flags]

commands:
  run            collect telemetry and publish it (default config /etc/scs/agent.toml); the gateway id,
                 broker, credentials and keys come from {data-dir}/identity.toml
  provision BUNDLE --data-dir DIR
                 check a provisioning bundle (from `scs-cloud-shim gateways add`) and install it as
                 DIR/identity.toml (DIR mode 0700, file 0600)
  self-test      check SQLite, CBOR, TLS crypto and the config parser; prints \"N passed, N failed\"
  print-config   print the effective configuration (secrets redacted) and exit
  version        print the agent version

flags (run, print-config; they override the config file):
  --config FILE          config file (default /etc/scs/agent.toml; missing default = built-in defaults)
  --gateway-id ID        gateway identity
  --broker URL           mqtt://HOST:PORT or mqtts://HOST:PORT
  --ca-file FILE         CA certificate(s) for mqtts://
  --data-dir DIR         queue database, logs and spool
  --interval-secs N      telemetry interval
  --api-url URL          cloud HTTP API base URL (artifact uploads)
  --log-level FILTER     e.g. info, debug, scs_agent=debug (RUST_LOG overrides)
  --enroll-file FILE     first-boot enrollment file (default /etc/scs/enroll.toml): with no identity.toml,
                         `run` enrolls with its token first (key pair made here, identity from the cloud)
  --insecure-no-identity run without identity.toml: unsigned messages, unverified commands and
                         receipts (development only; never on a real network)
";

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Overrides),
    SelfTest,
    Version,
    PrintConfig(Overrides),
    Provision { bundle: PathBuf, data_dir: PathBuf },
    Help,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CliError {
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("unknown flag {0:?}")]
    UnknownFlag(String),
    #[error("flag {0} needs a value")]
    MissingValue(String),
    #[error("flag {flag}: {reason}")]
    BadValue { flag: String, reason: String },
}

pub fn parse(args: &[String]) -> Result<Command, CliError> {
    let Some((cmd, rest)) = args.split_first() else { return Ok(Command::Help) };
    match cmd.as_str() {
        "run" => Ok(Command::Run(parse_flags(rest)?)),
        "print-config" => Ok(Command::PrintConfig(parse_flags(rest)?)),
        "provision" => parse_provision(rest),
        "self-test" => Ok(Command::SelfTest),
        "version" | "--version" | "-V" => Ok(Command::Version),
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => Err(CliError::UnknownCommand(other.to_owned())),
    }
}

fn parse_provision(args: &[String]) -> Result<Command, CliError> {
    let mut bundle = None;
    let mut data_dir = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(v) = arg.strip_prefix("--data-dir=") {
            data_dir = Some(PathBuf::from(v));
        } else if arg == "--data-dir" {
            data_dir = Some(PathBuf::from(it.next().ok_or_else(|| CliError::MissingValue(arg.clone()))?));
        } else if arg.starts_with("--") || bundle.is_some() {
            return Err(CliError::UnknownFlag(arg.clone()));
        } else {
            bundle = Some(PathBuf::from(arg));
        }
    }
    let bundle = bundle.ok_or_else(|| CliError::MissingValue("provision BUNDLE".into()))?;
    let data_dir = data_dir.ok_or_else(|| CliError::MissingValue("--data-dir".into()))?;
    Ok(Command::Provision { bundle, data_dir })
}

fn parse_flags(args: &[String]) -> Result<Overrides, CliError> {
    let mut o = Overrides::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "--insecure-no-identity" && inline.is_none() {
            o.insecure_no_identity = true;
            continue;
        }
        let known = [
            "--config",
            "--gateway-id",
            "--broker",
            "--ca-file",
            "--data-dir",
            "--interval-secs",
            "--api-url",
            "--log-level",
            "--enroll-file",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(CliError::UnknownFlag(arg.clone()));
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| CliError::MissingValue(flag.clone()))?,
        };
        match flag.as_str() {
            "--config" => o.config = Some(PathBuf::from(value)),
            "--gateway-id" => o.gateway_id = Some(value),
            "--broker" => o.broker = Some(value),
            "--ca-file" => o.ca_file = Some(PathBuf::from(value)),
            "--data-dir" => o.data_dir = Some(PathBuf::from(value)),
            "--interval-secs" => {
                o.interval_secs =
                    Some(value.parse().map_err(|_| CliError::BadValue { flag, reason: format!("{value:?} is not a number") })?)
            }
            "--api-url" => o.api_url = Some(value),
            "--enroll-file" => o.enroll_file = Some(PathBuf::from(value)),
            _ => o.log_level = Some(value), // "--log-level", the only flag left in `known`
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn run_flags() {
        let c = parse(&args("run --gateway-id gw-1 --broker=mqtt://127.0.0.1:1884 --data-dir /tmp/x --interval-secs 5")).unwrap();
        let Command::Run(o) = c else { panic!("not run") };
        assert_eq!(o.gateway_id.as_deref(), Some("gw-1"));
        assert_eq!(o.broker.as_deref(), Some("mqtt://127.0.0.1:1884"));
        assert_eq!(o.data_dir, Some(PathBuf::from("/tmp/x")));
        assert_eq!(o.interval_secs, Some(5));
        assert_eq!(o.config, None);
    }

    #[test]
    fn errors_and_other_commands() {
        assert_eq!(parse(&args("run --nope 1")), Err(CliError::UnknownFlag("--nope".into())));
        assert_eq!(parse(&args("run --broker")), Err(CliError::MissingValue("--broker".into())));
        assert!(matches!(parse(&args("run --interval-secs x")), Err(CliError::BadValue { .. })));
        assert_eq!(parse(&args("frobnicate")), Err(CliError::UnknownCommand("frobnicate".into())));
        assert_eq!(parse(&args("version")), Ok(Command::Version));
        assert_eq!(parse(&args("self-test")), Ok(Command::SelfTest));
        assert_eq!(parse(&[]), Ok(Command::Help));
        assert!(matches!(parse(&args("print-config --config /x.toml")), Ok(Command::PrintConfig(_))));
    }

    #[test]
    fn provision_and_insecure_flag() {
        assert_eq!(
            parse(&args("provision /b.toml --data-dir /var/lib/x")),
            Ok(Command::Provision { bundle: "/b.toml".into(), data_dir: "/var/lib/x".into() })
        );
        assert_eq!(
            parse(&args("provision --data-dir=/d /b.toml")),
            Ok(Command::Provision { bundle: "/b.toml".into(), data_dir: "/d".into() })
        );
        assert!(matches!(parse(&args("provision /b.toml")), Err(CliError::MissingValue(_))));
        assert!(matches!(parse(&args("provision --data-dir /d")), Err(CliError::MissingValue(_))));
        assert!(matches!(parse(&args("provision /a /b --data-dir /d")), Err(CliError::UnknownFlag(_))));
        let Ok(Command::Run(o)) = parse(&args("run --insecure-no-identity --data-dir /d")) else { panic!("run") };
        assert!(o.insecure_no_identity);
        let Ok(Command::Run(o)) = parse(&args("run --data-dir /d")) else { panic!("run") };
        assert!(!o.insecure_no_identity);
    }
}
