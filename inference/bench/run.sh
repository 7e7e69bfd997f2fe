#!/usr/bin/env bash
# Side-by-side benchmark of the eye (issue 5). Writes nothing into the
# repository; prints the figures docs/benchmarks/inference.md quotes.
#
#   inference/bench/run.sh [ROUNDS]
#
# 1. Model only: tract (the eye's detector step) vs Python onnxruntime, the
#    same model, the same 10 pre-processed vtest.avi frames, 2 threads each,
#    interleaved ROUNDS times (default 5) so machine noise hits both alike.
# 2. Pipeline: the whole eye over vtest.avi (bench_pipeline), then the raw
#    model again right after, for the pipeline/raw frame-rate ratio.
# 3. Live: vtest.avi replayed at its own 10 fps with newest-frame delivery,
#    as a camera feeds the eye: frame-to-event latency p50/p95 and drops.
# Peak RSS comes from /usr/bin/time -v (max resident set size).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
PY=${TIANCHA_PYTHON:-.venv/bin/python}
cargo build --release -q -p tiancha-inference --example bench_model --example bench_pipeline
BIN=$CARGO_TARGET_DIR/release/examples
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$BIN/bench_model" dump "$WORK/in" 10

rss() { /usr/bin/time -v "$@" 2>"$WORK/time.txt"; grep "Maximum resident" "$WORK/time.txt" | awk '{printf "  (peak RSS %.0f MB)\n", $6/1024}' >&2; }

echo "== model only: $ROUNDS rounds x 30 runs each, 2 threads =="
for r in $(seq "$ROUNDS"); do
  rss "$BIN/bench_model" tract "$WORK/in" 2 3 | tee -a "$WORK/tract.jsonl"
  rss "$PY" inference/bench/ort_bench.py models/centernet_mnv3_coco80.onnx "$WORK/in" 2 3 | tee -a "$WORK/ort.jsonl"
done
"$PY" - "$WORK/tract.jsonl" "$WORK/ort.jsonl" <<'PYEOF'
import json, statistics, sys
t = [json.loads(l) for l in open(sys.argv[1])]
o = [json.loads(l) for l in open(sys.argv[2])]
tm = statistics.median(x["median_ms"] for x in t)
om = statistics.median(x["median_ms"] for x in o)
ratios = [a["median_ms"] / b["median_ms"] for a, b in zip(t, o)]
print(f"tract median of round medians {tm:.1f} ms/frame; onnxruntime {om:.1f} ms/frame; "
      f"ratio tract/onnxruntime {tm/om:.2f} (per round: {', '.join(f'{r:.2f}' for r in ratios)})")
print(f"raw model frame rate (tract): {1000/tm:.1f} fps")
PYEOF

echo "== pipeline over vtest.avi (795 frames), then the raw model again =="
rss "$BIN/bench_pipeline" /usr/share/doc/opencv-doc/examples/data/vtest.avi 2 | tee "$WORK/pipe.json"
rss "$BIN/bench_model" tract "$WORK/in" 2 3 | tee "$WORK/tract2.json"
"$PY" - "$WORK/pipe.json" "$WORK/tract2.json" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1])); t = json.load(open(sys.argv[2]))
raw = 1000 / t["median_ms"]
own = 1000 / p["mean_infer_ms"]
print(f"pipeline {p['fps']:.2f} fps vs the model's own rate inside the same run {own:.2f} fps: {100*p['fps']/own:.0f} %")
print(f"pipeline {p['fps']:.1f} fps vs raw model (separate run) {raw:.1f} fps: {100*p['fps']/raw:.0f} %; "
      f"latency p50 {p['latency_p50_ms']:.0f} ms, p95 {p['latency_p95_ms']:.0f} ms; "
      f"prep {p['mean_prep_ms']:.1f} ms, infer {p['mean_infer_ms']:.1f} ms, post {p['mean_post_ms']:.1f} ms; "
      f"peak RSS {p['peak_rss_mb']:.0f} MB; {p['frames']} frames, {p['track_ids']} track ids, "
      f"{p['incidents_opened']} incidents")
PYEOF

echo "== live: vtest.avi replayed at 10 fps, newest-frame delivery =="
rss "$BIN/bench_pipeline" /usr/share/doc/opencv-doc/examples/data/vtest.avi 2 live | tee "$WORK/live.json"
"$PY" - "$WORK/live.json" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
src = p["source"]
print(f"live: {p['frames']} of {src['decoded']} frames processed ({src['dropped']} dropped), {p['fps']:.1f} fps; "
      f"frame-to-event latency p50 {p['latency_p50_ms']:.0f} ms, p95 {p['latency_p95_ms']:.0f} ms; "
      f"peak RSS {p['peak_rss_mb']:.0f} MB; {p['incidents_opened']} incidents")
PYEOF
