"""Check that the eye decodes the exported model as the pipeline does.

Writes test images already at the model's input size (so that neither side
resizes), runs `tiancha detect --frames-out` on them (tract, no tiling) and
compares its detections with onnxruntime + evaluate.decode at the same
threshold. Usage (from the repository root, after a run):

  models/train/.venv/bin/python models/train/check_rust.py \
      --tiancha $CARGO_TARGET_DIR/release/tiancha [--threshold 0.1] [--n 24]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import evaluate as ev  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiancha", required=True)
    ap.add_argument("--manifest", default=str(REPO / "models/fire_smoke_centernet_mnv3.toml"))
    ap.add_argument("--split", default=str(REPO / "var/train/run/split.json"))
    ap.add_argument("--threshold", type=float, default=None, help="default: the manifest's")
    ap.add_argument("--n", type=int, default=24)
    a = ap.parse_args()
    man_path = Path(a.manifest)
    man = tomllib.loads(man_path.read_text())
    size = man["input"]["shape"][1]
    thr = a.threshold if a.threshold is not None else man["classes"]["threshold"]
    items = [it for it in json.loads(Path(a.split).read_text())["items"] if it["split"] == "test"]
    pos = [it for it in items if it["boxes"]][: a.n // 2]
    neg = [it for it in items if not it["boxes"]][: a.n - len(pos)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        text = man_path.read_text().replace(f'model = "{man["model"]}"', f'model = "{(man_path.parent / man["model"]).resolve()}"')
        text = "\n".join(l for l in text.splitlines() if not l.startswith("threshold ="))
        text = text.replace("[classes]", f"[classes]\nthreshold = {thr}")
        (tmp / "m.toml").write_text(text)
        xs = []
        for i, it in enumerate(pos + neg):
            im = Image.open(it["path"]).convert("RGB").resize((size, size), Image.BILINEAR)
            im.save(tmp / "in" / f"{i:03d}.png")
            xs.append(np.asarray(im, dtype=np.float32))
        cmd = [a.tiancha, "detect", "-m", str(tmp / "m.toml"), "--tiling", "off", "--threads", "1",
               "--out", str(tmp / "events.jsonl"), "--frames-out", str(tmp / "frames.jsonl"), str(tmp / "in")]
        subprocess.run(cmd, check=True, capture_output=True)
        frames = [json.loads(l) for l in (tmp / "frames.jsonl").read_text().splitlines()]
    sess = ort.InferenceSession(str(man_path.parent / man["model"]), providers=["CPUExecutionProvider"])
    worst_box, worst_score, n_rust, n_py, unmatched = 0.0, 0.0, 0, 0, 0
    classes = man["classes"]["names"]
    for f in frames:
        i = int(f["file"].split(".")[0])
        h, w = sess.run(None, {man["input"]["name"]: xs[i][None]})
        py = ev.decode(h[0], w[0], [thr] * len(classes), man["output"].get("max_detections", 100),
                       man["nms"]["iou"], 300)
        # --frames-out also lists detections down to the tracker's floor.
        rust = [d for d in f["detections"] if d["score"] >= thr]
        n_rust += len(rust)
        n_py += len(py)
        for d in rust:
            k = classes.index(d["class"]) if "class" in d else d["class_id"]
            b = d["bbox"] if "bbox" in d else d["box"]
            bb = [b["x1"], b["y1"], b["x2"], b["y2"]] if isinstance(b, dict) else b
            m = [p for p in py if p[5] == k]
            if not m:
                unmatched += 1
                continue
            best = min(m, key=lambda p: max(abs(p[j] - bb[j]) for j in range(4)))
            worst_box = max(worst_box, max(abs(best[j] - bb[j]) for j in range(4)))
            worst_score = max(worst_score, abs(best[4] - d["score"]))
    print(json.dumps({"images": len(frames), "threshold": thr, "rust_detections": n_rust,
                      "python_detections": n_py, "rust_unmatched": unmatched,
                      "max_box_diff_px": round(worst_box, 3), "max_score_diff": round(worst_score, 5)}))
    if n_rust != n_py or unmatched or worst_box > 1.0 or worst_score > 1e-3:
        raise SystemExit("the eye's decoding differs from the pipeline's")


if __name__ == "__main__":
    main()
