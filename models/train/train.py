"""Train, select, evaluate and export the fire/smoke CenterNet.

Called by `models/train/run` (which makes the virtualenv and the extra
negatives first); see models/train/README.md. Every step is a fixed
function of the seed and the inputs; training resumes from the last
epoch's checkpoint in the work directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate as ev  # noqa: E402
import graph  # noqa: E402
import prep  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
START = REPO / "models" / "centernet_mnv3_coco80_heads.onnx"
START_SHA = "73a2368dcd23852843d24af969d29eb73b1fcac88655eb83bdb67ddf8afc5273"
NAME = "fire_smoke_centernet_mnv3"


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ---------------------------------------------------------------- data

class Images:
    """Decoded images kept in memory (RGB uint8)."""

    def __init__(self):
        self.cache = {}

    def get(self, path):
        if path not in self.cache:
            with Image.open(path) as im:
                self.cache[path] = np.asarray(im.convert("RGB"))
        return self.cache[path]


def augment(img: np.ndarray, boxes, size: int, rng: np.random.Generator, source: str):
    """Random crop (scale and aspect jitter), flip, colour; -> (size x size
    RGB float32, boxes [cls,x1,y1,x2,y2] in output pixels)."""
    h, w = img.shape[:2]
    if source == "rgb":
        s = rng.uniform(0.55, 1.0)
        ar = math.exp(rng.uniform(-0.25, 0.25))
        cw = min(w, max(32, int(round(w * s * math.sqrt(ar)))))
        ch = min(h, max(32, int(round(h * s / math.sqrt(ar)))))
    elif source in ("air", "sim") and rng.random() < 0.5:
        # The whole frame, as the eye's whole-frame hazard model sees it.
        cw, ch = w, h
    else:  # wide aerial / street frames: tile-sized crops as the eye cuts them
        side = rng.uniform(0.35, 1.0) * min(h, w)
        ar = math.exp(rng.uniform(-0.25, 0.25))
        cw = min(w, int(side * math.sqrt(ar)))
        ch = min(h, int(side / math.sqrt(ar)))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    crop = Image.fromarray(img[y0:y0 + ch, x0:x0 + cw]).resize((size, size), Image.BILINEAR)
    sx, sy = size / cw, size / ch
    out = []
    for c, x1, y1, x2, y2 in boxes:
        a0 = (x2 - x1) * (y2 - y1)
        nx1, ny1 = max(x1, x0), max(y1, y0)
        nx2, ny2 = min(x2, x0 + cw), min(y2, y0 + ch)
        if nx2 <= nx1 or ny2 <= ny1:
            continue
        if (nx2 - nx1) * (ny2 - ny1) < 0.35 * a0:
            continue  # mostly cut away: neither a positive nor a negative
        b = [(nx1 - x0) * sx, (ny1 - y0) * sy, (nx2 - x0) * sx, (ny2 - y0) * sy]
        if b[2] - b[0] < 3 or b[3] - b[1] < 3:
            continue
        out.append([c] + b)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out = [[c, size - x2, y1, size - x1, y2] for c, x1, y1, x2, y2 in out]
    crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.7, 1.3))
    crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.7, 1.3))
    crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.6, 1.4))
    return np.asarray(crop, dtype=np.float32), out


def plain(img: np.ndarray, boxes, size: int):
    """Evaluation input: the whole image stretched to size x size (the
    manifest's `resize = "stretch"`)."""
    h, w = img.shape[:2]
    x = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), dtype=np.float32)
    sx, sy = size / w, size / h
    return x, [[c, x1 * sx, y1 * sy, x2 * sx, y2 * sy] for c, x1, y1, x2, y2 in boxes]


