#!/usr/bin/env python3
"""The operators' portal in a real browser (headless Debian Chromium via chromedriver) against a real
scs-cloud-shim serving the built portal and a real scs-agent watching a simulated site (testkit's
fake-site: an ONVIF camera, a Hikvision ISAPI NVR and a Dahua NVR on loopback) plus a camera that is down.

Screenshots and axe-core results go to target/portal-e2e/. Prints one closing line "N passed, N failed".
Needs: portal/dist (npm run build), portal/node_modules/axe-core (npm ci), the debug binaries."""

import json
import sys
import time
import traceback
import urllib.request

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from harness import ARTIFACTS, PORTAL_DIST, ROOT, Cloud, chromium, quit_chromium, wait_for

GW = "gw-1"
CAM = f"{GW}-cam-01"
NVR = f"{GW}-nvr-01"
DAHUA = f"{GW}-nvr-02"
DEAD = f"{GW}-cam-09"
AXE = ROOT / "portal" / "node_modules" / "axe-core" / "axe.min.js"
results = []


def step(name):
    def wrap(f):
        def run(*a):
            t = time.time()
            try:
                f(*a)
                results.append((name, None))
                print(f"ok   {name} ({time.time() - t:.1f} s)", flush=True)
            except Exception as e:  # report every step, keep going where the next steps can
                results.append((name, e))
                print(f"FAIL {name}: {e}", flush=True)
                traceback.print_exc()
        return run
    return wrap


def shot(d, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait(d, cond, timeout=20):
    # Polled pages redraw their tables: an element found a moment ago may be gone; look again.
    return WebDriverWait(d, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]).until(cond)


def css(d, sel, timeout=20):
    return wait(d, EC.visibility_of_element_located((By.CSS_SELECTOR, sel)), timeout)


def text_in(d, sel, text, timeout=20):
    try:
        return wait(d, EC.text_to_be_present_in_element((By.CSS_SELECTOR, sel), text), timeout)
    except TimeoutException:
        els = d.find_elements(By.CSS_SELECTOR, sel)
        raise AssertionError(f"{text!r} not in {sel}: {els[0].text[:500] if els else 'no such element'!r}")


def axe(d, name):
    """Runs axe-core in the page; fails on serious or critical violations."""
    d.execute_script(AXE.read_text())
    violations = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => "
        "({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(violations, indent=2))
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"axe on {name}: {json.dumps(bad, indent=1)}"
    return violations


def no_token_in_url(d, token):
    assert token not in d.current_url, "token in the URL"


