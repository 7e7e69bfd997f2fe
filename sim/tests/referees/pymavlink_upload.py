#!/usr/bin/env python3
"""The classic pymavlink mission upload, for the benchmark.

Loads a QGC WPL file with mavwp.MAVWPLoader and uploads it the way the
pymavlink examples and the ArduPilot developer docs do: send MISSION_COUNT,
answer every MISSION_REQUEST / MISSION_REQUEST_INT with the loader's item,
stop at the MISSION_ACK. A lost MISSION_COUNT or final MISSION_ACK, or no
message for --idle seconds, is a failure (the loader has no retries of its
own; the vehicle's re-requests are what recover lost items).

Prints JSON: {"ok": bool, "ack": int|null, "seconds": float, "requests": n,
"reason": str}.
"""

import argparse
import json
import os
import time

os.environ["MAVLINK20"] = "1"
from pymavlink import mavutil, mavwp  # noqa: E402

M = mavutil.mavlink


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--mission", required=True)
    ap.add_argument("--idle", type=float, default=5.0, help="give up after this long without a message")
    ap.add_argument("--limit", type=float, default=300.0)
    a = ap.parse_args()
    out = {"ok": False, "ack": None, "seconds": None, "requests": 0, "reason": ""}
    master = mavutil.mavlink_connection(a.connect, source_system=255, source_component=190, dialect="ardupilotmega")
    hb = None
    t_end = time.time() + 30
    while hb is None and time.time() < t_end:
        master.mav.heartbeat_send(M.MAV_TYPE_GCS, M.MAV_AUTOPILOT_INVALID, 0, 0, M.MAV_STATE_ACTIVE)
        hb = master.recv_match(type="HEARTBEAT", blocking=True, timeout=0.5)
        if hb is not None and hb.get_srcComponent() != 1:
            hb = None
    if hb is None:
        out["reason"] = "no heartbeat"
        print(json.dumps(out))
        return
    tsys, tcomp = hb.get_srcSystem(), hb.get_srcComponent()
    loader = mavwp.MAVWPLoader(target_system=tsys, target_component=tcomp)
    loader.load(a.mission)
    t0 = time.time()
    master.mav.mission_count_send(tsys, tcomp, loader.count(), M.MAV_MISSION_TYPE_MISSION)
    while True:
        if time.time() - t0 > a.limit:
            out["reason"] = "time limit"
            break
        msg = master.recv_match(type=["MISSION_REQUEST", "MISSION_REQUEST_INT", "MISSION_ACK"], blocking=True, timeout=a.idle)
        if msg is None:
            out["reason"] = f"no request or ack for {a.idle}s"
            break
        if msg.get_type() == "MISSION_ACK":
            out["ack"] = msg.type
            out["ok"] = msg.type == M.MAV_MISSION_ACCEPTED
            out["reason"] = "accepted" if out["ok"] else f"MISSION_ACK {msg.type}"
            break
        out["requests"] += 1
        master.mav.send(loader.wp(msg.seq))
    out["seconds"] = time.time() - t0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