def targets(boxes, size: int, num_classes: int, alpha: float = 0.54):
    """CenterNet heat-map (elliptical Gaussians, TTFNet-style) and box
    targets with weights for every cell inside a box's Gaussian."""
    g = size // ev.STRIDE
    heat = np.zeros((g, g, num_classes), np.float32)
    reg = np.zeros((g, g, 4), np.float32)
    wgt = np.zeros((g, g), np.float32)
    best = np.zeros((g, g), np.float32)
    ys, xs = np.mgrid[0:g, 0:g].astype(np.float32)
    # Large boxes first so that small ones win the cells they share.
    for c, x1, y1, x2, y2 in sorted(boxes, key=lambda b: -(b[3] - b[1]) * (b[4] - b[2])):
        bw, bh = x2 - x1, y2 - y1
        cx = min(g - 1, max(0, int(round((x1 + x2) / 2 / ev.STRIDE))))
        cy = min(g - 1, max(0, int(round((y1 + y2) / 2 / ev.STRIDE))))
        sx = max(alpha * bw / 6 / ev.STRIDE, 0.5)
        sy = max(alpha * bh / 6 / ev.STRIDE, 0.5)
        gau = np.exp(-((xs - cx) ** 2) / (2 * sx * sx) - ((ys - cy) ** 2) / (2 * sy * sy))
        heat[:, :, int(c)] = np.maximum(heat[:, :, int(c)], gau)
        heat[cy, cx, int(c)] = 1.0
        area = gau > 0.05
        # Anchor point of a cell is (4*col, 4*row); it must lie in the box.
        inside = (xs * ev.STRIDE > x1) & (xs * ev.STRIDE < x2) & (ys * ev.STRIDE > y1) & (ys * ev.STRIDE < y2)
        m = area & (inside | ((xs == cx) & (ys == cy)))
        if not m.any():
            continue
        w_obj = gau * m
        w_obj = w_obj / w_obj.sum() * math.log(max(bw * bh, 2.0))
        take = m & (gau >= best)
        reg[take] = [x1, y1, x2, y2]
        wgt[take] = w_obj[take]
        best[take] = gau[take]
    return heat, reg, wgt


def focal_loss(pred, gt):
    pred = pred.clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(pred) * (1 - pred) ** 2 * pos
    neg_loss = torch.log(1 - pred) * pred ** 2 * (1 - gt) ** 4 * neg
    # Normalised by the number of objects, but by at least one per image:
    # a batch of mostly negatives (few objects) must not weigh 10x more.
    n = torch.clamp(pos.sum(), min=float(pred.shape[0]))
    return -(pos_loss.sum() + neg_loss.sum()) / n


def giou_loss(wh, reg, wgt):
    """wh [B,g,g,4] predicted sides in pixels; reg target boxes; wgt."""
    b, g = wh.shape[0], wh.shape[1]
    ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    ax = (xs * ev.STRIDE).float()[None]
    ay = (ys * ev.STRIDE).float()[None]
    m = wgt > 0
    if not m.any():
        return wh.sum() * 0.0
    px1, py1 = (ax - wh[..., 0])[m], (ay - wh[..., 1])[m]
    px2, py2 = (ax + wh[..., 2])[m], (ay + wh[..., 3])[m]
    t = reg[m]
    w = wgt[m]
    pa = (px2 - px1).clamp(min=0) * (py2 - py1).clamp(min=0)
    ta = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    iw = (torch.min(px2, t[:, 2]) - torch.max(px1, t[:, 0])).clamp(min=0)
    ih = (torch.min(py2, t[:, 3]) - torch.max(py1, t[:, 1])).clamp(min=0)
    inter = iw * ih
    union = pa + ta - inter + 1e-6
    iou = inter / union
    ew = torch.max(px2, t[:, 2]) - torch.min(px1, t[:, 0])
    eh = torch.max(py2, t[:, 3]) - torch.min(py1, t[:, 1])
    enc = ew.clamp(min=0) * eh.clamp(min=0) + 1e-6
    giou = iou - (enc - union) / enc
    return ((1 - giou) * w).sum() / (w.sum() + 1e-6)


# ---------------------------------------------------------------- eval

def run_torch(net, xs_batch):
    with torch.no_grad():
        h, w = net(torch.from_numpy(np.stack(xs_batch)))
    return h.numpy(), w.numpy()


def evaluate_items(items, images, size, infer, thresholds_floor=0.01, nms_iou=0.5, batch=8):
    """-> list of (dets, gts) per item, dets above `thresholds_floor`."""
    per = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        xs, gts = [], []
        for it in chunk:
            x, b = plain(images.get(it["path"]), it["boxes"], size)
            xs.append(x)
            gts.append(b)
        hs, ws = infer(xs)
        for h, w, g in zip(hs, ws, gts):
            per.append((ev.decode(h, w, [thresholds_floor] * h.shape[-1], nms_iou=nms_iou), g))
    return per


