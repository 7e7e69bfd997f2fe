"""The start model's ONNX graph as a trainable PyTorch module, and back.

`models/centernet_mnv3_coco80_heads.onnx` (MIT) is a plain feed-forward
graph of 11 operator types (Conv, Mul, Add, Clip, Relu, Reshape,
GlobalAveragePool, Transpose, Resize, Concat, Sigmoid). Instead of a
general converter, `OnnxNet` runs exactly those nodes in graph order with
PyTorch operators, the convolutions' weights and biases as parameters (the
other initializers, e.g. hard-swish's 3 and 1/6, the box scale 16 and the
reshape shapes, stay constants). `export` writes the trained parameters
back into a copy of the same graph: the shipped model has the start
model's operators, names, dynamic N/H/W and output layout exactly, so the
eye's CenterNet decoder, tract and onnxruntime run it as they run the
start model.

New head: the class heat-map's last 1x1 convolution
(`CenternetHead/centernet_cls_output/pointwise_weights:0` [80,128,1,1] and
its bias [80]) becomes [len(classes),128,1,1] with fresh weights; the
graph's own Sigmoid and Transpose stay, so `tower_0/keypoints` is
[N,H/4,W/4,C] after sigmoid and `tower_0/wh` [N,H/4,W/4,4] = left, top,
right, bottom in input pixels from the point (4*col, 4*row).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

CLS_W = "CenternetHead/centernet_cls_output/pointwise_weights:0"
CLS_B = "CenternetHead/centernet_cls_output/biases:0"
INPUT = "tower_0/images:0"
HEATMAP = "tower_0/keypoints"
SIZES = "tower_0/wh"
# logit of 0.01: the usual CenterNet prior for a fresh heat-map head.
PRIOR_BIAS = -4.6


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _resize_linear_asymmetric(x: torch.Tensor, sh: int, sw: int) -> torch.Tensor:
    """ONNX Resize, mode linear, coordinate_transformation_mode asymmetric,
    integer scales: out[i] = lerp at i/s (clamped at the far edge)."""

    def axis(x, s, dim):
        n = x.shape[dim]
        pos = torch.arange(n * s, dtype=torch.float32) / s
        i0 = pos.floor().long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        w = (pos - i0.float()).clamp(0, 1)
        shape = [1] * x.dim()
        shape[dim] = -1
        w = w.view(shape)
        return x.index_select(dim, i0) * (1 - w) + x.index_select(dim, i1) * w

    return axis(axis(x, sh, 2), sw, 3)


class OnnxNet(torch.nn.Module):
    def __init__(self, model: onnx.ModelProto, num_classes: int | None, seed: int = 0):
        """`num_classes` None keeps the start model's own 80-class head."""
        super().__init__()
        g = model.graph
        self.nodes = []
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        conv_params = set()
        for n in g.node:
            if n.op_type == "Conv":
                conv_params.update(n.input[1:])
        self.pnames = {}  # onnx name -> attribute name
        self.consts = {}
        gen = torch.Generator().manual_seed(seed)
        for name, arr in inits.items():
            t = torch.from_numpy(np.array(arr, copy=True))
            if name == CLS_W and num_classes:
                t = torch.randn((num_classes,) + tuple(t.shape[1:]), generator=gen) * 0.01
            elif name == CLS_B and num_classes:
                t = torch.full((num_classes,), PRIOR_BIAS)
            if name in conv_params:
                key = f"p{len(self.pnames)}"
                self.pnames[name] = key
                self.register_parameter(key, torch.nn.Parameter(t.float()))
            else:
                self.consts[name] = t
        for n in g.node:
            self.nodes.append((n.op_type, list(n.input), list(n.output), _attrs(n)))
        self.outputs = [o.name for o in g.output]

    def _get(self, env, name):
        if name in self.pnames:
            return getattr(self, self.pnames[name])
        if name in self.consts:
            return self.consts[name]
        return env[name]

    def forward(self, images_nhwc: torch.Tensor):
        env = {INPUT: images_nhwc}
        for op, ins, outs, at in self.nodes:
            x = [self._get(env, i) if i else None for i in ins]
            if op == "Conv":
                w, b = x[1], (x[2] if len(x) > 2 else None)
                pads = at.get("pads", [0, 0, 0, 0])
                inp = x[0]
                if pads[0] == pads[2] and pads[1] == pads[3]:
                    padding = (pads[0], pads[1])
                else:
                    inp = F.pad(inp, (pads[1], pads[3], pads[0], pads[2]))
                    padding = (0, 0)
                y = F.conv2d(inp, w, b, stride=tuple(at.get("strides", [1, 1])), padding=padding,
                             dilation=tuple(at.get("dilations", [1, 1])), groups=at.get("group", 1))
            elif op == "Mul":
                y = x[0] * x[1]
            elif op == "Add":
                y = x[0] + x[1]
            elif op == "Clip":
                y = torch.clamp(x[0], float(x[1]), float(x[2]))
            elif op == "Relu":
                y = F.relu(x[0])
            elif op == "Sigmoid":
                y = torch.sigmoid(x[0])
            elif op == "Reshape":
                y = x[0].reshape([int(v) for v in x[1]])
            elif op == "GlobalAveragePool":
                y = x[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Transpose":
                y = x[0].permute(*at["perm"])
            elif op == "Concat":
                y = torch.cat(x, dim=at["axis"])
            elif op == "Resize":
                s = x[2]
                assert at["mode"] == b"linear" and at["coordinate_transformation_mode"] == b"asymmetric"
                assert float(s[0]) == 1 and float(s[1]) == 1
                y = _resize_linear_asymmetric(x[0], int(s[2]), int(s[3]))
            else:
                raise NotImplementedError(op)
            env[outs[0]] = y
        return env[HEATMAP], env[SIZES]


def export(net: OnnxNet, start: onnx.ModelProto, path: str, num_classes: int) -> None:
    """Write the trained parameters into a copy of the start graph."""
    m = onnx.ModelProto()
    m.CopyFrom(start)
    g = m.graph
    for init in g.initializer:
        if init.name in net.pnames:
            arr = getattr(net, net.pnames[init.name]).detach().cpu().numpy().astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    # Output shapes: the class dimension changes.
    for o in g.output:
        if o.name == HEATMAP:
            o.type.tensor_type.shape.dim[3].dim_value = num_classes
    del g.value_info[:]
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
