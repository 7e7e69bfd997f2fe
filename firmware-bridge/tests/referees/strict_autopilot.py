#!/usr/bin/env python3
"""Referee: a strict pymavlink autopilot for the tiancha bridge to talk to.

Speaks the mission protocol as ArduPilot (--flavour ardupilot: items
requested with MISSION_REQUEST (40), home at mission item 0, rewritten on
read-back) or as PX4 (--flavour px4: MISSION_REQUEST_INT, no home item,
downloads strictly in order), and records every protocol violation by the
ground side:

- a MISSION_ITEM_INT for a sequence number that was neither requested now
  nor the one just before it (resending the last item on a timeout is
  allowed by the protocol);
- a float MISSION_ITEM instead of MISSION_ITEM_INT;
- wrong target system/component or mission type;
- on PX4, a download request out of order, or a MISSION_REQUEST (40);
- a download that is not closed with MISSION_ACK;
- a HEARTBEAT that is not a companion's (MAV_TYPE_ONBOARD_CONTROLLER,
  MAV_AUTOPILOT_INVALID, component 191); their rate is in the report.

To exercise the retries it drops (does not process) a deterministic share
of what it receives (--drop-every N: every Nth mission message) and of
what it would send back.

Commands: COMMAND_LONG/INT are acknowledged ACCEPTED, except
MAV_CMD_DO_SET_SERVO (183), answered with three MAV_RESULT_IN_PROGRESS
acks (progress 25/50/75) before ACCEPTED, and MAV_CMD_DO_GIMBAL_MANAGER_
PITCHYAW (1000), answered UNSUPPORTED (a legacy gimbal).

With --max-items N it refuses longer uploads with MAV_MISSION_NO_SPACE;
with --corrupt-seq N it stores mission item N with its altitude 1 m off
(and still acknowledges ACCEPTED), which only a read-back can catch.

With --signing-key HEX it signs everything and drops anything not signed
with that key (pymavlink's own signing implementation).

Writes a JSON report to --report after every completed transfer and on
exit (SIGTERM).
"""

import argparse
import json
import os
import signal
import sys
import time

os.environ["MAVLINK20"] = "1"
from pymavlink import mavutil  # noqa: E402

M = mavutil.mavlink
HOME = (28.45, 117.94, 70.0)


