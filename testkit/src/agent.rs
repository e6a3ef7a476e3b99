//! `scs-agent run` as a child process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::bin_path;
use crate::process::{delegate_to_process, Process};
use crate::tempdir::TempDir;

#[derive(Debug, Clone)]
pub struct AgentOpts {
    pub gateway_id: String,
    /// `--broker`, e.g. `mqtt://127.0.0.1:1883`.
    pub broker: String,
    /// `--data-dir`. Default: a fresh temp dir owned by the `Agent` (kept across `restart`).
    pub data_dir: Option<PathBuf>,
    /// `--interval-secs`. Default 1.
    pub interval_secs: Option<u64>,
    /// Contents of a TOML config file written to the temp dir and passed with `--config`.
    /// `None`: no `--config` (the agent runs with defaults + flags when /etc/scs/agent.toml is missing).
    pub config_toml: Option<String>,
    /// `--api-url` (artifact uploads).
    pub api_url: Option<String>,
    /// Provisioning bundle (`scs-cloud-shim gateways add`): installed with `scs-agent provision` before
    /// the first start, and then the agent runs without `--gateway-id`/`--broker` (they come from it).
    pub bundle: Option<PathBuf>,
    /// Extra arguments appended after the standard ones.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `RUST_LOG`. Default: env `SCS_TEST_LOG` or `info`.
    pub rust_log: String,
}

impl AgentOpts {
    pub fn new(gateway_id: &str, broker: &str) -> AgentOpts {
        AgentOpts {
            gateway_id: gateway_id.to_owned(),
            broker: broker.to_owned(),
            data_dir: None,
            interval_secs: Some(1),
            config_toml: None,
            api_url: None,
            bundle: None,
            args: Vec::new(),
            env: Vec::new(),
            rust_log: crate::default_rust_log(),
        }
    }
}

pub struct Agent {
    // Declared first: the process dies before its temp dir is removed.
    proc: Process,
    gateway_id: String,
    data_dir: PathBuf,
    dir: TempDir,
}

impl Agent {
    /// Starts `scs-agent run --gateway-id .. --broker .. --data-dir .. [--interval-secs N] [--config F]
    /// [--api-url U] ARGS...`. Does not wait for anything: tests wait for the data they expect.
    pub fn start(opts: AgentOpts) -> Agent {
        let dir = TempDir::new("agent");
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| dir.join("data"));
        std::fs::create_dir_all(&data_dir).unwrap_or_else(|e| panic!("create {}: {e}", data_dir.display()));
        let mut args: Vec<OsString> = vec!["run".into()];
        if let Some(toml) = &opts.config_toml {
            let path = dir.join("agent.toml");
            std::fs::write(&path, toml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            args.push("--config".into());
            args.push(path.into_os_string());
        }
        match &opts.bundle {
            Some(bundle) => provision(bundle, &data_dir),
            None => args.extend([
                "--gateway-id".into(),
                OsString::from(&opts.gateway_id),
                "--broker".into(),
                OsString::from(&opts.broker),
            ]),
        }
        args.push("--data-dir".into());
        args.push(data_dir.clone().into_os_string());
        // A data dir without a provisioned identity runs in development mode (unsigned messages).
        if !data_dir.join("identity.toml").exists() {
            args.push("--insecure-no-identity".into());
        }
        if let Some(n) = opts.interval_secs {
            args.push("--interval-secs".into());
            args.push(n.to_string().into());
        }
        if let Some(u) = &opts.api_url {
            args.push("--api-url".into());
            args.push(u.into());
        }
        args.extend(opts.args.iter().map(OsString::from));
        let mut env = vec![("RUST_LOG".to_owned(), opts.rust_log.clone())];
        env.extend(opts.env.iter().cloned());
        let proc = Process::spawn("scs-agent", &bin_path("scs-agent"), args, env, dir.path());
        Agent { proc, gateway_id: opts.gateway_id, data_dir, dir }
    }

    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `{data_dir}/agent.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("agent.db")
    }

    /// `{data_dir}/logs/agent.log`, the agent's own log file.
    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join("logs").join("agent.log")
    }

    /// The test's temp dir for this agent (config file, stdout/stderr logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts again with the same arguments and data dir.
    pub fn start_again(&mut self) {
        self.proc.start_again();
    }

    pub fn restart(&mut self) {
        self.proc.restart();
    }

    delegate_to_process!();
}

/// `scs-agent provision BUNDLE --data-dir DIR`; panics with its output on failure.
pub fn provision(bundle: &Path, data_dir: &Path) {
    let o = std::process::Command::new(bin_path("scs-agent"))
        .arg("provision")
        .arg(bundle)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run scs-agent provision");
    assert!(
        o.status.success(),
        "scs-agent provision {} failed: {}{}",
        bundle.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
