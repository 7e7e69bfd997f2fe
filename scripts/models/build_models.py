"""Build the eye's derived CenterNet models from the committed original.

    scripts/models/build            (the wrapper renders the calibration frames first)

From `models/centernet_mnv3_coco80.onnx` (sha256 checked) it writes

- `models/centernet_mnv3_coco80_heads.onnx`: FP32, cut to the raw heads
  (`tower_0/keypoints`, `tower_0/wh`), input dims N, H, W symbolic, every
  squeeze-excite Reshape's `new_shape__*` element 0 set to -1 (so any batch
  and any H, W multiple of 32 run); checked with onnx.checker and against
  the original on 512×512 inputs (largest difference ≤ 1e-4);
- `models/centernet_mnv3_coco80_heads_int8.onnx`: onnxruntime static
  quantization of it (quant_pre_process, then quantize_static: QDQ,
  per-channel int8 weights, uint8 activations), calibrated on vtest.avi
  frames and sim renders of the demo scenario at the eye's input sizes;
- their manifests `models/centernet_mnv3_coco80_heads{,_int8}.toml` with
  the sha256 of what was written.

Everything is a fixed function of the inputs (fixed frame lists, no
randomness), so a rerun writes the same bytes (the build prints the
sha256s; compare with the manifests).

Options: --renders DIR (the calibration renders, from
sim/examples/render_incidents.rs; the wrapper makes them), --method
minmax|entropy|percentile (the calibration, default the one chosen by
measurement: docs/benchmarks/int8.md), --candidates DIR (write one INT8
model per calibration method there, for the comparison, and leave
models/ alone).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiancha_models as tm  # noqa: E402

# Calibration frames. vtest.avi: every 50th frame from 5 (16 frames);
# the report scores other frames (30, 80, …). Renders: the calibration set
# the wrapper renders (headings 45/135/225/315°, offset 4 m along, 6 m
# right), disjoint from the report's (0/90/180/270°).
VTEST_CALIBRATION = list(range(5, 795, 50))
# Inputs per calibration chunk (all of one shape; bounds the memory of the
# histogram calibrators, which keep every activation of a chunk).
CHUNK = 8
DEFAULT_METHOD = "entropy"


def cut_heads(src: Path, dst: Path) -> None:
    model = onnx.load(str(src))
    model = utils.Extractor(model).extract_model([tm.INPUT], tm.OUTPUTS)
    g = model.graph
    # Symbolic batch, height, width.
    dims = g.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims, ["N", "H", "W"]):
        d.dim_param = name
    for o in g.output:
        od = o.type.tensor_type.shape.dim
        for d, name in zip(od, ["N", "H_4", "W_4"]):
            d.dim_param = name
    # Stale static shapes of intermediate tensors.
    del g.value_info[:]
    # Squeeze-excite reshapes to [1, C, 1, 1] → [-1, C, 1, 1].
    changed = 0
    for i, init in enumerate(g.initializer):
        if init.name.startswith("new_shape__"):
            a = numpy_helper.to_array(init).copy()
            assert a.ndim == 1 and a[0] == 1 and list(a[2:]) == [1, 1], (init.name, a)
            a[0] = -1
            g.initializer[i].CopyFrom(numpy_helper.from_array(a, init.name))
            changed += 1
    reshapes = [n for n in g.node if n.op_type == "Reshape"]
    for n in reshapes:
        assert n.input[1].startswith("new_shape__"), n.name
    for n in g.node:
        if n.op_type == "Resize":
            assert n.input[2] and not (len(n.input) > 3 and n.input[3]), f"{n.name} uses sizes"
    model.doc_string = (
        "CenterNet MobileNetV3 COCO-80 raw heads (tower_0/keypoints, tower_0/wh), dynamic N/H/W; "
        f"cut from centernet_mnv3_coco80.onnx sha256 {tm.ORIGINAL_SHA256} by scripts/models/build. "
        "Weights from @vladmandic/human 3.3.6 (MIT, Copyright (c) Vladimir Mandic)."
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(dst))
    print(f"heads: {len(g.node)} nodes, {changed} reshape shapes made batch-free, {len(reshapes)} reshapes")


def check_heads(original: Path, heads: Path, frames) -> None:
    """Same heads as the original on 512×512 inputs (onnxruntime without
    graph optimisations: identical arithmetic; with them, its fusions and
    layouts differ a little between the static and the dynamic graph);
    runs at batch 2 and 736×1280."""
    for optimize in (False, True):
        a = tm.session(original, optimize=optimize)
        b = tm.session(heads, optimize=optimize)
        worst = [0.0, 0.0]
        for name, bgr in frames:
            t = tm.slices(bgr, "whole512")[0].tensor
            ra = a.run(tm.OUTPUTS, {tm.INPUT: t})
            rb = b.run(tm.OUTPUTS, {tm.INPUT: t})
            for i, (x, y) in enumerate(zip(ra, rb)):
                assert x.shape == y.shape, (x.shape, y.shape)
                worst[i] = max(worst[i], float(np.abs(x - y).max()))
        how = "optimised" if optimize else "unoptimised"
        print(
            f"heads vs original at 512x512 on {len(frames)} frames ({how}): largest difference "
            f"keypoints {worst[0]:.2e}, wh {worst[1]:.2e} px"
        )
        # Unoptimised: the same arithmetic, must be within 1e-4. Optimised:
        # scores within 1e-4, box sides (up to ~250 px) within 1e-5 relative.
        if worst[0] > 1e-4 or worst[1] > (1e-4 if not optimize else 2.5e-3):
            raise SystemExit(f"the cut model differs from the original ({how}): {worst}")
    # Any batch, any multiple of 32.
    t1 = tm.slices(frames[0][1], "whole736")[0].tensor
    t2 = tm.slices(frames[1][1], "whole736")[0].tensor
    one = b.run(tm.OUTPUTS, {tm.INPUT: t2})
    two = b.run(tm.OUTPUTS, {tm.INPUT: np.concatenate([t1, t2])})
    assert two[0].shape == (2, 184, 320, 80) and two[1].shape == (2, 184, 320, 4), two[0].shape
    d = max(float(np.abs(one[i][0] - two[i][1]).max()) for i in range(2))
    print(f"batch 2 at 736x1280: shapes {two[0].shape} {two[1].shape}, batch item vs alone {d:.2e}")
    if d > 1e-3:
        raise SystemExit(f"batch 2 differs from batch 1 by {d}")


class Reader:
    """Calibration inputs, one [1, H, W, 3] tensor at a time, in a fixed
    order: every 512×512 input (whole frames, then tiles), then every
    736×1280 one, so that each chunk of `CHUNK` inputs has one shape
    (onnxruntime's histogram calibrators stack a chunk's tensors)."""

    def __init__(self, frames):
        small = [(bgr, "whole512", 0) for _, bgr in frames]
        small += [(bgr, "tiles", k) for _, bgr in frames for k in range(6)]
        large = [(bgr, "whole736", 0) for _, bgr in frames]
        assert len(small) % CHUNK == 0 and len(large) % CHUNK == 0, (len(small), len(large))
        self.items = small + large
        self.set_range(0, len(self.items))

    def get_next(self):
        if self.i >= self.end:
            return None
        bgr, mode, k = self.items[self.i]
        self.i += 1
        return {tm.INPUT: tm.slices(bgr, mode)[k].tensor}

    def set_range(self, start_index: int, end_index: int):
        self.i, self.end = start_index, min(end_index, len(self.items))

    def rewind(self):
        self.set_range(0, len(self.items))

    def __len__(self):
        return len(self.items)


def quantize(heads: Path, dst: Path, reader: Reader, method: str, work: Path) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    prep = work / "heads_prep.onnx"
    if not prep.exists():
        # Symbolic shape inference gives up on the Resizes of symbolic
        # sizes; ONNX shape inference and the optimisation still run.
        quant_pre_process(str(heads), str(prep), skip_symbolic_shape=True)
    calib = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    # Chunks via CalibStridedMinMax (the calibrators' set_range path: the
    # range or histogram is merged chunk by chunk, for every method).
    extra = {"CalibStridedMinMax": CHUNK}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    reader.rewind()
    quantize_static(
        str(prep),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=calib,
        extra_options=extra,
    )
    m = onnx.load(str(dst))
    # quant_pre_process's shape inference leaves value_info with the
    # symbols N, H, W on intermediate tensors; tract then cannot unify them
    # with a concrete input shape ("Impossible to unify Sym(N) with
    # Val(1)"). Runtimes infer these shapes themselves.
    del m.graph.value_info[:]
    m.doc_string = (
        "CenterNet MobileNetV3 COCO-80 raw heads, INT8 (onnxruntime static quantization, QDQ, "
        f"per-channel int8 weights, uint8 activations, {method} calibration on vtest.avi frames "
        "and tiancha sim renders); from centernet_mnv3_coco80_heads.onnx by scripts/models/build. "
        "Weights from @vladmandic/human 3.3.6 (MIT, Copyright (c) Vladimir Mandic)."
    )
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"int8 ({method}): {dst.stat().st_size / 1e6:.2f} MB, ops {ops}")


MANIFEST = """\
# {title}
# Made by scripts/models/build from centernet_mnv3_coco80.onnx (provenance,
# licence and how: PROVENANCE.md); same decoder, classes and thresholds as
# centernet_mnv3_coco80.toml. The graph is only the raw heads and its input
# is N×H×W×3 with H, W any multiple of 32: the shape below is the default
# (one 512×512 slice); an eye may run it at another size.
name = "{name}"
model = "{name}.onnx"
sha256 = "{sha}"
description = "{description}"

