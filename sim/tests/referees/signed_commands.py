#!/usr/bin/env python3
"""Referee: pymavlink sends COMMAND_LONGs to a simulator that requires
MAVLink 2 signing, unsigned, signed with a wrong key, or signed with the
right key (pymavlink's own signing), and reports which were acknowledged.

Commands sent (each three times): DO_SET_MODE GUIDED, ARM, NAV_TAKEOFF 20 m.
Prints JSON: {"phase": ..., "acks": {command: [results]}, "heartbeats": n}.

Replay attack, in two phases:
- capture: with the right key, DO_SET_MODE GUIDED, then an ARM whose exact
  signed bytes are kept (printed as "captured", hex), then DISARM; all
  acknowledged.
- replay: without the key, from a fresh socket, the captured ARM bytes are
  sent again verbatim (three times) and acknowledgements are collected.
"""

import argparse
import json
import os
import time

os.environ["MAVLINK20"] = "1"
from pymavlink import mavutil  # noqa: E402

M = mavutil.mavlink


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
    ap.add_argument(
        "--phase", choices=["unsigned", "wrongkey", "signed", "capture", "replay"], required=True
    )
    ap.add_argument("--frame", help="replay: the captured frame, hex")
    ap.add_argument("--key", required=True, help="the vehicle's key, hex")
    ap.add_argument("--listen-s", type=float, default=2.0)
    a = ap.parse_args()
    master = mavutil.mavlink_connection(
        a.connect, source_system=255, source_component=190, dialect="ardupilotmega"
    )
    if a.phase in ("signed", "capture"):
        master.setup_signing(bytes.fromhex(a.key), sign_outgoing=True)
    elif a.phase == "wrongkey":
        wrong = bytes(b ^ 0x5A for b in bytes.fromhex(a.key))
        master.setup_signing(wrong, sign_outgoing=True)
    # Say hello so a udpin vehicle learns our address, then listen.
    master.mav.heartbeat_send(M.MAV_TYPE_GCS, M.MAV_AUTOPILOT_INVALID, 0, 0, M.MAV_STATE_ACTIVE)
    heartbeats = 0
    t_end = time.time() + 3.0
    while time.time() < t_end:
        m = master.recv_match(type="HEARTBEAT", blocking=True, timeout=0.5)
        if m is not None and m.get_srcComponent() == 1:
            heartbeats += 1
            break
        master.mav.heartbeat_send(M.MAV_TYPE_GCS, M.MAV_AUTOPILOT_INVALID, 0, 0, M.MAV_STATE_ACTIVE)
    acks = {}

    def wait_ack(cmd, seconds):
        t_end = time.time() + seconds
        while time.time() < t_end:
            m = master.recv_match(type="COMMAND_ACK", blocking=True, timeout=0.1)
            if m is not None and m.command == cmd:
                acks.setdefault(str(cmd), []).append(m.result)
                return m.result
        return None

    if a.phase == "capture":
        arm = M.MAV_CMD_COMPONENT_ARM_DISARM
        master.mav.command_long_send(1, 1, M.MAV_CMD_DO_SET_MODE, 0, 1, 4, 0, 0, 0, 0, 0)
        wait_ack(M.MAV_CMD_DO_SET_MODE, 2.0)
        msg = master.mav.command_long_encode(1, 1, arm, 0, 1, 0, 0, 0, 0, 0, 0)
        captured = bytes(msg.pack(master.mav))  # signed by pymavlink, as sent
        master.mav.seq = (master.mav.seq + 1) % 256
        master.write(captured)
        wait_ack(arm, 2.0)
        master.mav.command_long_send(1, 1, arm, 0, 0, 0, 0, 0, 0, 0, 0)
        wait_ack(arm, 2.0)
        print(json.dumps({"phase": a.phase, "acks": acks, "heartbeats": heartbeats,
                          "signed": bool(captured[2] & 0x01), "captured": captured.hex()}))
        return
    if a.phase == "replay":
        frame = bytes.fromhex(a.frame)
        for _ in range(3):
            master.write(frame)
            wait_ack(M.MAV_CMD_COMPONENT_ARM_DISARM, 0.7)
        print(json.dumps({"phase": a.phase, "acks": acks, "heartbeats": heartbeats}))
        return
    commands = [
        (M.MAV_CMD_DO_SET_MODE, [1, 4, 0, 0, 0, 0, 0]),
        (M.MAV_CMD_COMPONENT_ARM_DISARM, [1, 0, 0, 0, 0, 0, 0]),
        (M.MAV_CMD_NAV_TAKEOFF, [0, 0, 0, 0, 0, 0, 20]),
    ]
    for cmd, p in commands:
        for attempt in range(3):
            master.mav.command_long_send(1, 1, cmd, attempt, *p)
            t_end = time.time() + a.listen_s / 3
            got = None
            while time.time() < t_end:
                m = master.recv_match(type="COMMAND_ACK", blocking=True, timeout=0.1)
                if m is not None and m.command == cmd:
                    got = m.result
                    break
            if got is not None:
                acks.setdefault(str(cmd), []).append(got)
                break
    sig = master.mav.signing
    print(
        json.dumps(
            {
                "phase": a.phase,
                "acks": acks,
                "heartbeats": heartbeats,
                "goodsig": getattr(sig, "goodsig_count", 0),
                "badsig": getattr(sig, "badsig_count", 0),
            }
        )
    )


if __name__ == "__main__":
    main()