class Referee:
    def __init__(self, a):
        self.a = a
        self.px4 = a.flavour == "px4"
        self.conn = mavutil.mavlink_connection(
            a.listen, source_system=1, source_component=1, dialect="ardupilotmega"
        )
        if a.signing_key:
            key = bytes.fromhex(a.signing_key)
            self.conn.setup_signing(key, sign_outgoing=True, allow_unsigned_callback=None)
        self.violations = []
        self.lists = {0: [], 1: [], 2: []}
        if not self.px4:
            self.lists[0] = [self.home_item()]
        self.up = None  # current upload: dict
        self.down = {}  # mission_type -> next expected seq (px4)
        self.down_open = {}
        self.rx_count = 0
        self.tx_count = 0
        self.stats = {
            "uploads": 0,
            "downloads": 0,
            "duplicates": 0,
            "dropped_in": 0,
            "dropped_out": 0,
            "requests_sent": {},
            "commands": {},
            "signed_rx": 0,
            "unsigned_rx": 0,
            # The ground side's HEARTBEATs: count and first/last arrival.
            "heartbeats": 0,
            "heartbeat_first": None,
            "heartbeat_last": None,
        }
        self.peer = None

    def home_item(self):
        return {
            "frame": M.MAV_FRAME_GLOBAL,
            "command": M.MAV_CMD_NAV_WAYPOINT,
            "autocontinue": 1,
            "params": [0.0, 0.0, 0.0, 0.0],
            "x": int(HOME[0] * 1e7),
            "y": int(HOME[1] * 1e7),
            "z": HOME[2],
        }

    def violation(self, why):
        self.violations.append(why)

    def drop(self, counter):
        n = self.a.drop_every
        return n > 0 and counter % n == n - 1

    def send(self, msg):
        self.tx_count += 1
        if msg.get_type() not in ("HEARTBEAT",) and self.drop(self.tx_count):
            self.stats["dropped_out"] += 1
            return
        self.conn.mav.send(msg)

    def report(self):
        sig = self.conn.mav.signing
        self.stats["goodsig"] = getattr(sig, "goodsig_count", 0)
        self.stats["badsig"] = getattr(sig, "badsig_count", 0)
        self.stats["reject"] = getattr(sig, "reject_count", 0)
        data = {
            "flavour": self.a.flavour,
            "violations": self.violations,
            "lists": {"mission": self.lists[0], "fence": self.lists[1], "rally": self.lists[2]},
            "stats": self.stats,
        }
        tmp = self.a.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump(clean(data), f)
        os.replace(tmp, self.a.report)

    def check_target(self, m, what):
        if m.target_system != 1 or m.target_component not in (0, 1):
            self.violation(f"{what} addressed to {m.target_system}/{m.target_component}")

    def request(self, mtype, seq):
        u = self.up
        u["requested"] = seq
        u["last_request"] = time.time()
        if self.px4:
            msg = self.conn.mav.mission_request_int_encode(u["sys"], u["comp"], seq, mtype)
            name = "MISSION_REQUEST_INT"
        else:
            msg = self.conn.mav.mission_request_encode(u["sys"], u["comp"], seq, mtype)
            name = "MISSION_REQUEST"
        self.stats["requests_sent"][name] = self.stats["requests_sent"].get(name, 0) + 1
        self.send(msg)

    def ack(self, sysid, comp, mtype, result):
        self.send(self.conn.mav.mission_ack_encode(sysid, comp, result, mtype))

    def on_mission(self, m, src):
        t = m.get_type()
        mtype = getattr(m, "mission_type", 0)
        if mtype not in (0, 1, 2):
            self.violation(f"{t} with mission_type {mtype}")
            return
        if t == "MISSION_COUNT":
            self.check_target(m, t)
            if self.a.max_items is not None and m.count > self.a.max_items:
                self.ack(src[0], src[1], mtype, M.MAV_MISSION_NO_SPACE)
                return
            self.up = {
                "type": mtype,
                "count": m.count,
                "items": [None] * m.count,
                "sys": src[0],
                "comp": src[1],
                "requested": 0,
                "prev": None,
                "last_request": time.time(),
                "last_item": time.time(),
            }
            if m.count == 0:
                self.finish_upload()
                return
            self.request(mtype, 0)
        elif t in ("MISSION_ITEM_INT", "MISSION_ITEM"):
            self.check_target(m, t)
            if t == "MISSION_ITEM":
                self.violation("float MISSION_ITEM sent instead of MISSION_ITEM_INT")
            u = self.up
            if u is None or u["type"] != mtype:
                # After completion: a resend of the final item is allowed.
                self.stats["duplicates"] += 1
                if not self.px4:
                    return  # ArduPilot stays silent
                return
            seq = m.seq
            if seq == u["requested"]:
                u["items"][seq] = {
                    "frame": m.frame,
                    "command": m.command,
                    "autocontinue": m.autocontinue,
                    "params": [m.param1, m.param2, m.param3, m.param4],
                    "x": m.x,
                    "y": m.y,
                    "z": m.z,
                }
                u["prev"] = seq
                u["last_item"] = time.time()
                if seq + 1 == u["count"]:
                    self.finish_upload()
                else:
                    self.request(mtype, seq + 1)
            elif seq == u["prev"]:
                self.stats["duplicates"] += 1
                if not self.px4:
                    self.ack(u["sys"], u["comp"], mtype, M.MAV_MISSION_INVALID_SEQUENCE)
            else:
                self.violation(f"unrequested item {seq} (requested {u['requested']})")
        elif t == "MISSION_REQUEST_LIST":
            self.check_target(m, t)
            if self.up is not None and self.up["type"] == mtype:
                self.ack(src[0], src[1], mtype, M.MAV_MISSION_DENIED)
                return
            self.down[mtype] = 0
            self.down_open[mtype] = True
            self.send(self.conn.mav.mission_count_encode(src[0], src[1], len(self.lists[mtype]), mtype))
        elif t in ("MISSION_REQUEST_INT", "MISSION_REQUEST"):
            self.check_target(m, t)
            if t == "MISSION_REQUEST":
                self.violation("legacy MISSION_REQUEST used for a download")
            seq = m.seq
            if self.px4:
                exp = self.down.get(mtype, 0)
                if seq != exp and seq != exp - 1:
                    self.violation(f"PX4 download out of order: asked {seq}, expected {exp}")
                self.down[mtype] = max(exp, seq + 1)
            items = self.lists[mtype]
            if seq >= len(items):
                self.ack(src[0], src[1], mtype, M.MAV_MISSION_INVALID_SEQUENCE)
                return
            it = items[seq]
            p = it["params"]
            frame = it["frame"]
            if not self.px4:
                frame = {5: 0, 6: 3, 11: 10}.get(frame, frame)
            self.send(
                self.conn.mav.mission_item_int_encode(
                    src[0], src[1], seq, frame, it["command"], 0, it["autocontinue"],
                    p[0], p[1], p[2], p[3], it["x"], it["y"], it["z"], mtype,
                )
            )
        elif t == "MISSION_ACK":
            if self.down_open.get(mtype):
                self.down_open[mtype] = False
                self.stats["downloads"] += 1
                if self.px4 and self.down.get(mtype, 0) != len(self.lists[mtype]):
                    self.violation("download acknowledged before every item was requested")
                self.report()
        elif t == "MISSION_CLEAR_ALL":
            self.lists[mtype] = [self.home_item()] if (mtype == 0 and not self.px4) else []
            self.ack(src[0], src[1], mtype, M.MAV_MISSION_ACCEPTED)

    def finish_upload(self):
        u = self.up
        self.up = None
        items = u["items"]
        if any(i is None for i in items):
            self.violation("upload finished with holes")
        if u["type"] == 0 and not self.px4:
            items = [self.home_item()] + items[1:] if items else [self.home_item()]
        c = self.a.corrupt_seq
        if u["type"] == 0 and c is not None and c < len(items) and items[c] is not None:
            # A vehicle that stores something else than it acknowledged
            # (e.g. clamps the altitude): only a read-back can tell.
            items[c] = dict(items[c], z=items[c]["z"] + 1.0)
        self.lists[u["type"]] = items
        self.stats["uploads"] += 1
        self.ack(u["sys"], u["comp"], u["type"], M.MAV_MISSION_ACCEPTED)
        self.report()

    def on_command(self, m, src):
        cmd = m.command
        self.stats["commands"][str(cmd)] = self.stats["commands"].get(str(cmd), 0) + 1
        if cmd == M.MAV_CMD_DO_SET_SERVO:
            for p in (25, 50, 75):
                self.conn.mav.send(
                    self.conn.mav.command_ack_encode(cmd, M.MAV_RESULT_IN_PROGRESS, p, 0, src[0], src[1])
                )
                time.sleep(0.05)
            result = M.MAV_RESULT_ACCEPTED
        elif cmd == M.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW:
            result = M.MAV_RESULT_UNSUPPORTED
        else:
            result = M.MAV_RESULT_ACCEPTED
        self.send(self.conn.mav.command_ack_encode(cmd, result, 0, 0, src[0], src[1]))

    def tick(self):
        u = self.up
        if u is not None and time.time() - u["last_request"] > self.a.rerequest:
            if time.time() - u["last_item"] > 8.0:
                self.ack(u["sys"], u["comp"], u["type"], M.MAV_MISSION_OPERATION_CANCELLED)
                self.up = None
            else:
                self.request(u["type"], u["requested"])

    def run(self):
        last_hb = 0
        end = time.time() + self.a.duration
        while time.time() < end:
            now = time.time()
            if now - last_hb > 0.5:
                last_hb = now
                self.conn.mav.heartbeat_send(
                    M.MAV_TYPE_QUADROTOR,
                    M.MAV_AUTOPILOT_PX4 if self.px4 else M.MAV_AUTOPILOT_ARDUPILOTMEGA,
                    M.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                    0,
                    M.MAV_STATE_STANDBY,
                )
            self.tick()
            m = self.conn.recv_match(blocking=True, timeout=0.05)
            if m is None or m.get_type() == "BAD_DATA":
                continue
            src = (m.get_srcSystem(), m.get_srcComponent())
            if getattr(m, "_signed", False):
                self.stats["signed_rx"] += 1
            else:
                self.stats["unsigned_rx"] += 1
            t = m.get_type()
            if t.startswith("MISSION_"):
                self.rx_count += 1
                if self.drop(self.rx_count):
                    self.stats["dropped_in"] += 1
                    continue
                self.on_mission(m, src)
            elif t in ("COMMAND_LONG", "COMMAND_INT"):
                self.on_command(m, src)
            elif t == "HEARTBEAT":
                self.on_heartbeat(m, src)
        self.report()

    def on_heartbeat(self, m, src):
        """A companion computer: MAV_TYPE_ONBOARD_CONTROLLER, component 191
        (MAV_COMP_ID_ONBOARD_COMPUTER), no autopilot of its own."""
        if m.type != M.MAV_TYPE_ONBOARD_CONTROLLER:
            self.violation(f"heartbeat with MAV_TYPE {m.type}, not ONBOARD_CONTROLLER")
        if m.autopilot != M.MAV_AUTOPILOT_INVALID:
            self.violation(f"companion heartbeat claims autopilot {m.autopilot}")
        if src[1] != M.MAV_COMP_ID_ONBOARD_COMPUTER:
            self.violation(f"companion heartbeat from component {src[1]}, not 191")
        now = time.time()
        self.stats["heartbeats"] += 1
        if self.stats["heartbeat_first"] is None:
            self.stats["heartbeat_first"] = now
        self.stats["heartbeat_last"] = now


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
    ap.add_argument("--listen", required=True)
    ap.add_argument("--flavour", choices=["ardupilot", "px4"], default="ardupilot")
    ap.add_argument("--report", required=True)
    ap.add_argument("--drop-every", type=int, default=0)
    ap.add_argument("--rerequest", type=float, default=1.0)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--signing-key", default=None)
    ap.add_argument("--max-items", type=int, default=None,
                    help="answer MISSION_COUNT above this with MAV_MISSION_NO_SPACE")
    ap.add_argument("--corrupt-seq", type=int, default=None,
                    help="store mission item N with z + 1 m (and still ACCEPT)")
    a = ap.parse_args()
    r = Referee(a)

    def stop(*_):
        r.report()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    r.run()


if __name__ == "__main__":
    main()
