"""Reference run with onnxruntime (CPU): the referee for tract.

Usage: ort_reference.py MODEL INPUT_NAME SHAPE(comma-separated) OUTPUT_NAME THREADS FILE...

Each FILE holds one input tensor as raw little-endian float32 (row-major,
SHAPE). Prints one JSON object: {"outputs": [{"shape": [...], "data": [...]}, ...]}
with the named output for each file, in order.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    model, input_name, shape, output_name, threads = sys.argv[1:6]
    files = sys.argv[6:]
    shape = [int(x) for x in shape.split(",")]
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    outs = []
    for f in files:
        x = np.fromfile(f, dtype="<f4").reshape(shape)
        (y,) = sess.run([output_name], {input_name: x})
        outs.append({"shape": list(y.shape), "data": y.astype(np.float64).ravel().tolist()})
    json.dump({"outputs": outs, "onnxruntime": ort.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