def metrics(per, items, max_fa=None, threshold=None):
    positive = np.array([bool(it["boxes"]) for it in items])
    scores = ev.image_scores(per)
    aps = ev.ap50(per, len(prep.CLASSES))
    out = {"ap50": dict(zip(prep.CLASSES, aps))}
    if threshold is None and max_fa is not None:
        threshold = ev.choose_threshold(scores, positive, max_fa)
    if threshold is not None:
        out["alarm"] = ev.alarm_at(scores, positive, threshold)
        # The same, split by where the negatives come from.
        out["false_alarm_by_source"] = {}
        for src in ["rgb", "sim", "vtest", "air"]:
            sel = np.array([not it["boxes"] and it["source"] == src for it in items])
            if sel.any():
                out["false_alarm_by_source"][src] = {
                    "negatives": int(sel.sum()),
                    "false_alarms": int((scores[sel] >= threshold).sum()),
                }
        # Photos (every source but the training world's renders) and the
        # training world's aerial renders, each on its own.
        out["alarm_by_subset"] = {}
        for name, keep in (("photos", lambda it: it["source"] != "air"),
                           ("air", lambda it: it["source"] == "air")):
            sel = np.array([keep(it) for it in items])
            if sel.any():
                out["alarm_by_subset"][name] = ev.alarm_at(scores[sel], positive[sel], threshold)
    out["curve"] = ev.pr_curve(scores, positive)
    return out


