//! `scs-cloud-shim serve` as a child process: embedded broker by default, or an external one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::Api;
use crate::identity::GatewayCreds;
use crate::process::{delegate_to_process, Process};
use crate::tempdir::TempDir;
use crate::{bin_path, free_port, port_open, TEST_TOKEN};

#[derive(Debug, Clone)]
pub struct ShimOpts {
    /// Data dir (`scs.db`, objects, signing key). Default: a fresh temp dir owned by the `Shim`.
    pub data_dir: Option<PathBuf>,
    /// HTTP port on 127.0.0.1. Default: a free port.
    pub http_port: Option<u16>,
    /// External broker (`mqtt://127.0.0.1:PORT`). `None` = embedded broker (`--mqtt-listen`).
    pub broker: Option<String>,
    /// Embedded broker port when `broker` is `None`. Default: a free port.
    pub mqtt_port: Option<u16>,
    /// `SCS_API_TOKEN`.
    pub token: String,
    /// Extra command-line arguments after the standard ones (`--share-group g`, `--worker-url ...`).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `RUST_LOG`. Default: env `SCS_TEST_LOG` or `info`.
    pub rust_log: String,
}

impl Default for ShimOpts {
    fn default() -> Self {
        ShimOpts {
            data_dir: None,
            http_port: None,
            broker: None,
            mqtt_port: None,
            token: TEST_TOKEN.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            rust_log: crate::default_rust_log(),
        }
    }
}

impl ShimOpts {
    /// A shim using the external broker at `url`.
    pub fn with_broker(url: &str) -> ShimOpts {
        ShimOpts { broker: Some(url.to_owned()), ..ShimOpts::default() }
    }
}

pub struct Shim {
    // Declared first: the process dies before its temp dir is removed.
    proc: Process,
    http_port: u16,
    mqtt_port: Option<u16>,
    broker: Option<String>,
    data_dir: PathBuf,
    token: String,
    _dir: TempDir,
}

