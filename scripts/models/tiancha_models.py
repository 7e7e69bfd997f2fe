"""What the model scripts share: paths, frames, the eye's pre-processing,
slicing, CenterNet decoding and NMS, replicated from the Rust code so that
onnxruntime sees the inputs the eye would give the model.

Replicated exactly (read the Rust code when changing either):

- `inference/src/detector.rs`: `tile_regions` (f32 arithmetic, rounding
  half away from zero), `touches_inner_edge` (2 px margin), the
  letterbox mapping back to frame pixels, clamping, NMS after merging;
- `inference/src/preprocess.rs`: OpenCV `resize` with INTER_LINEAR of the
  slice (stretch), BGR → RGB, values 0..255 (scale 1, no normalisation);
- `inference/src/decode.rs`: CenterNet 3×3 peaks (ties are peaks), per-class
  thresholds, top `max_detections`, box = cell × stride ∓ sides;
  class-aware greedy NMS (IoU > threshold suppresses), at most 300.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
ORIGINAL = MODELS / "centernet_mnv3_coco80.onnx"
ORIGINAL_SHA256 = "e6399b554870cc9d28b32c26b673986e14568f9c762d1b0eefaf68012e2adaa8"
HEADS = MODELS / "centernet_mnv3_coco80_heads.onnx"
HEADS_INT8 = MODELS / "centernet_mnv3_coco80_heads_int8.onnx"
INPUT = "tower_0/images:0"
OUTPUTS = ["tower_0/keypoints", "tower_0/wh"]
STRIDE = 4
MAX_DET = 100
NMS_IOU = 0.6
NMS_MAX = 300
PERSON = 0
# Default threshold 0.3, person 0.45: models/centernet_mnv3_coco80.toml.
THRESHOLDS = np.full(80, 0.3, dtype=np.float32)
THRESHOLDS[PERSON] = 0.45
# The companion's tiling (companion/src/eye.rs): 2 × 3, overlap 0.2.
TILES = (2, 3)
OVERLAP = 0.2
TILE_SIZE = (512, 512)  # (w, h) of the model input for a tile
WHOLE_SIZE = (1280, 736)  # (w, h) of the whole-frame input

VTEST_CANDIDATES = [
    os.environ.get("TIANCHA_VTEST", ""),
    "/usr/share/doc/opencv-doc/examples/data/vtest.avi",
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def vtest_path() -> Path:
    for c in VTEST_CANDIDATES:
        if c and Path(c).exists():
            return Path(c)
    raise SystemExit(
        "vtest.avi not found: install Debian's opencv-doc (apt-get install opencv-doc) "
        "or set TIANCHA_VTEST"
    )


def vtest_frames(indices: list[int]) -> list[tuple[str, np.ndarray]]:
    """BGR frames of vtest.avi by index (0-based), decoded in order."""
    cap = cv2.VideoCapture(str(vtest_path()))
    want = sorted(set(indices))
    out = {}
    i = 0
    while want and i <= want[-1]:
        ok, frame = cap.read()
        if not ok:
            break
        if i in want:
            out[i] = frame
        i += 1
    cap.release()
    missing = [k for k in want if k not in out]
    if missing:
        raise SystemExit(f"vtest.avi: frames {missing} could not be decoded")
    return [(f"vtest#{k}", out[k]) for k in indices]


def renders(dir_: Path) -> tuple[list[tuple[str, np.ndarray]], dict]:
    """The PNGs and truth written by sim/examples/render_incidents.rs."""
    truth = json.loads((dir_ / "truth.json").read_text())
    frames = []
    for f in truth["frames"]:
        img = cv2.imread(str(dir_ / f["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"{dir_ / f['file']}: cannot read")
        frames.append((f["file"], img))
    return frames, truth


# ------------------------------------------------------------ slicing


def _round(x: np.float32) -> int:
    """Rust's f32::round: half away from zero."""
    return int(math.floor(float(x) + 0.5)) if x >= 0 else -int(math.floor(-float(x) + 0.5))


def tile_regions(width: int, height: int, rows: int, cols: int, overlap: float):
    """`inference/src/detector.rs` `tile_regions`: (x, y, w, h) row by row."""
    ov = np.float32(overlap)

    def span(length: int, n: int):
        if n <= 1:
            return [(0, length)]
        nf = np.float32(n)
        size = np.float32(length) / (nf - (nf - np.float32(1.0)) * ov)
        step = size * (np.float32(1.0) - ov)
        out = []
        for i in range(n):
            fi = np.float32(i)
            start = _round(fi * step)
            if i == n - 1:
                end = length
            else:
                end = min(_round(fi * step + size), length)
            out.append((start, end - start))
        return out

    return [(x, y, w, h) for (y, h) in span(height, rows) for (x, w) in span(width, cols)]


@dataclass
class Slice:
    tensor: np.ndarray  # [1, H, W, 3] float32 RGB 0..255
    region: tuple[int, int, int, int]  # x, y, w, h in the frame
    is_tile: bool
    scale: tuple[np.float32, np.float32]


def prepare(bgr: np.ndarray, region, size) -> Slice:
    x, y, w, h = region
    roi = bgr[y : y + h, x : x + w]
    resized = cv2.resize(roi, size, interpolation=cv2.INTER_LINEAR)
    rgb = resized[:, :, ::-1].astype(np.float32)
    return Slice(
        tensor=rgb[None],
        region=region,
        is_tile=False,
        scale=(np.float32(size[0]) / np.float32(w), np.float32(size[1]) / np.float32(h)),
    )


