#!/usr/bin/python3
"""An RTSP server nobody in this project wrote: GStreamer's gst-rtsp-server (Debian packages
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-{base,good,ugly}) serving an H.264
videotestsrc at a known size and frame rate behind HTTP Digest authentication.

    gst-rtsp-server.py --port 8554 --user admin --password cam-pass --width 640 --height 360 --fps 15
                       [--mount /main --mount /sub]

Prints "READY rtsp://127.0.0.1:PORT" on stdout once it listens; runs until killed (SIGTERM/SIGINT).
The agent's RTSP tests and scripts/fake-site use it as the foreign implementation of RTSP.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="cam-pass")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--mount", action="append", help="path(s) served, default /main and /sub")
    a = p.parse_args()

    Gst.init(None)
    if Gst.ElementFactory.find("x264enc") is None:
        print("x264enc missing: install gstreamer1.0-plugins-ugly", file=sys.stderr)
        return 1
    server = GstRtspServer.RTSPServer()
    server.set_address(a.bind)
    server.set_service(str(a.port))

    # Digest only (no Basic fallback): a client that cannot do Digest fails, as with real cameras.
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
    auth.add_digest(a.user, a.password, token)
    server.set_auth(auth)

    # One encoder shared by every client of a mount; key frames every second so a short sampled PLAY
    # starts decoding at once; byte-stream=false gives the SPS in the SDP (sprop-parameter-sets).
    launch = (
        f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={a.width},height={a.height},"
        f"framerate={a.fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
        f"bitrate=512 ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    mounts = server.get_mount_points()
    for path in a.mount or ["/main", "/sub"]:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("viewer", "media.factory.access", True)
        perms.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(perms)
        mounts.add_factory(path, factory)

    if server.attach(None) == 0:
        print(f"cannot listen on {a.bind}:{a.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for s in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, s, loop.quit)
    print(f"READY rtsp://{a.bind}:{server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
