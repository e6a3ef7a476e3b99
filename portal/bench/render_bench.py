#!/usr/bin/env python3
"""Render figures for the portal in headless Chromium against a real shim serving the built portal:
  * the fleet page with 1,000 gateways (4 children each), from navigation start to all rows in the table;
  * a gateway page with 64 cameras and an hour of host metrics at 10 s, to the full device tree and charts.
Data is written into the shim's SQLite store directly (the D1 schema), which is far quicker than ingesting
it message by message and exercises the same read queries. Prints medians of RUNS page loads and writes
target/portal-e2e/bench.json. A figure, not a test: nothing here fails on a slow machine."""

import json
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import ARTIFACTS, Cloud, chromium, quit_chromium  # noqa: E402

GATEWAYS = 1000
CHILDREN = 4
CAMERAS = 64
RUNS = 5
HOST_METRICS = ["cpu.usage_pct", "mem.used_pct", "load.1m", "disk.used_pct", "thermal.temp_c", "agent.queue_depth"]


def seed(db_path):
    now = int(time.time() * 1000)
    db = sqlite3.connect(db_path, timeout=30)
    db.execute("PRAGMA busy_timeout = 30000")
    sensors, metrics, gaps = [], [], []

    def sensor(sid, typ, parent, gw, status):
        attrs = json.dumps({"vendor": "Example", "model": "M1", "address": "10.0.0.1"} if parent else {"agentVersion": "0.1.0", "arch": "armv7"})
        sensors.append((sid, typ, parent, sid.upper(), attrs, gw, status, now - 5000, 1, now, now))

    for i in range(GATEWAYS):
        gw = f"gw-{i:04d}"
        sensor(gw, "EDGE_CONTROLLER", None, gw, "online" if i % 10 else "offline")
        for c in range(CHILDREN):
            sensor(f"{gw}-cam-{c}", "CAMERA", gw, gw, "offline" if (i + c) % 17 == 0 else "online")
        metrics.append((gw, "agent.queue_depth", "", now - 2000, i % 50, gw))
        if i % 25 == 0:
            gaps.append((gw, "00000000000000aa", 7, 12, 100, 111, now - 60000))
    big = "gw-site-64"
    sensor(big, "EDGE_CONTROLLER", None, big, "online")
    sensor(f"{big}-nvr-0", "NVR", big, big, "online")
    for c in range(CAMERAS):
        # Half the cameras sit under the NVR, half straight under the gateway: both tree shapes.
        sensor(f"{big}-cam-{c:02d}", "CAMERA", f"{big}-nvr-0" if c % 2 else big, big, "online" if c % 9 else "offline")
    for k in range(360):
        ts = now - (360 - k) * 10_000
        for j, m in enumerate(HOST_METRICS):
            metrics.append((big, m, "/" if m == "disk.used_pct" else "", ts, 20 + (k * (j + 1)) % 50, big))
    db.executemany("INSERT INTO sensors (id, type, parent_sensor_id, name, attrs, gateway_id, status, last_seen, announced_seq, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", sensors)
    db.executemany("INSERT INTO metrics (sensor_id, name, label, ts, value, gateway_id) VALUES (?,?,?,?,?,?)", metrics)
    db.executemany("INSERT INTO gaps (gateway_id, boot, seq, dropped, first_seq, last_seq, received_at) VALUES (?,?,?,?,?,?,?)", gaps)
    db.commit()
    db.close()
    return big


WAIT = """
const [selector, count, extra, done] = arguments;
function check() {
  const n = document.querySelectorAll(selector).length;
  const m = extra ? document.querySelectorAll(extra[0]).length : 0;
  if (n >= count && (!extra || m >= extra[1])) {
    requestAnimationFrame(() => done(performance.now()));
  } else setTimeout(check, 5);
}
check();
"""


SHOW_ALL = """
const [count, done] = arguments;
const t0 = performance.now();
document.getElementById("fleet-all").click();
function check() {
  if (document.querySelectorAll("#fleet-body tbody tr").length >= count) requestAnimationFrame(() => done(performance.now() - t0));
  else setTimeout(check, 5);
}
check();
"""


def measure_show_all(d, url, count):
    times = []
    for _ in range(RUNS):
        d.get("about:blank")
        d.get(url)
        d.execute_async_script(WAIT, "#fleet-body tbody tr", 100, None)
        times.append(d.execute_async_script(SHOW_ALL, count))
    return statistics.median(times), times


def measure(d, url, selector, count, extra=None):
    times = []
    for _ in range(RUNS):
        d.get("about:blank")
        d.get(url)
        times.append(d.execute_async_script(WAIT, selector, count, extra))
    return statistics.median(times), times


def main():
    cloud = Cloud(token="bench-token").start_shim()
    d = None
    try:
        big = seed(cloud.dir / "shim" / "scs.db")
        d = chromium(1280, 900)
        d.get(cloud.base + "/login")
        d.execute_script("sessionStorage.setItem('scs.apiToken', arguments[0])", cloud.token)
        t0 = time.time()
        status, fleet = cloud.api.get("/v1/fleet")
        api_ms = (time.time() - t0) * 1000
        assert status == 200 and fleet["count"] == GATEWAYS + 1, (status, fleet.get("count"))
        # The fleet page lists every gateway and shows them 100 rows at a time (problems first).
        fleet_med, fleet_all = measure(d, cloud.base + "/", "#fleet-body tbody tr", 100)
        all_med, all_runs = measure_show_all(d, cloud.base + "/", GATEWAYS + 1)
        gw_med, gw_all = measure(d, cloud.base + f"/gateways/{big}", ".tree-item", CAMERAS + 1,
                                 ["figure.chart canvas", len(HOST_METRICS)])
        figures = {
            "fleet_1000_gateways_first_page_ms_median": round(fleet_med),
            "fleet_runs_ms": [round(t) for t in fleet_all],
            "fleet_show_all_1001_rows_ms_median": round(all_med),
            "fleet_show_all_runs_ms": [round(t) for t in all_runs],
            "fleet_api_ms_single_request": round(api_ms),
            "gateway_64_cameras_ms_median": round(gw_med),
            "gateway_runs_ms": [round(t) for t in gw_all],
            "what": "navigation start to the rendered rows / device tree and 6 charts, headless Chromium, median of 5",
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "bench.json").write_text(json.dumps(figures, indent=2))
        print(json.dumps(figures, indent=2))
    finally:
        if d is not None:
            quit_chromium(d)
        cloud.stop()


if __name__ == "__main__":
    main()
