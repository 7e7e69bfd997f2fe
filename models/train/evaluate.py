"""Decoding as the eye decodes (inference/src/decode.rs, centernet), and the
metrics: box AP50 per class and the image-level fire-or-smoke alarm.

Decoding (same as the Rust decoder): a cell of the heat-map [H,W,C] is a
peak if its score is >= the threshold and no neighbour in its 3x3 window in
the same class plane is higher (ties are peaks); peaks highest first, at
most `max_detections`; box = (4*col - l, 4*row - t, 4*col + r, 4*row + b)
from the sides [H,W,4]; boxes that are not finite or empty are dropped;
boxes clamped to the input (the eye clamps to the frame; with the whole
image stretched to the input that is the same) and empty ones dropped;
then greedy class-aware NMS at the manifest's IoU.
"""

from __future__ import annotations

import numpy as np

STRIDE = 4


def decode(heat: np.ndarray, wh: np.ndarray, thresholds, max_det: int = 100, nms_iou: float = 0.5,
           max_total: int = 300):
    """heat [H,W,C] (after sigmoid), wh [H,W,4] -> list of (x1,y1,x2,y2,score,cls)."""
    h, w, c = heat.shape
    thr = np.asarray(thresholds, dtype=np.float32).reshape(1, 1, c)
    pad = np.pad(heat, ((1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    mx = np.max(np.stack([pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]), axis=0)
    peak = (heat >= thr) & (heat >= mx) & ~np.isnan(heat)
    ys, xs, ks = np.nonzero(peak)
    scores = heat[ys, xs, ks]
    idx = ys * w * c + xs * c + ks
    order = np.lexsort((idx, -scores))[:max_det]
    dets = []
    for o in order:
        y, x, k, s = ys[o], xs[o], ks[o], scores[o]
        l, t, r, b = wh[y, x]
        cx, cy = x * STRIDE, y * STRIDE
        box = (cx - l, cy - t, cx + r, cy + b)
        if all(np.isfinite(box)) and box[2] > box[0] and box[3] > box[1]:
            # As the eye: mapped to the frame (here the input itself) and
            # clamped to it; empty boxes dropped; then NMS.
            cb = (min(max(box[0], 0), w * STRIDE), min(max(box[1], 0), h * STRIDE),
                  min(max(box[2], 0), w * STRIDE), min(max(box[3], 0), h * STRIDE))
            if (cb[2] - cb[0]) * (cb[3] - cb[1]) > 0:
                dets.append((*[float(v) for v in cb], float(s), int(k)))
    return nms(dets, nms_iou, max_total)


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    i = iw * ih
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i
    return i / u if u > 0 else 0.0


def nms(dets, thr, max_total):
    dets = sorted(dets, key=lambda d: -d[4])
    keep = []
    for d in dets:
        if len(keep) >= max_total:
            break
        if not any(k[5] == d[5] and iou(k, d) > thr for k in keep):
            keep.append(d)
    return keep


def ap50(per_image, num_classes):
    """per_image: list of (dets, gts) with gts [cls,x1,y1,x2,y2]. VOC
    all-point interpolated AP at IoU 0.5, per class."""
    out = []
    for k in range(num_classes):
        recs = []
        npos = 0
        for dets, gts in per_image:
            g = [b[1:] for b in gts if b[0] == k]
            npos += len(g)
            used = [False] * len(g)
            for d in sorted([d for d in dets if d[5] == k], key=lambda d: -d[4]):
                best, bj = 0.5, -1
                for j, gb in enumerate(g):
                    if used[j]:
                        continue
                    v = iou(d[:4], gb)
                    if v >= best:
                        best, bj = v, j
                if bj >= 0:
                    used[bj] = True
                recs.append((d[4], bj >= 0))
        if npos == 0:
            out.append(float("nan"))
            continue
        recs.sort(key=lambda r: -r[0])
        tp = np.cumsum([r[1] for r in recs]) if recs else np.zeros(0)
        fp = np.cumsum([not r[1] for r in recs]) if recs else np.zeros(0)
        rec = tp / npos
        prec = tp / np.maximum(tp + fp, 1e-9)
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        for i in range(len(mpre) - 2, -1, -1):
            mpre[i] = max(mpre[i], mpre[i + 1])
        i = np.nonzero(mrec[1:] != mrec[:-1])[0]
        out.append(float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])))
    return out


def image_scores(per_image):
    """Highest fire/smoke detection score of each image (0 if none)."""
    return np.array([max([d[4] for d in dets], default=0.0) for dets, _ in per_image])


def alarm_at(scores, positive, t):
    pos, neg = positive, ~positive
    fired = scores >= t
    return {
        "threshold": float(t),
        "recall": float(fired[pos].mean()) if pos.any() else float("nan"),
        "false_alarm": float(fired[neg].mean()) if neg.any() else float("nan"),
        "positives": int(pos.sum()),
        "negatives": int(neg.sum()),
        "missed": int((~fired[pos]).sum()),
        "false_alarms": int(fired[neg].sum()),
    }


def choose_threshold(scores, positive, max_fa, floor=0.05):
    """Lowest threshold (highest recall) whose false-alarm rate is <= max_fa;
    candidates are the scores themselves (rounded up to 3 decimals)."""
    neg = np.sort(scores[~positive])[::-1]
    allowed = int(np.floor(max_fa * len(neg) + 1e-9))
    # Must be above the (allowed+1)-th highest negative score.
    bound = neg[allowed] if allowed < len(neg) else 0.0
    t = max(floor, float(np.ceil((bound + 1e-6) * 1000) / 1000))
    return min(t, 1.0)


def pr_curve(scores, positive, ts=None):
    ts = ts if ts is not None else [round(x, 2) for x in np.arange(0.05, 1.0, 0.05)]
    return [alarm_at(scores, positive, t) for t in ts]
