#!/usr/bin/env python3
"""Referee: pymavlink as a ground station, talking to the tiancha simulator.

Uploads a mission, a fence and rally points with pymavlink's own loaders
(mavwp.MAVWPLoader, MissionItemProtocol_Fence, MissionItemProtocol_Rally),
answering whatever item requests the vehicle sends the way the classic
pymavlink example does (with the loader's float MISSION_ITEMs), then reads
everything back with both MISSION_REQUEST_INT and the legacy
MISSION_REQUEST. It is strict about what an ArduPilot vehicle must do:

- upload item requests must be MISSION_REQUEST (40), as ArduPilot sends;
- every item 0..n-1 must be requested and the upload acknowledged with
  MAV_MISSION_ACCEPTED;
- on read-back, item 0 of the mission must be the home position.

Prints one JSON object on stdout; exit code 0 when no rule was broken.
"""

import argparse
import json
import os
import sys
import time

os.environ["MAVLINK20"] = "1"
from pymavlink import mavutil, mavwp  # noqa: E402

M = mavutil.mavlink
TYPES = {
    "mission": M.MAV_MISSION_TYPE_MISSION,
    "fence": M.MAV_MISSION_TYPE_FENCE,
    "rally": M.MAV_MISSION_TYPE_RALLY,
}


def fail(report, why):
    report["violations"].append(why)


def upload(master, loader, mtype, timeout, report, name):
    tsys, tcomp = master.target_system, master.target_component
    n = loader.count()
    master.mav.mission_count_send(tsys, tcomp, n, mtype)
    requested = set()
    kinds = {}
    deadline = time.time() + timeout
    while True:
        msg = master.recv_match(
            type=["MISSION_REQUEST", "MISSION_REQUEST_INT", "MISSION_ACK"],
            blocking=True,
            timeout=max(0.1, deadline - time.time()),
        )
        if msg is None:
            fail(report, f"{name}: no MISSION_ACK within {timeout}s")
            return None
        if getattr(msg, "mission_type", 0) != mtype:
            continue
        if msg.get_type() == "MISSION_ACK":
            if msg.type != M.MAV_MISSION_ACCEPTED:
                fail(report, f"{name}: upload refused with MISSION_ACK {msg.type}")
            break
        kinds[msg.get_type()] = kinds.get(msg.get_type(), 0) + 1
        if msg.seq >= n:
            fail(report, f"{name}: vehicle requested item {msg.seq} of {n}")
            continue
        requested.add(msg.seq)
        master.mav.send(loader.wp(msg.seq))
    if kinds.get("MISSION_REQUEST_INT"):
        fail(report, f"{name}: ArduPilot requests items with MISSION_REQUEST, got {kinds}")
    missing = sorted(set(range(n)) - requested)
    if missing:
        fail(report, f"{name}: items never requested: {missing[:10]}")
    report["upload"][name] = {"count": n, "requests": kinds}
    return True


def download(master, mtype, timeout, report, name, legacy_every=0):
    tsys, tcomp = master.target_system, master.target_component
    master.mav.mission_request_list_send(tsys, tcomp, mtype)
    msg = master.recv_match(type="MISSION_COUNT", blocking=True, timeout=timeout)
    if msg is None:
        fail(report, f"{name}: no MISSION_COUNT")
        return []
    n = msg.count
    items = []
    for seq in range(n):
        legacy = legacy_every and seq % legacy_every == 0
        got = None
        for _ in range(10):
            if legacy:
                master.mav.mission_request_send(tsys, tcomp, seq, mtype)
                want = "MISSION_ITEM"
            else:
                master.mav.mission_request_int_send(tsys, tcomp, seq, mtype)
                want = "MISSION_ITEM_INT"
            got = master.recv_match(type=want, blocking=True, timeout=1.0)
            if got is not None and got.seq == seq:
                break
            got = None
        if got is None:
            fail(report, f"{name}: item {seq} never came")
            return items
        if legacy:
            x, y = int(round(got.x * 1e7)), int(round(got.y * 1e7))
        else:
            x, y = got.x, got.y
        items.append(
            {
                "seq": seq,
                "frame": got.frame,
                "command": got.command,
                "autocontinue": got.autocontinue,
                "params": [got.param1, got.param2, got.param3, got.param4],
                "x": x,
                "y": y,
                "z": got.z,
                "legacy": bool(legacy),
            }
        )
    master.mav.mission_ack_send(tsys, tcomp, M.MAV_MISSION_ACCEPTED, mtype)
    return items


def clean(v):
    """JSON has no NaN: use null."""
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--mission", required=True, help="QGC WPL 110 file")
    ap.add_argument("--fence", help="QGC WPL 110 file of fence items")
    ap.add_argument("--rally", help="QGC WPL 110 file of rally items")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--home", required=True, help="lat,lon of the vehicle's home")
    a = ap.parse_args()
    report = {"violations": [], "upload": {}, "download": {}}
    master = mavutil.mavlink_connection(
        a.connect, source_system=255, source_component=190, dialect="ardupilotmega"
    )
    # Announce ourselves (a udpin vehicle learns our address from it).
    hb = None
    t_end = time.time() + 30
    while hb is None and time.time() < t_end:
        master.mav.heartbeat_send(M.MAV_TYPE_GCS, M.MAV_AUTOPILOT_INVALID, 0, 0, M.MAV_STATE_ACTIVE)
        hb = master.recv_match(type="HEARTBEAT", blocking=True, timeout=0.5)
        if hb is not None and hb.get_srcComponent() != 1:
            hb = None
    if hb is not None:
        master.target_system = hb.get_srcSystem()
        master.target_component = hb.get_srcComponent()
    if hb is None:
        report["violations"].append("no heartbeat")
        print(json.dumps(clean(report)))
        return 1
    report["heartbeat"] = {
        "autopilot": hb.autopilot,
        "type": hb.type,
        "system": master.target_system,
        "component": master.target_component,
    }
    if hb.autopilot != M.MAV_AUTOPILOT_ARDUPILOTMEGA:
        fail(report, f"heartbeat autopilot {hb.autopilot} is not ArduPilot")

    plan = [("mission", mavwp.MAVWPLoader, a.mission)]
    if a.fence:
        plan.append(("fence", mavwp.MissionItemProtocol_Fence, a.fence))
    if a.rally:
        plan.append(("rally", mavwp.MissionItemProtocol_Rally, a.rally))
    for name, cls, path in plan:
        loader = cls(target_system=master.target_system, target_component=master.target_component)
        loader.load(path)
        upload(master, loader, TYPES[name], a.timeout, report, name)
        # Read back: every third item with the legacy MISSION_REQUEST.
        report["download"][name] = download(
            master, TYPES[name], a.timeout, report, name, legacy_every=3
        )

    home_lat, home_lon = (float(v) for v in a.home.split(","))
    m = report["download"].get("mission", [])
    if not m:
        fail(report, "mission: nothing read back")
    else:
        h = m[0]
        if h["command"] != M.MAV_CMD_NAV_WAYPOINT or h["frame"] != M.MAV_FRAME_GLOBAL:
            fail(report, f"mission item 0 is not home: {h}")
        # (item 0 may come back as a float MISSION_ITEM: half an f32 ulp is 3.8e-6 degrees)
        if abs(h["x"] / 1e7 - home_lat) > 4e-6 or abs(h["y"] / 1e7 - home_lon) > 4e-6:
            fail(report, f"mission item 0 is not at home {a.home}: {h}")
    print(json.dumps(clean(report)))
    return 0 if not report["violations"] else 2


if __name__ == "__main__":
    sys.exit(main())