def main():
    if not (PORTAL_DIST / "index.html").exists():
        raise SystemExit("portal/dist missing: run npm run build in portal/")
    if not AXE.exists():
        raise SystemExit("axe-core missing: run npm ci in portal/")
    cloud = Cloud().start_shim()
    site = cloud.start_site(GW, cameras=1, nvrs=2)
    # Nothing listens on port 9: a camera that is down.
    devices = site + f"""
[[devices]]
id = "{DEAD}"
type = "CAMERA"
name = "Gate camera"
address = "127.0.0.1:9"
vendor = "Example"
model = "Bullet 4MP"
"""
    agent = cloud.start_agent(GW, devices)
    api = cloud.api
    d = None
    try:
        wait_for("the gateway's metrics, its four children and the NVRs' disks",
                 lambda: api.get(f"/v1/sensors/{GW}/metrics?name=cpu.usage_pct&limit=3")[1]["count"] >= 2
                 and len(api.get(f"/v1/sensors?gatewayId={GW}")[1]) >= 5
                 and all(api.get(f"/v1/sensors/{n}/metrics?name=nvr.hdd_ok&limit=1")[1]["count"] >= 1 for n in (NVR, DAHUA)),
                 timeout=90)
        d = chromium()
        base = cloud.base
        token = cloud.token

        @step("the shim serves the portal shell and assets with their content types")
        def static_files():
            with urllib.request.urlopen(base + "/") as r:
                assert r.headers["Content-Type"].startswith("text/html"), r.headers["Content-Type"]
                html = r.read().decode()
            asset = html.split('src="')[1].split('"')[0]
            with urllib.request.urlopen(base + asset) as r:
                assert r.headers["Content-Type"].startswith("text/javascript"), r.headers["Content-Type"]
            with urllib.request.urlopen(base + f"/gateways/{GW}") as r:
                assert "<div id=\"app\">" in r.read().decode(), "SPA fallback"

        @step("a wrong token is refused at the login form with a message")
        def wrong_token():
            d.get(base + "/")
            field = css(d, 'input[name="token"]')
            assert "/login" in d.current_url, d.current_url
            shot(d, "01-login")
            axe(d, "login")
            field.send_keys("not-the-token", Keys.ENTER)
            text_in(d, "#login-msg", "refused")
            assert "/login" in d.current_url
            shot(d, "02-login-refused")

        @step("sign in; the fleet shows the gateway and its children")
        def sign_in():
            field = css(d, 'input[name="token"]')
            field.clear()
            field.send_keys(token, Keys.ENTER)
            css(d, f'#fleet-body a[href="/gateways/{GW}"]')
            no_token_in_url(d, token)
            assert d.execute_script("return sessionStorage.getItem('scs.apiToken')") == token
            assert d.execute_script("return localStorage.length") == 0 and d.execute_script("return document.cookie") == ""
            def row_text(_):
                return d.find_element(By.CSS_SELECTOR, f'#fleet-body a[href="/gateways/{GW}"]').find_element(By.XPATH, "./ancestor::tr").text

            # The simulated camera and NVRs answer, the camera on port 9 does not.
            wait(d, lambda _: all(t in row_text(_) for t in ("online", "3 online", "1 down", "of 4")), timeout=60)
            shot(d, "03-fleet")
            axe(d, "fleet")

        @step("the fleet is keyboard reachable: Tab reaches the gateway link")
        def keyboard():
            d.find_element(By.TAG_NAME, "body").click()
            body = d.find_element(By.TAG_NAME, "body")
            body.send_keys(Keys.TAB)
            for _ in range(40):
                href = d.switch_to.active_element.get_attribute("href") or ""
                if href.endswith(f"/gateways/{GW}"):
                    d.switch_to.active_element.send_keys(Keys.ENTER)
                    css(d, "#gw-tree-h")
                    return
                d.switch_to.active_element.send_keys(Keys.TAB)
            raise AssertionError("Tab never reached the gateway link")

        @step("the gateway page: children tree with health, a chart of stored data, ingest stats, events")
        def gateway_page():
            d.get(base + f"/gateways/{GW}")
            text_in(d, "section[aria-labelledby=gw-tree-h]", "Gate camera")
            text_in(d, "section[aria-labelledby=gw-tree-h]", "Recorder 01")
            text_in(d, "section[aria-labelledby=gw-tree-h]", "3 online, 1 down")

            def health(dev):
                item = d.find_element(By.CSS_SELECTOR, f'section[aria-labelledby=gw-tree-h] a[href="/devices/{dev}"]')
                return item.find_element(By.XPATH, "./ancestor::div[contains(@class,'tree-item')]").find_element(By.CSS_SELECTOR, ".badge").text

            for dev, want in ((CAM, "online"), (NVR, "online"), (DAHUA, "online"), (DEAD, "offline")):
                wait(d, lambda _: health(dev) == want, timeout=30)
            css(d, 'figure[data-metric="cpu.usage_pct"] canvas')
            text_in(d, 'figure[data-metric="cpu.usage_pct"] .chart-summary', "latest")
            text_in(d, "section[aria-labelledby=gw-ingest-h]", "messages stored")
            text_in(d, "section[aria-labelledby=gw-info-h]", "online")
            t = d.find_element(By.CSS_SELECTOR, "section[aria-labelledby=gw-info-h] time")
            assert t.get_attribute("title").endswith("UTC"), "UTC on hover"
            Select(d.find_element(By.ID, "gw-range")).select_by_visible_text("Last 15 minutes")
            css(d, 'figure[data-metric="cpu.usage_pct"] canvas')
            time.sleep(0.5)
            shot(d, "04-gateway")
            axe(d, "gateway")

        @step("an NVR page: identity, health, disk and channel tables, its command form")
        def device_page():
            d.find_element(By.CSS_SELECTOR, f'section[aria-labelledby=gw-tree-h] a[href="/devices/{NVR}"]').click()
            text_in(d, "section[aria-labelledby=dev-info-h]", "NVR")
            text_in(d, "#dev-health", "online")
            css(d, 'figure[data-metric="device.online"] canvas')
            text_in(d, "section[aria-labelledby=dev-snap-h]", "No snapshot image")
            hdd = css(d, 'table[data-table="hdd"]', timeout=30)
            assert len(hdd.find_elements(By.CSS_SELECTOR, "tbody tr")) >= 2, hdd.text
            text_in(d, 'table[data-table="hdd"]', "ok")
            css(d, 'table[data-table="channels"] tbody tr')
            types = [o.get_attribute("value") for o in Select(css(d, "#cmd-type")).options]
            assert "nvr.clip_export" in types and "camera.snapshot" not in types and "device.info" not in types, types
            shot(d, "05-device")
            axe(d, "device")

        @step("the Dahua NVR page shows its disks and channels")
        def dahua_page():
            d.get(base + f"/devices/{DAHUA}")
            text_in(d, "#dev-health", "online")
            hdd = css(d, 'table[data-table="hdd"]', timeout=30)
            assert len(hdd.find_elements(By.CSS_SELECTOR, "tbody tr")) >= 2, hdd.text
            css(d, 'table[data-table="channels"] tbody tr')
            shot(d, "05b-device-dahua")

        @step("a camera page: camera.snapshot from the page, the JPEG shows inline")
        def camera_snapshot():
            d.get(base + f"/devices/{CAM}")
            text_in(d, "#dev-health", "online", timeout=30)
            types = [o.get_attribute("value") for o in Select(css(d, "#cmd-type")).options]
            assert "camera.snapshot" in types and "nvr.clip_export" not in types, types
            Select(d.find_element(By.ID, "cmd-type")).select_by_value("camera.snapshot")
            d.find_element(By.CSS_SELECTOR, "#cmd-form button[type=submit]").click()
            text_in(d, "#cmd-status", "succeeded", timeout=60)
            assert f"/devices/{CAM}" in d.current_url, d.current_url
            img = css(d, "figure.snapshot img", timeout=30)
            src = img.get_attribute("src")
            assert "token=" in src and token not in src, src
            with urllib.request.urlopen(src) as r:
                body = r.read()
                ctype = r.headers["Content-Type"]
            assert ctype.startswith("image/jpeg") and body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9", (ctype, body[:4])
            # The browser decoded it: a broken image has no natural size.
            wait(d, lambda _: d.execute_script("const i = arguments[0]; return i.complete && i.naturalWidth > 0;", img), 15)
            cmds = api.get(f"/v1/gateways/{GW}/commands")[1]["commands"]
            snap = next(c for c in cmds if c["type"] == "camera.snapshot")
            assert snap["target"] == CAM and snap["state"] == "succeeded", snap
            shot(d, "05c-camera-snapshot")
            axe(d, "camera")

        @step("camera.reboot is refused until confirmed by naming the camera")
        def camera_reboot():
            d.get(base + f"/devices/{CAM}?type=camera.reboot")
            css(d, "#cmd-form button[type=submit]").click()
            text_in(d, "#cmd-confirm", f"camera {CAM}")
            send = d.find_element(By.ID, "confirm-send")
            assert not send.is_enabled(), "confirm button enabled before the id was typed"
            d.find_element(By.ID, "confirm-id").send_keys(GW)
            assert not send.is_enabled(), "confirm enabled for the gateway's id"
            time.sleep(1.5)  # a poll or two: nothing may have been sent meanwhile
            cmds = api.get(f"/v1/gateways/{GW}/commands")[1]["commands"]
            assert not any(c["type"] == "camera.reboot" for c in cmds), "camera.reboot was sent"
            shot(d, "05d-camera-confirm")
            axe(d, "camera-confirm")
            d.find_element(By.ID, "confirm-cancel").click()
            text_in(d, "#cmd-status", "Not sent")
            cmds = api.get(f"/v1/gateways/{GW}/commands")[1]["commands"]
            assert not any(c["type"] == "camera.reboot" for c in cmds), "camera.reboot was sent"

        @step("run a read command (device.info) and see its result")
        def read_command():
            d.get(base + f"/gateways/{GW}/commands")
            Select(css(d, "#cmd-type")).select_by_value("device.info")
            d.find_element(By.CSS_SELECTOR, "#cmd-form button[type=submit]").click()
            wait(d, lambda drv: "/commands/" in drv.current_url and "/gateways/" not in drv.current_url)
            text_in(d, "#cmd-state", "succeeded", timeout=30)
            text_in(d, "#cmd-result", "agentVersion")
            text_in(d, "#audit", "succeeded")
            shot(d, "06-command-result")
            axe(d, "command")

        @step("an artifact command (diag.log_bundle): the file downloads through its tokenized URL")
        def artifact():
            d.get(base + f"/gateways/{GW}/commands?type=diag.log_bundle")
            css(d, "#p-include")
            d.find_element(By.CSS_SELECTOR, '#p-include input[value="logs"]').click()
            d.find_element(By.CSS_SELECTOR, "#cmd-form button[type=submit]").click()
            wait(d, lambda drv: "/commands/" in drv.current_url and "/gateways/" not in drv.current_url)
            text_in(d, "#cmd-state", "succeeded", timeout=90)
            link = wait(d, EC.visibility_of_element_located((By.CSS_SELECTOR, "ul.artifacts a[href]")), timeout=30)
            href = link.get_attribute("href")
            assert "token=" in href and token not in href, href
            with urllib.request.urlopen(href) as r:
                body = r.read()
            assert r.status == 200 and body[:2] == b"\x1f\x8b", (r.status, body[:8])
            shot(d, "07-command-artifact")

        @step("the form refuses invalid parameters in the browser, before anything is sent")
        def invalid_params():
            d.get(base + f"/gateways/{GW}/commands")
            Select(css(d, "#cmd-type")).select_by_value("net.tcp_probe")
            css(d, "#p-host").send_keys("bad host;rm")
            d.find_element(By.ID, "p-port").send_keys("70000")
            before = len(api.get(f"/v1/gateways/{GW}/commands")[1]["commands"])
            d.find_element(By.CSS_SELECTOR, "#cmd-form button[type=submit]").click()
            text_in(d, "#p-host-err", "must be a host name or an IP address")
            text_in(d, "#p-port-err", "must be at most 65535, got 70000")
            assert "/gateways/" in d.current_url
            assert len(api.get(f"/v1/gateways/{GW}/commands")[1]["commands"]) == before, "a command was sent"
            shot(d, "07b-form-errors")

        @step("a destructive command (device.reboot) is not sent until confirmed by naming the gateway")
        def destructive():
            d.get(base + f"/gateways/{GW}/commands")
            Select(css(d, "#cmd-type")).select_by_value("device.reboot")
            d.find_element(By.CSS_SELECTOR, "#cmd-form button[type=submit]").click()
            text_in(d, "#cmd-confirm", f"gateway {GW}")
            send = d.find_element(By.ID, "confirm-send")
            assert not send.is_enabled(), "confirm button enabled before the id was typed"
            d.find_element(By.ID, "confirm-id").send_keys("gw-2")
            assert not send.is_enabled(), "confirm enabled for the wrong id"
            time.sleep(1.5)  # a poll or two: nothing may have been sent meanwhile
            cmds = api.get(f"/v1/gateways/{GW}/commands")[1]["commands"]
            assert not any(c["type"] == "device.reboot" for c in cmds), "device.reboot was sent"
            shot(d, "08-confirm-destructive")
            axe(d, "confirm")
            d.find_element(By.ID, "confirm-cancel").click()
            text_in(d, "#cmd-status", "Not sent")
            cmds = api.get(f"/v1/gateways/{GW}/commands")[1]["commands"]
            assert not any(c["type"] == "device.reboot" for c in cmds), "device.reboot was sent"

        @step("history lists the commands with states and targets; the picker lists the right children")
        def history():
            d.get(base + f"/gateways/{GW}/commands")
            text_in(d, "#history", "device.info")
            text_in(d, "#history", "succeeded")
            rows = d.find_elements(By.CSS_SELECTOR, "#history tbody tr")
            snap = [r for r in rows if "camera.snapshot" in r.text]
            assert snap and CAM in snap[0].text, [r.text for r in rows]
            Select(css(d, "#cmd-type")).select_by_value("nvr.clip_export")
            wait(d, lambda _: [o.get_attribute("value") for o in Select(d.find_element(By.ID, "cmd-target")).options] == [NVR, DAHUA])
            shot(d, "08b-history-targets")

        @step("phone width: no page-wide horizontal scrolling")
        def phone():
            d.set_window_size(390, 844)
            for path, ready in [("/", "#fleet-body table"), (f"/gateways/{GW}", 'figure[data-metric="cpu.usage_pct"] canvas')]:
                d.get(base + path)
                css(d, ready)
                time.sleep(0.3)
                over = d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
                assert over <= 1, f"{path}: page is {over}px wider than the phone screen"
                shot(d, f"09-phone{path.replace('/', '-') or '-fleet'}")
            d.set_window_size(1280, 900)

        @step("live: the gateway going offline shows on the open fleet page without a reload")
        def live():
            d.get(base + "/")
            css(d, f'#fleet-body a[href="/gateways/{GW}"]')
            d.execute_script("window.__marker = 'same-page'")
            agent.terminate()
            agent.wait(timeout=20)

            def offline(_):
                r = d.find_element(By.CSS_SELECTOR, f'#fleet-body a[href="/gateways/{GW}"]').find_element(By.XPATH, "./ancestor::tr")
                return r.find_element(By.CSS_SELECTOR, ".badge").text == "offline"

            wait(d, offline, timeout=40)
            assert d.execute_script("return window.__marker") == "same-page", "the page was reloaded"
            shot(d, "11-fleet-live-offline")

        @step("a token the API refuses mid-session returns to the login form with a message")
        def revoked():
            d.get(base + "/")
            css(d, "#fleet-body")
            d.execute_script("sessionStorage.setItem('scs.apiToken', 'revoked-token')")
            d.get(base + f"/gateways/{GW}")
            text_in(d, "#login-msg", "401")
            assert "/login" in d.current_url
            assert d.execute_script("return sessionStorage.getItem('scs.apiToken')") is None
            shot(d, "10-login-after-401")

        for s in (static_files, wrong_token, sign_in, keyboard, gateway_page, device_page, dahua_page, camera_snapshot,
                  camera_reboot, read_command, artifact,
                  invalid_params, destructive, history, phone, live, revoked):
            s()
    finally:
        if d is not None:
            quit_chromium(d)
        failed = [n for n, e in results if e]
        if failed:
            print(cloud.logs())
        cloud.stop()
    failed = sum(1 for _, e in results if e)
    print(f"portal-e2e: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
