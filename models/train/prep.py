"""Data preparation: read the sources, drop near-duplicates, group what is
left, and split the groups into train / val / test (a group never crosses
splits). Deterministic: the same inputs and seed give the same split file.

Sources (each item: image path, boxes in pixels of the image, source tag):

- fire-smoke-rgb (CC BY 4.0, Roboflow user custom-thxhn): YOLO labels,
  class 0 `Fire` -> fire, 2 `smoke` -> smoke. Class 1 `default` is always a
  whole-image box on CCTV frames that show no fire or smoke (robberies,
  kitchens, staircases, a few burnt-out rooms and firefighters after the
  fact, an orange-lit street at night): we drop the box and use the image
  as a negative (a hard one for the burnt rooms and orange light).
- sim renders (this project's simulator, MIT/Apache): negatives.
- vtest.avi frames (Debian opencv-doc; Apache-2.0 AND BSD-3-Clause):
  negatives, one street scene, test only.
- sim aerial renders of the training world (`world_scenario.toml`, this
  project's): positives from the truth of each fire in view (flames ->
  fire, smoke plume -> smoke, clipped to the image) and negatives (frames
  with no fire in view), source `air`. Split by fire (AIR_SPLIT) and, for
  frames with no fire in view, by 100 m cell of the camera's position.

Grouping (union-find): same original file (Roboflow exports one source
file more than once, `img_974_jpg.rf.A` and `.rf.B`), same video clip
(`fire2_mp4-12` and `fire2_mp4-30`), same sim incident, same video for
vtest, or a perceptual-hash (dHash, 16x16 = 256 bits) distance <= GROUP_D.
Deduplication: within a group, an image whose dHash is within DUP_D of an
image already kept is dropped (the first by sorted name is kept).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from dataclasses import dataclass, field, asdict
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["fire", "smoke"]
# fire-smoke-rgb class ids -> ours (None = drop the box, keep the image).
RGB_CLASS_MAP = {0: 0, 1: None, 2: 1}

HASH_SIDE = 16  # dHash of (HASH_SIDE+1) x HASH_SIDE grey -> 256 bits
DUP_D = 12      # <= this many differing bits of 256: a duplicate (dropped)
GROUP_D = 24    # <= this: same group (never split apart)


@dataclass
class Item:
    path: str
    source: str                 # rgb | sim | vtest
    boxes: list = field(default_factory=list)  # [cls, x1, y1, x2, y2] in image px
    width: int = 0
    height: int = 0
    origin: str = ""            # original file / clip key for grouping
    default_class: bool = False  # fire-smoke-rgb `default` image
    dhash: str = ""
    group: int = -1
    split: str = ""

    @property
    def positive(self) -> bool:
        return bool(self.boxes)


def dhash(img: Image.Image, side: int = HASH_SIDE) -> np.ndarray:
    g = np.asarray(img.convert("L").resize((side + 1, side), Image.BILINEAR), dtype=np.int16)
    return (g[:, 1:] > g[:, :-1]).reshape(-1)


def rgb_origin(name: str) -> tuple[str, str]:
    """(original file stem, clip key) of a Roboflow export name."""
    stem = name.split(".rf.")[0]
    m = re.match(r"(.+_mp4)-\d+_jpg$", stem)
    clip = m.group(1) if m else stem
    return stem, clip


def scan_rgb(root: Path) -> list[Item]:
    items = []
    for folder in ["train", "valid", "test"]:
        for img in sorted((root / folder / "images").iterdir()):
            lab = root / folder / "labels" / (img.stem + ".txt")
            with Image.open(img) as im:
                w, h = im.size
            boxes, default = [], False
            if lab.exists():
                for line in lab.read_text().splitlines():
                    p = line.split()
                    if len(p) != 5:
                        continue
                    c = RGB_CLASS_MAP.get(int(p[0]))
                    if int(p[0]) == 1:
                        default = True
                    if c is None:
                        continue
                    cx, cy, bw, bh = (float(v) for v in p[1:])
                    x1, y1 = (cx - bw / 2) * w, (cy - bh / 2) * h
                    x2, y2 = (cx + bw / 2) * w, (cy + bh / 2) * h
                    boxes.append([c, max(0.0, x1), max(0.0, y1), min(w, x2), min(h, y2)])
            stem, clip = rgb_origin(img.name)
            items.append(Item(str(img), "rgb", boxes, w, h, clip, default))
    return items


def scan_dir(d: Path, source: str, origin_of) -> list[Item]:
    items = []
    if not d.is_dir():
        return items
    for img in sorted(d.glob("*.png")):
        with Image.open(img) as im:
            w, h = im.size
        items.append(Item(str(img), source, [], w, h, origin_of(img.name)))
    return items


# Smallest visible part of a truth box kept as a label, pixels of the
# 1280x720 render (the eye squeezes the frame 4x into the model's input).
AIR_MIN_SIDE = {0: 6.0, 1: 16.0}


def scan_air(d: Path) -> list[Item]:
    """Sim aerial renders with their truth (render_incidents' truth.json)."""
    truth = d / "truth.json"
    if not truth.is_file():
        return []
    t = json.loads(truth.read_text())
    w, h = t["width_px"], t["height_px"]
    items = []
    for f in t["frames"]:
        boxes, fire_ids = [], []
        for fire in f.get("fires", []):
            for cls, b in ((0, fire["flames_px"]), (1, fire.get("smoke_px"))):
                if b is None:
                    continue
                x1, y1, x2, y2 = max(0.0, b[0]), max(0.0, b[1]), min(w, b[2]), min(h, b[3])
                if x2 - x1 >= AIR_MIN_SIDE[cls] and y2 - y1 >= AIR_MIN_SIDE[cls]:
                    boxes.append([cls, x1, y1, x2, y2])
                    fire_ids.append(fire["incident_id"])
        if f["incident_id"] != "survey":
            origin = f["incident_id"]
        elif fire_ids:
            origin = fire_ids[0]
        else:
            # 100 m cells of the camera's position (about 1e-3 degree).
            origin = f"cell:{round(f['lat_deg'] * 1000)}:{round(f['lon_deg'] * 1000)}"
        items.append(Item(str(d / f["file"]), "air", boxes, w, h, origin))
    return items


# The training world's fires by split (the others train); cells of frames
# with no fire in view go by a seeded draw.
AIR_SPLIT = {"fire-05": "val", "fire-02": "test", "fire-09": "test"}


def air_split(origin: str, seed: int) -> str:
    if origin in AIR_SPLIT:
        return AIR_SPLIT[origin]
    if not origin.startswith("cell:"):
        return "train"
    u = random.Random(f"{seed}:{origin}").random()
    return "test" if u < 0.15 else ("val" if u < 0.30 else "train")


def sim_origin(name: str) -> str:
    # gathering-lane-1_a40_h000_o0.png -> sim:gathering-lane-1
    return "sim:" + name.split("_a")[0]


class UF:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, a):
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            self.p[max(a, b)] = min(a, b)


