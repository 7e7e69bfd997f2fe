"""Model-only benchmark, the referee side: Python onnxruntime (the PyPI
wheel) on the same raw-heads graph, the same pre-processed inputs (the
`.f32` files `bench_model dump` writes) and the same threads as the eye's
backends in `bench_model run` (see run.sh, which interleaves the two).

Usage: ort_bench.py MODEL DIR THREADS REPS [H W]

Runs the graph to its raw CenterNet heads (`tower_0/keypoints`,
`tower_0/wh`): the outputs the eye reads. Prints one JSON line.
"""
import json
import pathlib
import resource
import sys
import time

import numpy as np
import onnxruntime as ort

model, d, threads, reps = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
h, w = (int(sys.argv[5]), int(sys.argv[6])) if len(sys.argv) > 6 else (512, 512)
outputs = ["tower_0/keypoints", "tower_0/wh"]
t0 = time.perf_counter()
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
# As the eye's ort backend: worker threads do not spin between runs.
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
load_s = time.perf_counter() - t0
name = sess.get_inputs()[0].name
xs = [np.fromfile(p, dtype="<f4").reshape(1, h, w, 3) for p in sorted(d.glob("*.f32"))]
sess.run(outputs, {name: xs[0]})
ms = []
for _ in range(reps):
    for x in xs:
        t = time.perf_counter()
        sess.run(outputs, {name: x})
        ms.append((time.perf_counter() - t) * 1000)
ms.sort()
pct = lambda p: ms[round((len(ms) - 1) * p)]
print(json.dumps({
    "engine": "python onnxruntime " + ort.__version__,
    "threads": threads,
    "input": [1, h, w, 3],
    "runs": len(ms),
    "median_ms": round(pct(0.5), 2),
    "p95_ms": round(pct(0.95), 2),
    "min_ms": round(ms[0], 2),
    "load_s": round(load_s, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
