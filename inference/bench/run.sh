#!/usr/bin/env bash
# Side-by-side benchmark of the eye (issues 5 and 14). Writes nothing into
# the repository; prints medians.
#
#   inference/bench/run.sh [ROUNDS] [--backend tract|ort|both] [--provider cpu|cuda|tensorrt|openvino]
#                          [--threads "1 2"] [--input-size WxH] [--batch B] [--ort-library PATH]
#                          [--no-pipeline]
#
# The same command runs on a GPU box: `--provider cuda` (or tensorrt) with
# an onnxruntime-gpu in the venv (or --ort-library / ORT_DYLIB_PATH).
#
# 1. Model only (bench_model): tract and onnxruntime (the `ort` backend) in
#    one process, the same pre-processed vtest.avi frames, the same threads,
#    the same subgraph (the raw heads: models/centernet_mnv3_coco80_heads.toml
#    when present), interleaved ROUNDS times (default 5), for each thread
#    count (default "1 2"): at the manifest's 512x512, at the whole frame
#    (--input-size, default 1280x736: a 1280x720 camera frame at its own
#    size), and 512x512 in batches of B (default 5: 2x2 tiles + the full
#    frame) against one by one when the model's batch is symbolic.
# 1b. The referee (CPU): the eye's ort backend against Python onnxruntime
#    (inference/bench/ort_bench.py) on the same raw-heads graph, inputs,
#    outputs and threads (the model's run alone on both sides), rounds
#    interleaved; prints the per-round and median ratios.
# 2. Pipeline (bench_pipeline): the whole eye over vtest.avi per backend,
#    every frame (throughput), then replayed at its own 10 fps with
#    newest-frame delivery as a camera feeds it (latency, drops).
# Peak RSS comes from /usr/bin/time -v (max resident set size).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=5
BACKEND=both
PROVIDER=cpu
THREADS="1 2"
WHOLE=1280x736
BATCH=5
PIPELINE=1
LIB=${ORT_DYLIB_PATH:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKEND=$2; shift 2 ;;
    --provider) PROVIDER=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --input-size) WHOLE=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --ort-library) LIB=$2; shift 2 ;;
    --no-pipeline) PIPELINE=0; shift ;;
    [0-9]*) ROUNDS=$1; shift ;;
    *) echo "unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
case "$BACKEND" in
  both) ENGINES=tract,ort ;;
  tract|ort) ENGINES=$BACKEND ;;
  *) echo "--backend $BACKEND: tract, ort or both" >&2; exit 2 ;;
esac
case "$PROVIDER" in
  cpu|cuda|tensorrt|openvino) ;;
  *) echo "--provider $PROVIDER: cpu, cuda, tensorrt or openvino" >&2; exit 2 ;;
esac
if [ "$PROVIDER" != cpu ] && [ "$BACKEND" = tract ]; then
  echo "--provider $PROVIDER needs --backend ort or both (tract runs on the CPU)" >&2; exit 2
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
PY=${TIANCHA_PYTHON:-.venv/bin/python}
if [ "$ENGINES" != tract ] && [ -z "$LIB" ]; then
  # The venv's onnxruntime wheel ships its library (onnxruntime-gpu: with
  # the CUDA and TensorRT providers next to it).
  LIB=$("$PY" -c 'import glob, os, onnxruntime as o; print(sorted(glob.glob(os.path.join(os.path.dirname(o.__file__), "capi", "libonnxruntime.so.*")))[-1])') || {
    echo "no onnxruntime library: give --ort-library or ORT_DYLIB_PATH, or install onnxruntime in $PY's venv" >&2; exit 2; }
fi
# The workspace's features (tiancha's defaults include `ort`), release.
cargo build --release -q --workspace --example bench_model --example bench_pipeline
BIN=$CARGO_TARGET_DIR/release/examples
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ORT_ARGS=(--provider "$PROVIDER")
[ -n "$LIB" ] && ORT_ARGS+=(--ort-library "$LIB")
echo "engines $ENGINES, provider $PROVIDER${LIB:+, onnxruntime $LIB}; $ROUNDS rounds"

# Run under /usr/bin/time -v: the command's own stderr, then its peak RSS.
rss() {
  local rc=0
  /usr/bin/time -v "$@" 2>"$WORK/time.txt" || rc=$?
  grep -v -e "^[[:space:]]" -e "^Command" "$WORK/time.txt" >&2 || true
  grep "Maximum resident" "$WORK/time.txt" | awk '{printf "  (peak RSS %.0f MB)\n", $6/1024}' >&2
  return $rc
}

"$BIN/bench_model" dump "$WORK/in512" 10
"$BIN/bench_model" dump "$WORK/inwhole" 10 --input-size "$WHOLE"