# Fixed split of the extra negatives (whole scenes, so that no scene is in
# two splits): sim incidents by id; vtest (one street scene) is test only.
SIM_SPLIT = {"sim:gathering-lane-1": "train", "sim:gathering-lane-3": "val", "sim:person-pond-bank": "test"}


def prepare(data_root: Path, neg_sim: Path, neg_vtest: Path, seed: int, fractions=(0.7, 0.15, 0.15),
            air: Path | None = None):
    items = scan_rgb(data_root / "fire-smoke-rgb")
    items += scan_dir(neg_sim, "sim", sim_origin)
    items += scan_dir(neg_vtest, "vtest", lambda n: "vtest")
    if air is not None:
        items += scan_air(air)
    hashes = []
    for it in items:
        with Image.open(it.path) as im:
            h = dhash(im)
        hashes.append(h)
        it.dhash = np.packbits(h).tobytes().hex()
    H = np.stack(hashes).astype(np.uint8)
    n = len(items)
    # Pairwise Hamming distances (n ~ 1.1k: fine in memory).
    D = (H[:, None, :] != H[None, :, :]).sum(-1)
    uf = UF(n)
    by_origin: dict[str, int] = {}
    for i, it in enumerate(items):
        key = f"{it.source}:{it.origin}"
        if key in by_origin:
            uf.union(i, by_origin[key])
        else:
            by_origin[key] = i
    # Near hashes join photos only: a render's identity is known (its
    # incident or cell), and renders of fields all look alike to a 256-bit
    # dHash, which would chain the whole sim into one group.
    rendered = np.array([it.source in ("sim", "air") for it in items])
    ii, jj = np.nonzero(np.triu(D <= GROUP_D, 1))
    for a, b in zip(ii, jj):
        if not (rendered[a] or rendered[b]):
            uf.union(int(a), int(b))
    # Deduplicate: keep the first (by path) of each near-identical set.
    order = sorted(range(n), key=lambda i: items[i].path)
    kept: list[int] = []
    dropped = []
    for i in order:
        dup = next((k for k in kept if D[i, k] <= DUP_D and uf.find(i) == uf.find(k)), None)
        if dup is None:
            kept.append(i)
        else:
            dropped.append((items[i].path, items[dup].path, int(D[i, dup])))
    kept_items = [items[i] for i in kept]
    roots = sorted({uf.find(i) for i in kept})
    gid = {r: g for g, r in enumerate(roots)}
    for i in kept:
        items[i].group = gid[uf.find(i)]

    # Split groups. Extra negatives by the fixed table; fire-smoke-rgb
    # groups by a seeded shuffle within strata (has fire, smoke only,
    # negative), filling train/val/test by image count.
    groups: dict[int, list[Item]] = {}
    for it in kept_items:
        groups.setdefault(it.group, []).append(it)
    rng = random.Random(seed)
    strata: dict[str, list[int]] = {}
    for g, its in sorted(groups.items()):
        srcs = {it.source for it in its}
        if "vtest" in srcs:
            for it in its:
                it.split = "test"
            continue
        if srcs == {"sim"}:
            split = SIM_SPLIT.get(its[0].origin, "train")
            for it in its:
                it.split = split
            continue
        if "air" in srcs:
            # A fire's split wins over a cell's; a group mixing the
            # training world with other sources (never seen) goes to train.
            origins = sorted({it.origin for it in its if it.source == "air"},
                             key=lambda o: (o.startswith("cell:"), o))
            split = air_split(origins[0], seed) if srcs == {"air"} else "train"
            for it in its:
                it.split = split
            continue
        has_fire = any(b[0] == 0 for it in its for b in it.boxes)
        has_smoke = any(b[0] == 1 for it in its for b in it.boxes)
        key = "fire" if has_fire else ("smoke" if has_smoke else "negative")
        strata.setdefault(key, []).append(g)
    names = ["train", "val", "test"]
    for key in sorted(strata):
        gs = strata[key]
        rng.shuffle(gs)
        total = sum(len(groups[g]) for g in gs)
        filled = {s: 0 for s in names}
        # Val and test first, each up to its share; the rest is train.
        for g in gs:
            size = len(groups[g])
            split = "train"
            for s, f in (("test", fractions[2]), ("val", fractions[1])):
                if filled[s] + size <= f * total + 0.5 * size:
                    split = s
                    break
            filled[split] += size
            for it in groups[g]:
                it.split = split
    return kept_items, dropped, len(items), len(roots)


