#!/usr/bin/env python3
"""An independent look at a real autopilot (pymavlink), for the SITL tests.

    vehicle.py --url URL params NAME...   -> {"NAME": value, ...}
    vehicle.py --url URL mission           -> [{"seq":..,"command":..,"frame":..,"x":..,"y":..,"z":..}, ...]
    vehicle.py --url URL set NAME=VALUE... -> {"NAME": value as echoed, ...} (ArduPilot; test set-up)
    vehicle.py --url URL both NAME...      -> {"params": {...}, "mission": [...]} in one session

PX4 answers only the first client on its GCS port, so a PX4 test asks
everything in one session ("both").

Prints one JSON document on stdout. Exits non-zero with a message on
stderr when the autopilot does not answer. Used by cli/tests/sitl_e2e.rs
so that what tiancha says it did on the vehicle is read back by a peer
that is not tiancha.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402


def connect(url, timeout):
    m = mavutil.mavlink_connection(url, source_system=250, source_component=190)
    deadline = time.time() + timeout
    while time.time() < deadline:
        # udpout needs us to speak first.
        m.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_GCS, mavutil.mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 0)
        hb = m.recv_match(type="HEARTBEAT", blocking=True, timeout=1)
        if hb and hb.autopilot != mavutil.mavlink.MAV_AUTOPILOT_INVALID and hb.get_srcComponent() == 1:
            m.target_system = hb.get_srcSystem()
            m.target_component = 1
            return m, hb.autopilot
    sys.exit(f"no autopilot heartbeat on {url} within {timeout} s")


def params(m, autopilot, names, timeout):
    out = {}
    for name in names:
        got = None
        for _ in range(int(timeout)):
            m.mav.param_request_read_send(m.target_system, m.target_component, name.encode(), -1)
            deadline = time.time() + 1
            while time.time() < deadline:
                v = m.recv_match(type="PARAM_VALUE", blocking=True, timeout=0.3)
                if v and v.param_id == name:
                    got = v
                    break
            if got:
                break
        if not got:
            sys.exit(f"no PARAM_VALUE for {name}")
        value = got.param_value
        if autopilot == mavutil.mavlink.MAV_AUTOPILOT_PX4 and got.param_type in (
            mavutil.mavlink.MAV_PARAM_TYPE_INT32, mavutil.mavlink.MAV_PARAM_TYPE_UINT32,
            mavutil.mavlink.MAV_PARAM_TYPE_INT16, mavutil.mavlink.MAV_PARAM_TYPE_INT8,
            mavutil.mavlink.MAV_PARAM_TYPE_UINT8, mavutil.mavlink.MAV_PARAM_TYPE_UINT16):
            import struct
            value = struct.unpack("<i", struct.pack("<f", value))[0]
        out[name] = value
    return out


def set_params(m, pairs, timeout):
    out = {}
    for pair in pairs:
        name, value = pair.split("=", 1)
        got = None
        for _ in range(int(timeout)):
            m.mav.param_set_send(m.target_system, m.target_component, name.encode(), float(value),
                                 mavutil.mavlink.MAV_PARAM_TYPE_REAL32)
            v = m.recv_match(type="PARAM_VALUE", blocking=True, timeout=1)
            if v and v.param_id == name:
                got = v
                break
        if not got:
            sys.exit(f"no PARAM_VALUE echo for {name}")
        out[name] = got.param_value
    return out


def mission(m, timeout):
    t = mavutil.mavlink.MAV_MISSION_TYPE_MISSION
    count = None
    for _ in range(int(timeout)):
        m.mav.mission_request_list_send(m.target_system, m.target_component, t)
        c = m.recv_match(type="MISSION_COUNT", blocking=True, timeout=1)
        if c:
            count = c.count
            break
    if count is None:
        sys.exit("no MISSION_COUNT")
    items = []
    for seq in range(count):
        it = None
        for _ in range(10):
            m.mav.mission_request_int_send(m.target_system, m.target_component, seq, t)
            it = m.recv_match(type="MISSION_ITEM_INT", blocking=True, timeout=1)
            if it and it.seq == seq:
                break
            it = None
        if it is None:
            sys.exit(f"no MISSION_ITEM_INT {seq}")
        items.append({"seq": it.seq, "command": it.command, "frame": it.frame,
                      "x": it.x, "y": it.y, "z": it.z})
    m.mav.mission_ack_send(m.target_system, m.target_component, 0, t)
    return items


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("what", choices=["params", "mission", "set", "both"])
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    m, autopilot = connect(a.url, a.timeout)
    if a.what == "params":
        print(json.dumps(params(m, autopilot, a.names, a.timeout)))
    elif a.what == "both":
        print(json.dumps({"params": params(m, autopilot, a.names, a.timeout),
                          "mission": mission(m, a.timeout)}))
    elif a.what == "set":
        print(json.dumps(set_params(m, a.names, a.timeout)))
    else:
        print(json.dumps(mission(m, a.timeout)))


if __name__ == "__main__":
    main()