impl Shim {
    /// Starts `scs-cloud-shim serve ...` and waits (30 s max) until `GET /healthz` answers 200 and, with
    /// the embedded broker, its MQTT port accepts connections.
    pub fn start(opts: ShimOpts) -> Shim {
        let dir = TempDir::new("shim");
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| dir.join("data"));
        std::fs::create_dir_all(&data_dir).unwrap_or_else(|e| panic!("create {}: {e}", data_dir.display()));
        // `free_port` only says a port was free a moment ago; another test may take it before the shim binds
        // it. Such a start is retried on new ports; a port the test chose itself is never changed.
        let auto_ports = opts.http_port.is_none() && (opts.broker.is_some() || opts.mqtt_port.is_none());
        let mut attempt = 0;
        let (proc, http_port, mqtt_port) = loop {
            attempt += 1;
            let (mut proc, http_port, mqtt_port) = Shim::spawn(&opts, &dir, &data_dir);
            let api = Api::new(&format!("http://127.0.0.1:{http_port}"), Some(&opts.token));
            crate::wait_until(Duration::from_secs(30), || {
                !proc.is_running()
                    || (api.try_get("/healthz").map(|r| r.status == 200).unwrap_or(false) && mqtt_port.is_none_or(port_open))
            });
            let lost_port = !proc.is_running()
                && std::fs::read_to_string(proc.stderr_log()).is_ok_and(|l| l.contains("Address already in use"));
            if !(lost_port && auto_ports && attempt < 5) {
                break (proc, http_port, mqtt_port);
            }
            eprintln!("[testkit] a port of scs-cloud-shim was taken before it could bind it; starting again on others");
        };
        let mut shim = Shim { proc, http_port, mqtt_port, broker: opts.broker.clone(), data_dir, token: opts.token, _dir: dir };
        shim.wait_ready(Duration::from_secs(30));
        // Watching traffic on the embedded broker needs a login: tests use the shim's own.
        if let (Some(port), Some(auth)) = (shim.mqtt_port, crate::identity::shim_observer_auth(&shim.data_dir)) {
            crate::mqtt_cli::set_port_auth(port, auth);
        }
        shim
    }

    fn spawn(opts: &ShimOpts, dir: &TempDir, data_dir: &std::path::Path) -> (Process, u16, Option<u16>) {
        let http_port = opts.http_port.unwrap_or_else(free_port);
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--data-dir".into(),
            data_dir.as_os_str().to_owned(),
            "--http".into(),
            format!("127.0.0.1:{http_port}").into(),
        ];
        let mqtt_port = match &opts.broker {
            Some(url) => {
                args.push("--broker".into());
                args.push(url.into());
                None
            }
            None => {
                let p = opts.mqtt_port.unwrap_or_else(free_port);
                args.push("--mqtt-listen".into());
                args.push(format!("127.0.0.1:{p}").into());
                Some(p)
            }
        };
        args.extend(opts.args.iter().map(OsString::from));
        let mut env = vec![("SCS_API_TOKEN".to_owned(), opts.token.clone()), ("RUST_LOG".to_owned(), opts.rust_log.clone())];
        env.extend(opts.env.iter().cloned());
        let proc = Process::spawn("scs-cloud-shim", &bin_path("scs-cloud-shim"), args, env, dir.path());
        (proc, http_port, mqtt_port)
    }

    /// Provisions gateway `id` on this shim (`scs-cloud-shim gateways add`, bundle in the shim's temp dir,
    /// URLs defaulting to this shim's addresses).
    /// Calling it again for the same id returns the same credentials (the bundle is kept).
    pub fn add_gateway(&self, id: &str) -> GatewayCreds {
        let out = self._dir.join(format!("{id}.bundle.toml"));
        if out.exists() {
            return GatewayCreds::read(&out);
        }
        crate::identity::gateways_add(&self.data_dir, id, &out, None)
    }

    /// `scs-cloud-shim gateways revoke id` on this shim's data dir.
    pub fn revoke_gateway(&self, id: &str) {
        crate::identity::gateways_revoke(&self.data_dir, id);
    }

    /// Agent options for gateway `id`, provisioned on this shim with a bundle (`scs-agent provision`).
    pub fn agent_opts(&self, id: &str) -> crate::AgentOpts {
        let creds = self.add_gateway(id);
        let mut opts = crate::AgentOpts::new(id, &self.mqtt_url());
        opts.bundle = Some(creds.bundle);
        opts
    }

    /// Waits until the shim answers `GET /healthz` with 200 (and its embedded broker listens); panics with
    /// the logs if it exits or the time runs out.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let api = self.api();
        let mqtt_port = self.mqtt_port;
        self.proc.wait_ready(timeout, "ready (GET /healthz 200, MQTT port open)", || {
            api.try_get("/healthz").map(|r| r.status == 200).unwrap_or(false) && mqtt_port.is_none_or(port_open)
        });
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// `http://127.0.0.1:{port}`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `http_url()` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_url())
    }

    /// API client with this shim's token.
    pub fn api(&self) -> Api {
        Api::new(&self.http_url(), Some(&self.token))
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Port of the embedded broker, `None` when an external broker is used.
    pub fn mqtt_port(&self) -> Option<u16> {
        self.mqtt_port
    }

    /// The broker agents should connect to: the embedded one or the external one.
    pub fn mqtt_url(&self) -> String {
        match (&self.broker, self.mqtt_port) {
            (Some(url), _) => url.clone(),
            (None, Some(p)) => format!("mqtt://127.0.0.1:{p}"),
            (None, None) => unreachable!("a shim has either an external or an embedded broker"),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `{data_dir}/scs.db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("scs.db")
    }

    /// Starts again with the same arguments and data dir, and waits until ready.
    pub fn start_again(&mut self) {
        self.proc.start_again();
        self.wait_ready(Duration::from_secs(30));
    }

    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    delegate_to_process!();
}