def selection_score(m):
    """Validation score for model selection: mean AP50 plus the recall at
    <= 5 % false alarms."""
    aps = [v for v in m["ap50"].values() if not math.isnan(v)]
    return float(np.mean(aps)) + m["alarm"]["recall"]


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--neg-sim", default=str(REPO / "var/train/neg_sim"))
    ap.add_argument("--neg-vtest", default=str(REPO / "var/train/neg_vtest"))
    ap.add_argument("--work", default=str(REPO / "var/train/run"))
    ap.add_argument("--out-dir", default=str(REPO / "models"))
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr-mult", type=float, default=2.0)
    ap.add_argument("--wh-weight", type=float, default=5.0)
    ap.add_argument("--rgb-neg-repeat", type=int, default=2,
                    help="times each fire-smoke-rgb negative is drawn per epoch")
    ap.add_argument("--sim-neg-repeat", type=int, default=4,
                    help="times each sim negative is drawn per epoch (each time another crop)")
    ap.add_argument("--air-neg-repeat", type=int, default=2,
                    help="times each training-world render without fire is drawn per epoch")
    ap.add_argument("--air", default=str(REPO / "var/train/air"),
                    help="render_incidents output of world_scenario.toml (fire positives and negatives)")
    ap.add_argument("--max-fa", type=float, default=0.05, help="false-alarm budget on val")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="few images, 1 epoch, small input")
    ap.add_argument("--eval-only", action="store_true", help="skip training (use best.pt)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if a.smoke:
        a.epochs, a.size = 1, 128

    if sha256(START) != START_SHA:
        raise SystemExit(f"{START}: sha256 is not the start model's {START_SHA}")

    # 1. Deduplicate and split.
    t0 = time.time()
    items, dropped, n_in, n_groups = prep.prepare(Path(a.data), Path(a.neg_sim), Path(a.neg_vtest), a.seed,
                                                  air=Path(a.air))
    split_sha = prep.write_split(work / "split.json", items, dropped, n_in, n_groups, a.seed)
    split = json.loads((work / "split.json").read_text())
    log(f"data: {n_in} images in, {len(dropped)} near-duplicates dropped, {len(items)} kept in "
        f"{n_groups} groups ({time.time() - t0:.0f} s); split sha256 {split_sha[:12]}")
    by = {s: [it for it in split["items"] if it["split"] == s] for s in ["train", "val", "test"]}
    for s, its in by.items():
        log(f"  {s}: {len(its)} images, {sum(bool(i['boxes']) for i in its)} with fire/smoke")
    if a.smoke:
        rs = np.random.default_rng(a.seed)
        for s, n in (("train", 24), ("val", 16), ("test", 16)):
            its = by[s]
            pos = [i for i in its if i["boxes"]]
            neg = [i for i in its if not i["boxes"]]
            by[s] = [pos[j] for j in sorted(rs.choice(len(pos), min(n // 2, len(pos)), replace=False))] + \
                    [neg[j] for j in sorted(rs.choice(len(neg), min(n // 2, len(neg)), replace=False))]

    images = Images()
    start = onnx.load(str(START))
    nc = len(prep.CLASSES)
    net = graph.OnnxNet(start, nc, seed=a.seed)
    # The head (CenternetHead/*) learns a.head_lr_mult times faster than the
    # backbone. The graph has no BatchNorm left: the whole net at 1e-3 and
    # 4e-4 diverged within 40 steps in a probe; 2e-4 (head 6e-4) diverged
    # in the second epoch of full runs.
    head = {v for k, v in net.pnames.items() if "CenternetHead" in k}
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in net.named_parameters() if n not in head], "mult": 1.0},
         {"params": [p for n, p in net.named_parameters() if n in head], "mult": a.head_lr_mult}],
        lr=a.lr, weight_decay=1e-4)
    config = {k: v for k, v in vars(a).items() if k not in ("threads", "eval_only", "out_dir", "work")}
    config["split_sha256"] = split_sha

    # 2. Train (resumable).
    ckpt = work / "last.pt"
    epoch0, best_score, history, train_seconds = 0, -1.0, [], 0.0
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        if st["config"] != config:
            raise SystemExit(f"{ckpt} was made with another configuration or split:\n"
                             f"  it: {st['config']}\n  now: {config}\n"
                             f"remove {work} (or pass another --work) to start again")
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        epoch0, best_score, history = st["epoch"], st["best_score"], st["history"]
        train_seconds = st["train_seconds"]
        log(f"resuming after epoch {epoch0} ({train_seconds / 60:.1f} min of training so far)")

    train = by["train"]
    pos_idx = [i for i, it in enumerate(train) if it["boxes"]]
    neg_idx = [i for i, it in enumerate(train) if not it["boxes"]]
    # Negatives are drawn several times an epoch (another random crop each
    # time): a first run drew each once and its highest-scoring val
    # negatives were sim frames (people on grass), then CCTV frames.
    repeat = {"rgb": a.rgb_neg_repeat, "sim": a.sim_neg_repeat, "vtest": 1, "air": a.air_neg_repeat}
    neg_draws = [i for i in neg_idx for _ in range(repeat[train[i]["source"]])]
    steps_per_epoch = math.ceil((len(pos_idx) + len(neg_draws)) / a.batch)
    total_steps = steps_per_epoch * a.epochs
    warm = min(steps_per_epoch, total_steps // 10 + 1)

    def lr_at(step):
        if step < warm:
            return a.lr * (step + 1) / warm
        p = (step - warm) / max(1, total_steps - warm)
        return a.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))

    def infer_torch(xs):
        return run_torch(net, xs)

    for epoch in range(epoch0, 0 if a.eval_only else a.epochs):
        t_ep = time.time()
        net.train()
        rng = np.random.default_rng([a.seed, epoch])
        order = [int(i) for i in rng.permutation(pos_idx + neg_draws)]
        sums = np.zeros(3)
        skipped = 0
        for s in range(steps_per_epoch):
            batch = order[s * a.batch:(s + 1) * a.batch]
            if not batch:
                break
            xs, hs, rs, ws = [], [], [], []
            for j in batch:
                it = train[j]
                r = np.random.default_rng([a.seed, epoch, s, int(j)])
                x, b = augment(images.get(it["path"]), it["boxes"], a.size, r, it["source"])
                h, rg, w = targets(b, a.size, nc)
                xs.append(x), hs.append(h), rs.append(rg), ws.append(w)
            step = epoch * steps_per_epoch + s
            for gparam in opt.param_groups:
                gparam["lr"] = lr_at(step) * gparam["mult"]
            heat, wh = net(torch.from_numpy(np.stack(xs)))
            lh = focal_loss(heat, torch.from_numpy(np.stack(hs)))
            lw = giou_loss(wh, torch.from_numpy(np.stack(rs)), torch.from_numpy(np.stack(ws)))
            loss = lh + a.wh_weight * lw
            opt.zero_grad()
            if not torch.isfinite(loss) or loss.item() > 1000:
                skipped += 1  # a divergent batch: no update
                if skipped > 20:
                    raise SystemExit("training diverged (20 batches with a loss > 1000): lower --lr")
                continue
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            sums += [loss.item(), lh.item(), lw.item()]
        sums /= max(1, steps_per_epoch)
        net.eval()
        per = evaluate_items(by["val"], images, a.size, infer_torch)
        m = metrics(per, by["val"], max_fa=a.max_fa)
        score = selection_score(m)
        train_seconds += time.time() - t_ep
        rec = {"epoch": epoch + 1, "skipped_batches": skipped, "loss": sums[0], "heat": sums[1], "giou": sums[2],
               "val_ap50": m["ap50"], "val_alarm": m["alarm"], "score": score,
               "seconds": time.time() - t_ep}
        history.append(rec)
        log(f"epoch {epoch + 1}/{a.epochs} loss {sums[0]:.3f} (heat {sums[1]:.3f}, giou {sums[2]:.3f}) "
            f"val AP50 fire {m['ap50']['fire']:.3f} smoke {m['ap50']['smoke']:.3f} recall "
            f"{m['alarm']['recall']:.3f} at fa {m['alarm']['false_alarm']:.3f} (t {m['alarm']['threshold']:.3f}) "
            f"{time.time() - t_ep:.0f} s" + (f", {skipped} divergent batches skipped" if skipped else ""))
        if score > best_score:
            best_score = score
            torch.save({"net": net.state_dict(), "epoch": epoch + 1}, work / "best.pt.tmp")
            os.replace(work / "best.pt.tmp", work / "best.pt")
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                    "best_score": best_score, "history": history, "config": config,
                    "train_seconds": train_seconds}, work / "last.pt.tmp")
        os.replace(work / "last.pt.tmp", ckpt)

    # 3. The model chosen on val; thresholds chosen on val.
    best = torch.load(work / "best.pt", weights_only=False)
    net.load_state_dict(best["net"])
    net.eval()
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{NAME}.onnx"
    graph.export(net, start, str(onnx_path), nc)
    log(f"exported epoch {best['epoch']} to {onnx_path}")

    # 4. Evaluate the exported ONNX with onnxruntime (what ships).
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])

    def infer_ort(xs):
        h, w = sess.run([graph.HEATMAP, graph.SIZES], {graph.INPUT: np.stack(xs)})
        return h, w

    val_per = evaluate_items(by["val"], images, a.size, infer_ort)
    val_m = metrics(val_per, by["val"], max_fa=a.max_fa)
    threshold = val_m["alarm"]["threshold"]
    test_per = evaluate_items(by["test"], images, a.size, infer_ort)
    test_m = metrics(test_per, by["test"], threshold=threshold)
    result = {
        "model": onnx_path.name,
        "model_sha256": sha256(onnx_path),
        "model_bytes": onnx_path.stat().st_size,
        "input_size": a.size,
        "classes": prep.CLASSES,
        "threshold": threshold,
        "chosen_epoch": best["epoch"],
        "epochs": a.epochs,
        "train_minutes": round(train_seconds / 60, 1),
        "threads": a.threads,
        "seed": a.seed,
        "config": config,
        "split": prep.summary([it for s in by.values() for it in s]),
        "dedup": {k: split[k] for k in ("hash", "duplicate_max_bits", "group_max_bits", "images_in",
                                        "images_kept", "duplicates_dropped", "groups")},
        "val": val_m,
        "test": test_m,
        "history": history,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }
    (work / "metrics.json").write_text(json.dumps(result, indent=1))
    log(f"val: threshold {threshold:.3f} recall {val_m['alarm']['recall']:.3f} false alarm "
        f"{val_m['alarm']['false_alarm']:.3f}")
    for name, x in test_m["alarm_by_subset"].items():
        log(f"TEST {name}: recall {x['recall']:.3f} ({x['positives']} positive) false alarm "
            f"{x['false_alarm']:.3f} ({x['negatives']} negative)")
    t = test_m["alarm"]
    log(f"TEST ({t['positives']} positive, {t['negatives']} negative images): recall {t['recall']:.3f} "
        f"false alarm {t['false_alarm']:.3f} at {threshold:.3f}; AP50 fire {test_m['ap50']['fire']:.3f} "
        f"smoke {test_m['ap50']['smoke']:.3f}")
    import card
    card.write(result, out_dir, NAME)


if __name__ == "__main__":
    main()