def summary(items) -> dict:
    """Counts per split; `items` are Items or their dicts."""
    items = [asdict(it) if isinstance(it, Item) else it for it in items]
    out = {}
    for s in ["train", "val", "test"]:
        its = [it for it in items if it["split"] == s]
        out[s] = {
            "images": len(its),
            "groups": len({it["group"] for it in its}),
            "positive": sum(bool(it["boxes"]) for it in its),
            "negative": sum(not it["boxes"] for it in its),
            "negative_by_source": {
                src: sum(1 for it in its if not it["boxes"] and it["source"] == src)
                for src in ["rgb", "sim", "vtest", "air"]
            },
            "positive_by_source": {
                src: sum(1 for it in its if it["boxes"] and it["source"] == src)
                for src in ["rgb", "air"]
            },
            "with_fire": sum(any(b[0] == 0 for b in it["boxes"]) for it in its),
            "with_smoke": sum(any(b[0] == 1 for b in it["boxes"]) for it in its),
            "fire_boxes": sum(b[0] == 0 for it in its for b in it["boxes"]),
            "smoke_boxes": sum(b[0] == 1 for it in its for b in it["boxes"]),
        }
    return out


def write_split(path: Path, items, dropped, n_in, n_groups, seed):
    doc = {
        "seed": seed,
        "hash": f"dHash {HASH_SIDE + 1}x{HASH_SIDE} grey ({HASH_SIDE * HASH_SIDE} bits)",
        "duplicate_max_bits": DUP_D,
        "group_max_bits": GROUP_D,
        "images_in": n_in,
        "images_kept": len(items),
        "duplicates_dropped": len(dropped),
        "groups": n_groups,
        "summary": summary(items),
        "dropped": dropped,
        "items": [asdict(it) for it in items],
    }
    text = json.dumps(doc, indent=1)
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--neg-sim", default="var/train/neg_sim")
    ap.add_argument("--neg-vtest", default="var/train/neg_vtest")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--out", default="var/train/split.json")
    a = ap.parse_args()
    items, dropped, n_in, n_groups = prepare(Path(a.data), Path(a.neg_sim), Path(a.neg_vtest), a.seed)
    write_split(Path(a.out), items, dropped, n_in, n_groups, a.seed)
    print(json.dumps(summary(items), indent=1), len(dropped), "dropped,", n_groups, "groups")
