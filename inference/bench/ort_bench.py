"""Model-only benchmark, the onnxruntime side (see bench_model.rs).

Usage: ort_bench.py MODEL DIR THREADS REPS

Runs the full graph to its decoded output `tower_0/detections` (the
graph's own decoder), on the same pre-processed inputs as tract.
"""
import json
import pathlib
import resource
import sys
import time

import numpy as np
import onnxruntime as ort

model, d, threads, reps = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
load_s = time.perf_counter() - t0
name = sess.get_inputs()[0].name
xs = [np.fromfile(p, dtype="<f4").reshape(1, 512, 512, 3) for p in sorted(d.glob("*.f32"))]
sess.run(["tower_0/detections"], {name: xs[0]})
ms = []
for _ in range(reps):
    for x in xs:
        t = time.perf_counter()
        sess.run(["tower_0/detections"], {name: x})
        ms.append((time.perf_counter() - t) * 1000)
ms.sort()
pct = lambda p: ms[round((len(ms) - 1) * p)]
print(json.dumps({
    "engine": "onnxruntime " + ort.__version__,
    "threads": threads,
    "runs": len(ms),
    "median_ms": round(pct(0.5), 2),
    "p95_ms": round(pct(0.95), 2),
    "min_ms": round(ms[0], 2),
    "load_s": round(load_s, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
}))
