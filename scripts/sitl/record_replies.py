#!/usr/bin/env python3
"""Record how a real autopilot (ArduCopter or PX4 SITL) answers tiancha's
mission/fence/rally uploads, parameter reads, fence enabling and arming.

It starts nothing: start the SITL first (see ../shared/sitl/*/README.md), then

    record_replies.py --autopilot ardupilot --url tcp:127.0.0.1:5810 --out ardupilot.json
    record_replies.py --autopilot px4 --url udpin:0.0.0.0:14545 --out px4.json

The items uploaded mirror mission-planner/src/mission.rs (sortie_mission,
fence_items, rally_items). The JSON holds, per list, what was sent with
MISSION_ITEM_INT and what MISSION_REQUEST_LIST/MISSION_REQUEST_INT returned,
plus parameters, a readiness timeline (boot until arming is accepted) and
notes. NaN is written as the string "NaN".

Phases (--phases, comma separated, default all for the autopilot):
  readiness   sample EKF/SYS_STATUS every ~2 s and try to arm until accepted
  params      read the parameters listed for the autopilot
  lists       upload and download mission (+variants), fence, rally
  fence       fence-enable facts (ArduPilot: DO_FENCE_ENABLE, PARAM_SET)
  streams     message names seen on the link in 10 s
  rallyframes PX4: fly a short hop + RTL with rally points in frames 6,0,5,3
  reposition  PX4: AUTO.MISSION, arm, DO_REPOSITION outside the fence
  fenceflight ArduPilot: FENCE_ENABLE=1, circle 150 m, fly out to 250 m
"""
import argparse
import json
import math
import os
import struct
import sys
import time

os.environ.setdefault("MAVLINK20", "1")
from pymavlink import mavutil  # noqa: E402

HOME = (28.45, 117.94)
HOME_ALT_AMSL = 100.0
ALT_REL = 50.0
M_PER_DEG_LAT = 111_320.0


def offset(north_m, east_m, at=HOME):
    lat = at[0] + north_m / M_PER_DEG_LAT
    lon = at[1] + east_m / (M_PER_DEG_LAT * math.cos(math.radians(at[0])))
    return lat, lon


def e7(deg):
    return int(round(deg * 1e7))