def slices(bgr: np.ndarray, mode: str) -> list[Slice]:
    """`whole512`, `whole736` (the whole frame at 512×512 or 736×1280),
    or `tiles` (2×3 tiles at 512×512, no whole frame: the demo's setting)."""
    fh, fw = bgr.shape[:2]
    full = (0, 0, fw, fh)
    if mode == "whole512":
        return [prepare(bgr, full, TILE_SIZE)]
    if mode == "whole736":
        return [prepare(bgr, full, WHOLE_SIZE)]
    if mode == "tiles":
        out = []
        for r in tile_regions(fw, fh, TILES[0], TILES[1], OVERLAP):
            s = prepare(bgr, r, TILE_SIZE)
            s.is_tile = True
            out.append(s)
        return out
    raise ValueError(mode)


# ------------------------------------------------------------ decoding


def decode(heat: np.ndarray, wh: np.ndarray, thresholds=THRESHOLDS):
    """Raw heads of one image ([h, w, C], [h, w, 4]) → list of
    (x1, y1, x2, y2, score, class) in model-input pixels."""
    h, w, c = heat.shape
    padded = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    m = heat.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(m, padded[dy : dy + h, dx : dx + w], out=m)
    cand = (heat >= thresholds[None, None, :]) & (heat >= m) & ~np.isnan(heat)
    idx = np.flatnonzero(cand.reshape(-1))
    if idx.size == 0:
        return []
    vals = heat.reshape(-1)[idx]
    order = np.lexsort((idx, -vals))[:MAX_DET]
    out = []
    for j in order:
        i = int(idx[j])
        k = i % c
        cell = i // c
        x = np.float32((cell % w) * STRIDE)
        y = np.float32((cell // w) * STRIDE)
        s = wh.reshape(-1, 4)[cell]
        b = (x - s[0], y - s[1], x + s[2], y + s[3])
        if all(math.isfinite(float(v)) for v in b) and b[2] > b[0] and b[3] > b[1]:
            out.append((float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(vals[j]), k))
    return out


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    i = iw * ih
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i
    return 0.0 if u <= 0 else i / u


def nms(dets, thr=NMS_IOU, max_n=NMS_MAX):
    dets = sorted(dets, key=lambda d: -d[4])
    keep = []
    for d in dets:
        if len(keep) >= max_n:
            break
        if not any(k[5] == d[5] and iou(k, d) > thr for k in keep):
            keep.append(d)
    return keep


def _touches_inner_edge(b, region, fw, fh) -> bool:
    m = 2.0
    x0, y0, w, h = region
    x1, y1 = x0 + w, y0 + h
    return (
        (x0 > 0 and b[2] <= x0 + m)
        or (y0 > 0 and b[3] <= y0 + m)
        or (x1 < fw and b[0] >= x1 - m)
        or (y1 < fh and b[1] >= y1 - m)
    )


def to_frame(sl: Slice, dets, fw: int, fh: int):
    """Model-input pixels → frame pixels, clamped; tile boxes cut by an
    inner tile edge dropped (the Rust code, slice by slice)."""
    out = []
    sx, sy = sl.scale
    ox, oy = sl.region[0], sl.region[1]
    for x1, y1, x2, y2, s, k in dets:
        b = [
            float(np.float32(x1) / sx + np.float32(ox)),
            float(np.float32(y1) / sy + np.float32(oy)),
            float(np.float32(x2) / sx + np.float32(ox)),
            float(np.float32(y2) / sy + np.float32(oy)),
        ]
        b = [min(max(b[0], 0.0), fw), min(max(b[1], 0.0), fh), min(max(b[2], 0.0), fw), min(max(b[3], 0.0), fh)]
        if sl.is_tile and _touches_inner_edge(b, sl.region, fw, fh):
            continue
        if (b[2] - b[0]) * (b[3] - b[1]) > 0:
            out.append((b[0], b[1], b[2], b[3], s, k))
    return out


# ------------------------------------------------------------ running


def session(path: Path, threads: int = 2, optimize: bool = True) -> ort.InferenceSession:
    """onnxruntime on the CPU, `threads` intra-op threads, sequential."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.log_severity_level = 3
    # As the eye's onnxruntime backend: intra-op threads do not spin (on a
    # loaded 2-core machine spinning doubles the time).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def heads(sess: ort.InferenceSession, tensor: np.ndarray):
    heat, wh = sess.run(OUTPUTS, {INPUT: tensor})
    return heat, wh


def detect(sess, bgr: np.ndarray, mode: str, times: list | None = None):
    """Detections of one frame in frame pixels after NMS; appends the
    inference time (all slices, seconds) to `times`."""
    fh, fw = bgr.shape[:2]
    all_ = []
    prepared = slices(bgr, mode)
    t0 = time.perf_counter()
    outs = [heads(sess, s.tensor) for s in prepared]
    if times is not None:
        times.append(time.perf_counter() - t0)
    for s, (heat, wh) in zip(prepared, outs):
        all_.extend(to_frame(s, decode(heat[0], wh[0]), fw, fh))
    return nms(all_)


def median(v):
    return statistics.median(v) if v else float("nan")


def percentile(v, q):
    if not v:
        return float("nan")
    return float(np.percentile(np.asarray(v, dtype=np.float64), q))