[input]
name = "tower_0/images:0"
shape = [1, 512, 512, 3]
layout = "nhwc"
color = "rgb"
resize = "stretch"
scale = 1.0

[output]
decoder = "centernet"
heatmap = "tower_0/keypoints"
sizes = "tower_0/wh"
stride = 4
max_detections = 100

[classes]
file = "coco80_labels.txt"
threshold = 0.3
# Person at 0.45 as in centernet_mnv3_coco80.toml (stones and posts below).
thresholds = {{ person = 0.45 }}

[nms]
iou = 0.6
class_aware = true

[events]
people = ["person"]
intruders = ["person", "bicycle", "car", "motorcycle", "bus", "truck", "boat"]
hazards = []
{quantization}"""


def write_manifests(method: str) -> None:
    fp = MANIFEST.format(
        title="CenterNet MobileNetV3 COCO-80, raw heads only, FP32, dynamic input size.",
        name="centernet_mnv3_coco80_heads",
        sha=tm.sha256(tm.HEADS),
        description=(
            "CenterNet MobileNetV3 COCO-80 raw heads, dynamic N/H/W "
            "(from @vladmandic/human 3.3.6, MIT), FP32"
        ),
        quantization='\n[quantization]\nprecision = "fp32"\n',
    )
    q = MANIFEST.format(
        title="CenterNet MobileNetV3 COCO-80, raw heads only, INT8 (QDQ), dynamic input size.",
        name="centernet_mnv3_coco80_heads_int8",
        sha=tm.sha256(tm.HEADS_INT8),
        description=(
            "CenterNet MobileNetV3 COCO-80 raw heads, dynamic N/H/W "
            "(from @vladmandic/human 3.3.6, MIT), INT8 static QDQ"
        ),
        quantization=(
            "\n# onnxruntime quantize_static: QuantizeLinear/DequantizeLinear pairs,\n"
            "# per-channel int8 weights, uint8 activations. The eye refuses a\n"
            "# manifest whose precision does not match the graph.\n"
            "[quantization]\n"
            'precision = "int8"\n'
            'scheme = "qdq"\n'
            f'calibration = "{method}: 16 vtest.avi frames and 48 sim renders of '
            'examples/shangrao/scenario.toml, as 512x512 whole frames, 2x3 tiles and 736x1280 whole frames"\n'
        ),
    )
    (tm.MODELS / "centernet_mnv3_coco80_heads.toml").write_text(fp)
    (tm.MODELS / "centernet_mnv3_coco80_heads_int8.toml").write_text(q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--renders", type=Path, required=True)
    ap.add_argument("--method", default=DEFAULT_METHOD, choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--candidates", type=Path, help="write an INT8 model per method here instead")
    args = ap.parse_args()
    args.renders = args.renders.resolve()
    if args.candidates:
        args.candidates = args.candidates.resolve()

    got = tm.sha256(tm.ORIGINAL)
    if got != tm.ORIGINAL_SHA256:
        raise SystemExit(f"{tm.ORIGINAL} has sha256 {got}, expected {tm.ORIGINAL_SHA256}")

    vtest = tm.vtest_frames(VTEST_CALIBRATION)
    renders, _ = tm.renders(args.renders)
    print(f"calibration frames: {len(vtest)} vtest.avi, {len(renders)} renders")

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        # quant_pre_process leaves temporary files in the working directory.
        os.chdir(work)
        if args.candidates:
            args.candidates.mkdir(parents=True, exist_ok=True)
            heads = args.candidates / "heads.onnx"
            cut_heads(tm.ORIGINAL, heads)
            reader = Reader(vtest + renders)
            print(f"calibration inputs: {len(reader)}")
            for method in ["minmax", "entropy", "percentile"]:
                quantize(heads, args.candidates / f"int8_{method}.onnx", reader, method, work)
            return

        cut_heads(tm.ORIGINAL, tm.HEADS)
        check_heads(tm.ORIGINAL, tm.HEADS, vtest[:3] + renders[:2])
        reader = Reader(vtest + renders)
        print(f"calibration inputs: {len(reader)}")
        quantize(tm.HEADS, tm.HEADS_INT8, reader, args.method, work)
    write_manifests(args.method)
    for p in (tm.HEADS, tm.HEADS_INT8):
        print(f"{p.relative_to(tm.ROOT)}  {p.stat().st_size / 1e6:.2f} MB  sha256 {tm.sha256(p)}")


if __name__ == "__main__":
    main()