def f32(v):
    """Round a Python float to f32 and give the shortest decimal that round-trips."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    x = struct.unpack("<f", struct.pack("<f", float(v)))[0]
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    for p in range(1, 10):
        s = "%.*g" % (p, x)
        if struct.unpack("<f", struct.pack("<f", float(s)))[0] == x:
            r = float(s)
            return int(r) if r.is_integer() and abs(r) < 2**53 else r
    return x


def item(frame, command, params, x=0, y=0, z=0.0, autocontinue=True):
    return {
        "frame": frame, "command": command, "autocontinue": autocontinue,
        "param1": params[0], "param2": params[1], "param3": params[2], "param4": params[3],
        "x": x, "y": y, "z": z,
    }


def nav(command, lat, lon, alt):  # MissionItem::nav: frame 6, params 0
    return item(6, command, [0.0, 0.0, 0.0, 0.0], e7(lat), e7(lon), alt)


def cmd(command, params):  # MissionItem::command: frame 2 (MISSION), x=y=0, z=0
    return item(2, command, params)


def jsonable_item(it):
    out = {}
    for k in ("frame", "command", "autocontinue", "param1", "param2", "param3", "param4", "x", "y", "z"):
        v = it[k]
        if k in ("param1", "param2", "param3", "param4", "z"):
            v = f32(v)
        out[k] = v
    return out


def from_msg(m):
    return {
        "frame": m.frame, "command": m.command, "autocontinue": bool(m.autocontinue),
        "param1": m.param1, "param2": m.param2, "param3": m.param3, "param4": m.param4,
        "x": m.x, "y": m.y, "z": m.z,
    }


# ---------------------------------------------------------------- what tiancha sends
def waypoints():
    return [offset(150, 0), offset(150, 150), offset(0, 200)]


def mission_items(autopilot, variant="main"):
    items = []
    if autopilot == "ardupilot":
        # home_item(): NAV_WAYPOINT, frame GLOBAL (0), z = home AMSL
        items.append(item(0, 16, [0.0] * 4, e7(HOME[0]), e7(HOME[1]), HOME_ALT_AMSL))
    items.append(nav(22, HOME[0], HOME[1], ALT_REL))               # NAV_TAKEOFF
    items.append(cmd(178, [1.0, 5.0, -1.0, 0.0]))                  # DO_CHANGE_SPEED
    if autopilot == "ardupilot" or variant == "mount":
        g = cmd(205, [-60.0, 0.0, 0.0, 0.0])                       # DO_MOUNT_CONTROL
        g["z"] = 2.0                                               # MAV_MOUNT_MODE_MAVLINK_TARGETING
        items.append(g)
    else:
        items.append(cmd(1000, [-60.0, 0.0, float("nan"), float("nan")]))  # DO_GIMBAL_MANAGER_PITCHYAW
    wps = waypoints()
    for i, (lat, lon) in enumerate(wps):
        w = nav(16, lat, lon, ALT_REL)
        if variant == "land" and i == 0:
            # the brief's waypoint variant: hold 0, accept radius 2, pass 0, yaw NaN
            w.update(param1=0.0, param2=2.0, param3=0.0, param4=float("nan"))
        items.append(w)
    if variant == "land":
        items.append(nav(21, wps[-1][0], wps[-1][1], 0.0))         # NAV_LAND at last wp
    else:
        items.append(cmd(20, [0.0] * 4))                           # NAV_RETURN_TO_LAUNCH
    return items


def fence_items():
    poly = [offset(400, -400), offset(400, 400), offset(-400, 400), offset(-400, -400)]
    out = []
    for lat, lon in poly:
        it = nav(5001, lat, lon, 0.0)
        it["frame"] = 5
        it["param1"] = float(len(poly))
        out.append(it)
    c = offset(-150, 0)
    it = nav(5004, c[0], c[1], 0.0)
    it["frame"] = 5
    it["param1"] = 40.0
    out.append(it)
    return out


def rally_items(frame=6):
    pts = [offset(0, -100), offset(-100, -100)]
    out = []
    for lat, lon in pts:
        it = nav(5100, lat, lon, ALT_REL)
        it["frame"] = frame
        out.append(it)
    return out


# ---------------------------------------------------------------- link
class Link:
    def __init__(self, url, autopilot):
        self.autopilot = autopilot
        self.m = mavutil.mavlink_connection(url, source_system=255, source_component=190, autoreconnect=True)
        self.t0 = time.time()
        self.events = []            # statustext / mode / arm changes
        self.pending_text = {}
        self.texts_since = []
        self.seen = {}
        self.last = {}
        self.boot_ms = None
        self.mode = None
        self.armed = None
        self.target = None
        self.last_hb = 0.0
        self.px4_log = None

    def tick(self):
        now = time.time()
        if now - self.last_hb >= 1.0:
            self.last_hb = now
            self.m.mav.heartbeat_send(mavutil.mavlink.MAV_TYPE_GCS, mavutil.mavlink.MAV_AUTOPILOT_INVALID, 0, 0, 0)

    def console(self):
        """New lines of the PX4 console log (--px4-log), if given."""
        if not self.px4_log:
            return []
        with open(self.px4_log, errors="replace") as fh:
            fh.seek(self.px4_log_pos)
            data = fh.read()
            self.px4_log_pos = fh.tell()
        return [ln.strip() for ln in data.splitlines() if ln.strip()]

    def t(self):
        return round(time.time() - self.t0, 2)

    def boot_s(self):
        return None if self.boot_ms is None else round(self.boot_ms / 1000.0, 2)

    def _handle(self, msg):
        tp = msg.get_type()
        if tp == "BAD_DATA":
            return
        if self.target and msg.get_srcSystem() != self.target[0]:
            return
        self.seen[tp] = self.seen.get(tp, 0) + 1
        self.last[tp] = msg
        if hasattr(msg, "time_boot_ms"):
            self.boot_ms = msg.time_boot_ms
        if tp == "STATUSTEXT":
            tid = getattr(msg, "id", 0)
            txt = msg.text
            if tid:
                buf = self.pending_text.setdefault(tid, [])
                buf.append(txt)
                if len(txt) < 50:
                    self._text(msg.severity, "".join(buf))
                    del self.pending_text[tid]
            else:
                self._text(msg.severity, txt)
        elif tp == "HEARTBEAT" and msg.autopilot != mavutil.mavlink.MAV_AUTOPILOT_INVALID:
            mode = (msg.base_mode, msg.custom_mode)
            armed = bool(msg.base_mode & mavutil.mavlink.MAV_MODE_FLAG_SAFETY_ARMED)
            if mode[1] != (self.mode[1] if self.mode else None):
                self.events.append({"t_s": self.t(), "boot_s": self.boot_s(), "mode": self.mode_name(msg)})
            if armed != self.armed:
                self.events.append({"t_s": self.t(), "boot_s": self.boot_s(), "armed": armed})
            self.mode, self.armed = mode, armed

    def mode_name(self, hb):
        if self.autopilot == "px4":
            main = (hb.custom_mode >> 16) & 0xFF
            sub = (hb.custom_mode >> 24) & 0xFF
            return "custom_mode=%d main=%d sub=%d" % (hb.custom_mode, main, sub)
        names = mavutil.mode_mapping_acm
        return "%s(%d)" % (names.get(hb.custom_mode, "?"), hb.custom_mode)

    def _text(self, sev, txt):
        e = {"t_s": self.t(), "boot_s": self.boot_s(), "severity": sev, "statustext": txt}
        self.events.append(e)
        self.texts_since.append(txt)
        print("  [%6.1f] STATUSTEXT %s" % (e["t_s"], txt), file=sys.stderr)

    def recv(self, types=None, timeout=1.0, cond=None):
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                return None
            self.tick()
            msg = self.m.recv_match(blocking=True, timeout=min(left, 0.2))
            if msg is None:
                continue
            self._handle(msg)
            if self.target and msg.get_srcSystem() != self.target[0]:
                continue
            if types is None or msg.get_type() in types:
                if cond is None or cond(msg):
                    return msg

    def pump(self, seconds):
        self.recv(types=["__none__"], timeout=seconds)

    def wait_heartbeat(self):
        while True:
            hb = self.recv(["HEARTBEAT"], timeout=60)
            if hb is None:
                raise SystemExit("no heartbeat")
            if hb.autopilot != mavutil.mavlink.MAV_AUTOPILOT_INVALID:
                self.target = (hb.get_srcSystem(), hb.get_srcComponent())
                self._handle(hb)
                return hb

    # -- commands
    def command(self, command, params, timeout=3.0, retries=2):
        p = list(params) + [0.0] * (7 - len(params))
        for _ in range(retries + 1):
            self.m.mav.command_long_send(self.target[0], self.target[1], command, 0, *p)
            ack = self.recv(["COMMAND_ACK"], timeout=timeout, cond=lambda m: m.command == command)
            if ack is not None:
                return ack.result
        return None

    def command_int(self, command, frame, params, x, y, z, timeout=3.0):
        self.m.mav.command_int_send(self.target[0], self.target[1], frame, command, 0, 0,
                                    params[0], params[1], params[2], params[3], x, y, z)
        ack = self.recv(["COMMAND_ACK"], timeout=timeout, cond=lambda m: m.command == command)
        return None if ack is None else ack.result

    def param_get(self, name, timeout=2.0):
        for _ in range(3):
            self.m.mav.param_request_read_send(self.target[0], self.target[1], name.encode(), -1)
            pv = self.recv(["PARAM_VALUE"], timeout=timeout, cond=lambda m: m.param_id == name)
            if pv is not None:
                return pv
        return None

    def param_set(self, name, value, ptype, timeout=2.0):
        self.m.mav.param_set_send(self.target[0], self.target[1], name.encode(), float(value), ptype)
        return self.recv(["PARAM_VALUE"], timeout=timeout, cond=lambda m: m.param_id == name)

    def set_mode_px4(self, main, sub=0):
        return self.command(176, [1, main, sub])

    def set_mode_ardu(self, custom):
        return self.command(176, [mavutil.mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED, custom])

    def arm(self, arm=True, force=False):
        return self.command(400, [1 if arm else 0, 21196 if force else 0], timeout=3.0, retries=0)

    # -- mission protocol
    def upload(self, items, mtype):
        res = {"request_types": [], "ack": None, "error": None}
        n = len(items)
        sent_seqs = set()
        self.m.mav.mission_count_send(self.target[0], self.target[1], n, mtype)
        deadline = time.time() + 20
        while time.time() < deadline:
            msg = self.recv(["MISSION_REQUEST", "MISSION_REQUEST_INT", "MISSION_ACK"], timeout=3.0,
                            cond=lambda m: getattr(m, "mission_type", 0) == mtype)
            if msg is None:
                if not sent_seqs:
                    self.m.mav.mission_count_send(self.target[0], self.target[1], n, mtype)
                continue
            if msg.get_type() == "MISSION_ACK":
                res["ack"] = msg.type
                res["ack_name"] = mavutil.mavlink.enums["MAV_MISSION_RESULT"][msg.type].name
                return res
            if msg.get_type() not in res["request_types"]:
                res["request_types"].append(msg.get_type())
            s = msg.seq
            if s >= n:
                res["error"] = "request for seq %d >= count" % s
                continue
            it = items[s]
            self.m.mav.mission_item_int_send(
                self.target[0], self.target[1], s, it["frame"], it["command"], 0,
                1 if it["autocontinue"] else 0, it["param1"], it["param2"], it["param3"], it["param4"],
                it["x"], it["y"], it["z"], mtype)
            sent_seqs.add(s)
        res["error"] = "timeout"
        return res

    def download(self, mtype):
        res = {"count": None, "items": [], "error": None}
        cnt = None
        for _ in range(3):
            self.m.mav.mission_request_list_send(self.target[0], self.target[1], mtype)
            cnt = self.recv(["MISSION_COUNT"], timeout=3.0, cond=lambda m: getattr(m, "mission_type", 0) == mtype)
            if cnt is not None:
                break
        if cnt is None:
            res["error"] = "no MISSION_COUNT"
            return res
        res["count"] = cnt.count
        for s in range(cnt.count):
            got = None
            for _ in range(3):
                self.m.mav.mission_request_int_send(self.target[0], self.target[1], s, mtype)
                got = self.recv(["MISSION_ITEM_INT", "MISSION_ITEM"], timeout=3.0,
                                cond=lambda m: m.seq == s and getattr(m, "mission_type", 0) == mtype)
                if got is not None:
                    break
            if got is None:
                res["error"] = "no item %d" % s
                break
            if got.get_type() != "MISSION_ITEM_INT":
                res["error"] = "got %s for seq %d" % (got.get_type(), s)
            res["items"].append(from_msg(got))
        self.m.mav.mission_ack_send(self.target[0], self.target[1], 0, mtype)
        return res


# ---------------------------------------------------------------- phases
ARDU_PARAMS = ["FENCE_ENABLE", "FENCE_TYPE", "FENCE_ACTION", "FENCE_RADIUS", "FENCE_ALT_MAX", "FENCE_MARGIN",
               "FENCE_TOTAL", "FENCE_AUTOENABLE", "RALLY_INCL_HOME", "RALLY_LIMIT_KM", "RALLY_TOTAL",
               "BATT_CAPACITY", "BATT_FS_LOW_ACT", "BATT_LOW_MAH", "BATT_LOW_VOLT", "FS_GCS_ENABLE",
               "WPNAV_SPEED", "RTL_ALT", "ARMING_CHECK", "SYSID_THISMAV", "MAV_SYSID", "DISARM_DELAY"]
PX4_PARAMS = ["GF_ACTION", "GF_MAX_HOR_DIST", "GF_MAX_VER_DIST", "GF_SOURCE", "GF_PREDICT", "RTL_TYPE",
              "RTL_RETURN_ALT", "COM_DISARM_PRFLT", "NAV_ACC_RAD", "MIS_DIST_1WP", "MIS_TAKEOFF_ALT",
              "COM_LOW_BAT_ACT", "BAT_LOW_THR", "COM_ARM_WO_GPS", "MPC_XY_CRUISE", "MAV_SYS_ID"]
PREARM_BIT = 0x10000000


def request_streams(L):
    if L.autopilot == "ardupilot":
        L.m.mav.request_data_stream_send(L.target[0], L.target[1], mavutil.mavlink.MAV_DATA_STREAM_ALL, 4, 1)
        for mid in (1, 193, 24, 33):  # SYS_STATUS, EKF_STATUS_REPORT, GPS_RAW_INT, GLOBAL_POSITION_INT
            L.m.mav.command_long_send(L.target[0], L.target[1], 511, 0, mid, 500000, 0, 0, 0, 0, 0)


def phase_streams(L, out, seconds=10.0):
    before = dict(L.seen)
    L.pump(seconds)
    names = sorted(k for k in L.seen if L.seen[k] > before.get(k, 0))
    rates = {k: round((L.seen[k] - before.get(k, 0)) / seconds, 1) for k in names}
    out["streams"] = {"seconds": seconds, "messages_hz": rates}


def sample(L):
    ss = L.last.get("SYS_STATUS")
    ekf = L.last.get("EKF_STATUS_REPORT")
    gps = L.last.get("GPS_RAW_INT")
    est = L.last.get("ESTIMATOR_STATUS")
    s = {"t_s": L.t(), "boot_s": L.boot_s(),
         "ekf_flags": None if ekf is None else ekf.flags,
         "estimator_status_flags": None if est is None else est.flags,
         "prearm_ok": None, "sensors_present": None, "sensors_enabled": None, "sensors_health": None,
         "gps_fix": None if gps is None else gps.fix_type,
         "gps_sats": None if gps is None else gps.satellites_visible,
         "statustext": L.texts_since[:]}
    if ss is not None:
        s["sensors_present"] = ss.onboard_control_sensors_present
        s["sensors_enabled"] = ss.onboard_control_sensors_enabled
        s["sensors_health"] = ss.onboard_control_sensors_health
        if ss.onboard_control_sensors_present & PREARM_BIT:
            s["prearm_ok"] = bool(ss.onboard_control_sensors_health & PREARM_BIT)
    L.texts_since.clear()
    return s


def phase_readiness(L, out, max_s=150.0):
    tl = []
    out["readiness"] = tl
    start = time.time()
    if L.autopilot == "ardupilot":
        r = L.set_mode_ardu(4)  # GUIDED
        out.setdefault("notes", []).append("readiness: DO_SET_MODE GUIDED ack=%s at t=%.1fs" % (r, L.t()))
    last_arm = 0.0
    first_try = None
    accepted = None
    while time.time() - start < max_s:
        L.pump(2.0)
        s = sample(L)
        if time.time() - last_arm >= 4.0:
            last_arm = time.time()
            L.texts_since.clear()
            res = L.arm(True)
            L.pump(0.7)
            s["arm_attempt"] = {"result": res, "statustext": L.texts_since[:]}
            L.texts_since.clear()
            if first_try is None:
                first_try = s["arm_attempt"]
            if res == 0:
                accepted = s
                tl.append(s)
                break
        tl.append(s)
        print("  readiness %s" % json.dumps({k: s[k] for k in ("t_s", "boot_s", "ekf_flags", "prearm_ok", "sensors_health")}),
              file=sys.stderr)
    summary = {"first_arm_attempt": first_try,
               "arm_accepted_t_s": None if accepted is None else accepted["t_s"],
               "arm_accepted_boot_s": None if accepted is None else accepted["boot_s"]}
    if accepted is not None:
        L.pump(1.0)
        summary["disarm_result"] = L.arm(False)
        L.pump(1.0)
    out["readiness_summary"] = summary


def phase_params(L, out):
    names = ARDU_PARAMS if L.autopilot == "ardupilot" else PX4_PARAMS
    params = out.setdefault("params", {})
    types = out.setdefault("param_types", {})
    for n in names:
        pv = L.param_get(n)
        if pv is None:
            params[n] = None
            continue
        types[n] = mavutil.mavlink.enums["MAV_PARAM_TYPE"][pv.param_type].name
        if L.autopilot == "px4" and pv.param_type in (5, 6):  # PX4 sends INT32 bytewise in the float
            params[n] = struct.unpack("<i", struct.pack("<f", pv.param_value))[0]
        else:
            params[n] = f32(pv.param_value)


def record_list(L, out, key, items, mtype):
    up = L.upload(items, mtype)
    L.pump(0.5)
    down = L.download(mtype)
    out["lists"][key] = {
        "sent": [jsonable_item(i) for i in items],
        "on_board": [jsonable_item(i) for i in down["items"]],
        "upload": up,
        "download_count": down["count"],
        "download_error": down["error"],
    }
    print("  %s: upload %s, %d items back" % (key, up, len(down["items"])), file=sys.stderr)
    return up, down


def phase_lists(L, out):
    out.setdefault("lists", {})
    ap = L.autopilot
    record_list(L, out, "mission_land_variant", mission_items(ap, "land"), 0)
    if ap == "px4":
        record_list(L, out, "mission_mount_variant", mission_items(ap, "mount"), 0)
    record_list(L, out, "mission", mission_items(ap), 0)
    record_list(L, out, "fence", fence_items(), 1)
    record_list(L, out, "rally", rally_items(6), 2)
    L.texts_since.clear()
    L.pump(3.0)
    if L.texts_since:
        out["notes"].append("STATUSTEXT within 3 s after the uploads: %s" % L.texts_since)
    L.texts_since.clear()


GEOFENCE_BIT = 1 << 20  # MAV_SYS_STATUS_GEOFENCE


def fence_bits(L):
    L.pump(1.5)
    ss = L.last.get("SYS_STATUS")
    if ss is None:
        return None
    return {"present": bool(ss.onboard_control_sensors_present & GEOFENCE_BIT),
            "enabled": bool(ss.onboard_control_sensors_enabled & GEOFENCE_BIT),
            "healthy": bool(ss.onboard_control_sensors_health & GEOFENCE_BIT)}


def pval(L, name):
    pv = L.param_get(name)
    return None if pv is None else f32(pv.param_value)


def phase_fence_ardu(L, out):
    f = out.setdefault("fence_enable", {})
    f["FENCE_ENABLE_before"] = pval(L, "FENCE_ENABLE")
    f["sys_status_geofence_before"] = fence_bits(L)
    L.texts_since.clear()
    f["DO_FENCE_ENABLE_1_ack"] = L.command(207, [1])
    f["sys_status_geofence_after_DO_FENCE_ENABLE_1"] = fence_bits(L)
    f["FENCE_ENABLE_after_DO_FENCE_ENABLE_1"] = pval(L, "FENCE_ENABLE")
    f["statustext_after_DO_FENCE_ENABLE_1"] = L.texts_since[:]
    L.texts_since.clear()
    f["DO_FENCE_ENABLE_0_ack"] = L.command(207, [0])
    f["sys_status_geofence_after_DO_FENCE_ENABLE_0"] = fence_bits(L)
    f["FENCE_ENABLE_after_DO_FENCE_ENABLE_0"] = pval(L, "FENCE_ENABLE")
    echo = L.param_set("FENCE_ENABLE", 1, mavutil.mavlink.MAV_PARAM_TYPE_INT8)
    f["PARAM_SET_FENCE_ENABLE_1_echo"] = None if echo is None else {
        "param_id": echo.param_id, "param_value": echo.param_value,
        "param_type": mavutil.mavlink.enums["MAV_PARAM_TYPE"][echo.param_type].name,
        "param_count": echo.param_count, "param_index": echo.param_index}
    f["sys_status_geofence_after_PARAM_SET_1"] = fence_bits(L)
    f["statustext_after_PARAM_SET"] = L.texts_since[:]
    L.texts_since.clear()
    f["FENCE_TYPE"] = pval(L, "FENCE_TYPE")
    # leave it disabled again for other phases
    L.param_set("FENCE_ENABLE", 0, mavutil.mavlink.MAV_PARAM_TYPE_INT8)
    f["sys_status_geofence_after_PARAM_SET_0"] = fence_bits(L)


def phase_fence_px4(L, out):
    f = out.setdefault("fence_enable", {})
    L.texts_since.clear()
    f["DO_FENCE_ENABLE_1_ack"] = L.command(207, [1])
    L.pump(1.0)
    f["statustext_after_DO_FENCE_ENABLE"] = L.texts_since[:]
    L.texts_since.clear()


def wait_alt(L, alt, timeout):
    end = time.time() + timeout
    while time.time() < end:
        m = L.recv(["GLOBAL_POSITION_INT"], timeout=1.0)
        if m is not None and m.relative_alt / 1000.0 >= alt:
            return m.relative_alt / 1000.0
    return None


def wait_disarmed(L, timeout):
    end = time.time() + timeout
    while time.time() < end:
        L.pump(1.0)
        if L.armed is False:
            return True
    return False


def arm_retry(L, seconds):
    end = time.time() + seconds
    res = None
    while time.time() < end:
        res = L.arm(True)
        if res == 0:
            return res
        L.pump(3.0)
    return res


def phase_rallyframes_px4(L, out, spec="6,0,5,3"):
    """Rally points in frames 6, 0, 5, 3: upload, read back, hop 80 m towards
    rally point 1, RTL. PX4 prints "RTL: unsupported MAV_FRAME" on its console
    (--px4-log); whether it also arrives as STATUSTEXT is recorded."""
    res = out.setdefault("px4_rally_frames", [])
    near = offset(0, -80)
    for f in spec.split(","):
        frame, fly = int(f.rstrip("g")), not f.endswith("g")
        r = {"frame": frame, "flown": fly}
        items = rally_items(frame)
        if frame in (0, 5):  # AMSL frames: home AMSL + 50
            for it in items:
                it["z"] = HOME_ALT_AMSL_PX4[0] + ALT_REL
        L.console()
        up = L.upload(items, 2)
        down = L.download(2)
        r["sent"] = [jsonable_item(i) for i in items]
        r["on_board"] = [jsonable_item(i) for i in down["items"]]
        r["upload_ack"] = up.get("ack")
        L.texts_since.clear()
        L.pump(3.0)
        r["statustext_on_ground"] = L.texts_since[:]
        con = L.console()
        r["console_unsupported_frame_on_ground"] = sum("unsupported MAV_FRAME" in c for c in con)
        L.texts_since.clear()
        if not fly:
            res.append(r)
            print("  rally frame %d (ground only): %s" % (frame, r), file=sys.stderr)
            continue
        r["takeoff_ack"] = L.command(22, [float("nan"), 0, 0, float("nan"), float("nan"), float("nan"), float("nan")])
        L.pump(0.5)
        r["arm_ack"] = arm_retry(L, 60)
        r["reached_alt"] = wait_alt(L, 2.0, 30)
        L.pump(1.0)
        # z = home AMSL + 15: PX4 1.15 was seen to take DO_REPOSITION z as AMSL even in frame 6
        # (z=15 in frame 6 made it descend and land); the track shows which it used.
        r["reposition_z"] = round(HOME_ALT_AMSL_PX4[0] + 15.0, 2)
        r["reposition_ack"] = L.command_int(192, 6, [-1, 1, 0, float("nan")], e7(near[0]), e7(near[1]), r["reposition_z"])
        r["track_reposition"] = track_for(L, 40, until=lambda p: p["east_m"] < -70)
        gp = L.last.get("GLOBAL_POSITION_INT")
        r["before_rtl_east_m"] = None if gp is None else round((gp.lon / 1e7 - HOME[1]) * 97_900, 1)
        L.texts_since.clear()
        L.console()
        r["rtl_ack"] = L.command(20, [])
        track = track_for(L, 90, until=lambda p: p["armed"] is False)
        r["track_after_rtl"] = track[::3] + track[-1:]
        r["statustext_after_rtl"] = L.texts_since[:]
        con = L.console()
        r["console_after_rtl"] = [c for c in con if "RTL" in c or "unsupported" in c][:12]
        r["console_unsupported_frame_after_rtl"] = sum("unsupported MAV_FRAME" in c for c in con)
        if L.armed:
            L.command(21, [])
            wait_disarmed(L, 60)
        gp = L.last.get("GLOBAL_POSITION_INT")
        if gp:
            r["landed_at"] = {"lat": gp.lat, "lon": gp.lon,
                              "east_m": round((gp.lon / 1e7 - HOME[1]) * 97_900, 1),
                              "north_m": round((gp.lat / 1e7 - HOME[0]) * M_PER_DEG_LAT, 1)}
        L.texts_since.clear()
        res.append(r)
        print("  rally frame %d: %s" % (frame, {k: v for k, v in r.items() if k not in ("sent", "on_board", "track_after_rtl")}), file=sys.stderr)
        L.pump(3.0)


HOME_ALT_AMSL_PX4 = [0.0]


def phase_reposition_px4(L, out):
    r = out.setdefault("px4_reposition_outside_fence", {})
    up = L.upload(mission_items("px4"), 0)
    r["mission_upload_ack"] = up.get("ack")
    L.upload(fence_items(), 1)
    L.texts_since.clear()
    r["set_mode_mission_ack"] = L.set_mode_px4(4, 4)
    L.pump(1.5)
    r["arm_ack"] = arm_retry(L, 60)
    r["reached_alt"] = wait_alt(L, 20.0, 60)
    r["statustext_takeoff"] = L.texts_since[:]
    L.texts_since.clear()
    tgt = offset(600, 0)
    r["target"] = {"north_m": 600, "east_m": 0}
    r["reposition_ack"] = L.command_int(192, 6, [-1, 1, 0, float("nan")], e7(tgt[0]), e7(tgt[1]), ALT_REL)
    L.console()
    modes = track_for(L, 60)
    r["track"] = modes
    r["statustext"] = L.texts_since[:]
    r["console"] = [c for c in L.console() if "INFO  [logger]" not in c][:20]
    L.texts_since.clear()
    L.command(21, [])
    wait_disarmed(L, 120)


def track_for(L, seconds, until=None):
    track = []
    end = time.time() + seconds
    while time.time() < end:
        L.pump(2.0)
        gp = L.last.get("GLOBAL_POSITION_INT")
        hb = L.last.get("HEARTBEAT")
        if gp:
            n = (gp.lat / 1e7 - HOME[0]) * M_PER_DEG_LAT
            e = (gp.lon / 1e7 - HOME[1]) * M_PER_DEG_LAT * math.cos(math.radians(HOME[0]))
            track.append({"t_s": L.t(), "north_m": round(n, 1), "east_m": round(e, 1),
                          "rel_alt_m": round(gp.relative_alt / 1000.0, 1),
                          "mode": L.mode_name(hb) if hb else None, "armed": L.armed})
            if until and until(track[-1]):
                break
    return track


def phase_fenceflight_ardu(L, out):
    """FENCE_TYPE 7, radius 150, polygon +-400 m uploaded: what is refused and what breaches."""
    r = out.setdefault("ardupilot_fence_flight", {})
    L.upload(fence_items(), 1)
    for n, v, t in (("FENCE_TYPE", 7, mavutil.mavlink.MAV_PARAM_TYPE_INT8),
                    ("FENCE_RADIUS", 150, mavutil.mavlink.MAV_PARAM_TYPE_REAL32),
                    ("FENCE_ENABLE", 1, mavutil.mavlink.MAV_PARAM_TYPE_INT8)):
        pv = L.param_set(n, v, t)
        r["set_" + n] = None if pv is None else pv.param_value
    L.texts_since.clear()
    r["mode_guided_ack"] = L.set_mode_ardu(4)
    arm = None
    for _ in range(10):
        arm = L.arm(True)
        L.pump(1.0)
        if arm == 0:
            break
        L.pump(3.0)
    r["arm_ack"] = arm
    r["statustext_arming"] = L.texts_since[:]
    L.texts_since.clear()
    r["takeoff_ack"] = L.command(22, [0, 0, 0, 0, 0, 0, 20])
    r["reached_alt"] = wait_alt(L, 18.0, 40)
    a = offset(100, 0)
    r["reposition_100m_north_ack"] = L.command_int(192, 6, [-1, 1, 0, 0], e7(a[0]), e7(a[1]), 20.0)
    b = offset(250, 0)
    r["reposition_250m_north_ack"] = L.command_int(192, 6, [-1, 1, 0, 0], e7(b[0]), e7(b[1]), 20.0)
    r["statustext_reposition"] = L.texts_since[:]
    L.texts_since.clear()
    # now disable, fly out past the circle, re-enable: breach
    r["DO_FENCE_ENABLE_0_ack"] = L.command(207, [0])
    r["reposition_250m_fence_off_ack"] = L.command_int(192, 6, [-1, 1, 0, 0], e7(b[0]), e7(b[1]), 20.0)
    r["track_out"] = track_for(L, 60, until=lambda p: p["north_m"] > 190)
    L.texts_since.clear()
    r["DO_FENCE_ENABLE_1_ack_outside"] = L.command(207, [1])
    r["track_after_enable"] = track_for(L, 50, until=lambda p: p["north_m"] < 60)
    r["statustext_after_enable"] = L.texts_since[:]
    L.texts_since.clear()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--autopilot", choices=["ardupilot", "px4"], required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--firmware", default=None, help="firmware label for the JSON")
    ap.add_argument("--phases", default=None)
    ap.add_argument("--max-ready-s", type=float, default=150.0)
    ap.add_argument("--rally-frames", default="6,0,5,3",
                    help="PX4 rally frames to try, in order; suffix g = upload and watch on the ground only")
    ap.add_argument("--px4-log", default=None, help="PX4 console log (WORKDIR/px4.log) to scan for RTL warnings")
    a = ap.parse_args()
    default = {"ardupilot": "readiness,streams,params,lists,fence,fenceflight",
               "px4": "streams,readiness,params,lists,fence,rallyframes,reposition"}[a.autopilot]
    phases = (a.phases or default).split(",")
    out = {"firmware": a.firmware or a.autopilot,
           "recorded_with": "scripts/sitl/record_replies.py " + " ".join(sys.argv[1:]),
           "lists": {}, "params": {}, "notes": []}
    L = Link(a.url, a.autopilot)
    if a.px4_log:
        L.px4_log = a.px4_log
        L.px4_log_pos = os.path.getsize(a.px4_log)
    hb = L.wait_heartbeat()
    out["heartbeat"] = {"sysid": L.target[0], "compid": L.target[1], "autopilot": hb.autopilot, "type": hb.type,
                        "mavlink_version": 2 if L.m.WIRE_PROTOCOL_VERSION == "2.0" else 1}
    request_streams(L)
    if a.autopilot == "px4":
        hp = L.recv(["HOME_POSITION"], timeout=5)
        if hp is None:
            L.command(512, [242])
            hp = L.recv(["HOME_POSITION"], timeout=5)
        if hp is not None:
            HOME_ALT_AMSL_PX4[0] = hp.altitude / 1000.0
            out["notes"].append("PX4 HOME_POSITION at connect: lat %d lon %d alt %.2f m AMSL" % (hp.latitude, hp.longitude, hp.altitude / 1000.0))
    for ph in phases:
        print("== phase %s (t=%.1f)" % (ph, L.t()), file=sys.stderr)
        try:
            {"readiness": lambda: phase_readiness(L, out, a.max_ready_s),
             "streams": lambda: phase_streams(L, out),
             "params": lambda: phase_params(L, out),
             "lists": lambda: phase_lists(L, out),
             "fence": lambda: (phase_fence_ardu if a.autopilot == "ardupilot" else phase_fence_px4)(L, out),
             "rallyframes": lambda: phase_rallyframes_px4(L, out, a.rally_frames),
             "reposition": lambda: phase_reposition_px4(L, out),
             "fenceflight": lambda: phase_fenceflight_ardu(L, out)}[ph]()
        except Exception as e:  # keep what we have
            out["notes"].append("phase %s failed: %r" % (ph, e))
            print("phase %s failed: %r" % (ph, e), file=sys.stderr)
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=1)
    out["events"] = L.events
    out["messages_seen"] = dict(sorted(L.seen.items()))
    with open(a.out, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")
    print("wrote %s" % a.out, file=sys.stderr)


if __name__ == "__main__":
    main()
