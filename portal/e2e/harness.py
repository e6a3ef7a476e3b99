"""Shared pieces of the portal's browser checks: free ports, a real shim (and agent) as child processes,
and headless Debian Chromium through chromedriver."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORTAL_DIST = ROOT / "portal" / "dist"
ARTIFACTS = ROOT / "target" / "portal-e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def bin_path(name):
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    p = target / "debug" / name
    if not p.exists():
        raise SystemExit(f"{p} missing: run cargo build -p scs-cloud-shim -p scs-agent -p scs-testkit --bins")
    return p


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, base, token):
        self.base, self.token = base, token

    def call(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def get(self, path):
        return self.call("GET", path)


def wait_for(what, f, timeout=60, every=0.2):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = f()
            if last:
                return last
        except Exception as e:  # the service may not be up yet
            last = e
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Cloud:
    """A real scs-cloud-shim (embedded broker, SQLite, the built portal) and optionally a real scs-agent."""

    def __init__(self, token="portal-e2e-token"):
        self.dir = Path(tempfile.mkdtemp(prefix="scs-portal-e2e."))
        self.token = token
        self.http = free_port()
        self.mqtt = free_port()
        self.base = f"http://127.0.0.1:{self.http}"
        self.api = Api(self.base, token)
        self.procs = []

    def start_shim(self):
        (self.dir / "shim").mkdir()
        env = dict(os.environ, SCS_API_TOKEN=self.token, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        log = open(self.dir / "shim.log", "wb")
        p = subprocess.Popen(
            [str(bin_path("scs-cloud-shim")), "serve", "--data-dir", str(self.dir / "shim"),
             "--http", f"127.0.0.1:{self.http}", "--mqtt-listen", f"127.0.0.1:{self.mqtt}",
             "--portal-dir", str(PORTAL_DIST)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs.append(p)

        def ready():
            if p.poll() is not None:
                raise SystemExit("scs-cloud-shim exited:\n" + (self.dir / "shim.log").read_text())
            with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                return r.status == 200

        wait_for("the shim's /healthz", ready, timeout=30)
        return self

    def start_site(self, prefix, cameras=1, nvrs=1):
        """A simulated site (testkit's fake-site: real ONVIF/ISAPI/Dahua fakes on loopback); returns the
        agent's [[devices]] TOML for it."""
        out = self.dir / "site"
        log = open(self.dir / "site.log", "wb")
        p = subprocess.Popen(
            [str(bin_path("fake-site")), "--cameras", str(cameras), "--nvrs", str(nvrs), "--out", str(out),
             "--id-prefix", prefix, "--rtsp", "fake"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs.append(p)

        def ready():
            if p.poll() is not None:
                raise SystemExit("fake-site exited:\n" + (self.dir / "site.log").read_text())
            return "READY" in (self.dir / "site.log").read_text()

        wait_for("fake-site READY", ready, timeout=30)
        return (out / "devices.toml").read_text()

    def start_agent(self, gateway, devices_toml):
        data = self.dir / f"agent-{gateway}"
        data.mkdir()
        cfg = self.dir / f"{gateway}.toml"
        # The reboot command is harmless here: the test never confirms a reboot, and if it ever did, the
        # agent would run /bin/true instead of /sbin/reboot.
        cfg.write_text(f'gateway_id = "{gateway}"\n\n[commands]\nreboot_command = ["/bin/true"]\n\n{devices_toml}')
        log = open(self.dir / f"agent-{gateway}.log", "wb")
        # Provisioned as in the field: the shim issues the gateway's identity, the agent installs it.
        bundle = self.dir / f"{gateway}.bundle"
        subprocess.run([str(bin_path("scs-cloud-shim")), "gateways", "add", gateway, "--data-dir", str(self.dir / "shim"),
                        "--out", str(bundle)], check=True, stdout=log, stderr=subprocess.STDOUT)
        subprocess.run([str(bin_path("scs-agent")), "provision", str(bundle), "--data-dir", str(data)],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
        p = subprocess.Popen(
            [str(bin_path("scs-agent")), "run", "--config", str(cfg), "--data-dir", str(data), "--interval-secs", "1"],
            env=dict(os.environ, RUST_LOG="info"), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs.append(p)
        return p

    def logs(self):
        out = []
        for f in sorted(self.dir.glob("*.log")):
            out.append(f"--- {f.name} ---\n" + "\n".join(f.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(out)

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def chromium(width=1280, height=900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="scs-portal-chromium.")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    driver._scs_profile = profile
    return driver


def quit_chromium(driver):
    profile = getattr(driver, "_scs_profile", None)
    driver.quit()
    if profile:
        shutil.rmtree(profile, ignore_errors=True)