for T in $THREADS; do
  echo "== model only, $T thread(s), 512x512 =="
  rss "$BIN/bench_model" run "$WORK/in512" --engines "$ENGINES" --threads "$T" --reps 3 --rounds "$ROUNDS" "${ORT_ARGS[@]}" > "$WORK/m512_$T.jsonl"
  echo "== model only, $T thread(s), whole frame $WHOLE =="
  rss "$BIN/bench_model" run "$WORK/inwhole" --engines "$ENGINES" --threads "$T" --reps 1 --rounds "$ROUNDS" --input-size "$WHOLE" "${ORT_ARGS[@]}" > "$WORK/mwhole_$T.jsonl"
  if [ "$BATCH" -gt 1 ]; then
    echo "== model only, $T thread(s), 512x512 in batches of $BATCH against one by one =="
    rss "$BIN/bench_model" run "$WORK/in512" --engines "$ENGINES" --threads "$T" --reps 1 --rounds "$ROUNDS" --batch "1,$BATCH" "${ORT_ARGS[@]}" > "$WORK/mbatch_$T.jsonl" \
      || echo "  (skipped: the model's batch is not symbolic)"
  fi
done

if [[ "$ENGINES" == *ort* ]] && [ "$PROVIDER" = cpu ]; then
  # The referee: Python onnxruntime (the PyPI wheel) on the same raw-heads
  # graph, inputs, outputs and threads, the model's run alone on both
  # sides (`--model-only`); rounds interleaved with the eye's ort backend.
  MODEL=models/centernet_mnv3_coco80_heads.onnx
  for T in $THREADS; do
    echo "== the eye's ort backend against Python onnxruntime, $T thread(s), 512x512, same graph and inputs =="
    : > "$WORK/ref_$T.jsonl"
    for R in $(seq "$ROUNDS"); do
      "$BIN/bench_model" run "$WORK/in512" --engines ort --threads "$T" --reps 3 --rounds 1 --model-only "${ORT_ARGS[@]}" 2>/dev/null \
        | grep '"round"' >> "$WORK/ref_$T.jsonl"
      "$PY" inference/bench/ort_bench.py "$MODEL" "$WORK/in512" "$T" 3 >> "$WORK/ref_$T.jsonl"
    done
    "$PY" - "$WORK/ref_$T.jsonl" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
eye = [r["median_ms_per_frame"] for r in rows if "median_ms_per_frame" in r]
py = [r["median_ms"] for r in rows if "median_ms" in r]
ratios = [a / b for a, b in zip(eye, py)]
print(f"eye ort backend (model) {statistics.median(eye):.1f} ms, Python onnxruntime (model) "
      f"{statistics.median(py):.1f} ms; per-round ratios {' '.join(f'{r:.2f}' for r in ratios)}; "
      f"median ratio {statistics.median(ratios):.2f}")
PYEOF
  done
fi

[ "$PIPELINE" = 1 ] || exit 0
for E in ${ENGINES//,/ }; do
  EARGS=(--backend "$E")
  [ "$E" = ort ] && EARGS+=("${ORT_ARGS[@]}")
  echo "== pipeline over vtest.avi (795 frames), $E, 2 threads =="
  rss "$BIN/bench_pipeline" /usr/share/doc/opencv-doc/examples/data/vtest.avi 2 file "${EARGS[@]}" > "$WORK/pipe_$E.json"
  echo "== live: vtest.avi replayed at 10 fps, newest-frame delivery, $E =="
  rss "$BIN/bench_pipeline" /usr/share/doc/opencv-doc/examples/data/vtest.avi 2 live "${EARGS[@]}" > "$WORK/live_$E.json"
  "$PY" - "$WORK/pipe_$E.json" "$WORK/live_$E.json" "$E" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1])); l = json.load(open(sys.argv[2]))
own = 1000 / p["mean_infer_ms"]
print(f"{sys.argv[3]}: pipeline {p['fps']:.2f} fps, the model's own rate in the same run {own:.2f} fps "
      f"({100*p['fps']/own:.0f} %); prep {p['mean_prep_ms']:.1f} ms, infer {p['mean_infer_ms']:.1f} ms, "
      f"post {p['mean_post_ms']:.1f} ms; peak RSS {p['peak_rss_mb']:.0f} MB; {p['incidents_opened']} incidents")
src = l["source"]
print(f"{sys.argv[3]}: live {l['frames']} of {src['decoded']} frames processed ({src['dropped']} dropped), "
      f"{l['fps']:.1f} fps; frame-to-event latency p50 {l['latency_p50_ms']:.0f} ms, p95 {l['latency_p95_ms']:.0f} ms")
PYEOF
done
