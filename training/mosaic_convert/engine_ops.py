"""The engine's small model-independent graphs that keep a batch's state on the GPU (WebGPU):
writing a step's keys/values into the cache and regrouping rows when generations join or leave.
Written with onnx.helper into src/engine/ops/ (committed; rerun after changing this file):

    PYTHONPATH=training python3 -m mosaic_convert.engine_ops
"""
from __future__ import annotations

import os

import onnx
from onnx import TensorProto, helper

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "src", "engine", "ops")
RANK5 = ["l", "b", "h", "n", "d"]


def tensor(name: str, dtype=TensorProto.FLOAT, shape=None):
    return helper.make_tensor_value_info(name, dtype, RANK5 if shape is None else shape)


def save(name: str, nodes, inputs, outputs) -> None:
    model = helper.make_model(helper.make_graph(nodes, name, inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 17)], producer_name="mosaic")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, f"{name}.onnx"))


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    # present = where(slot, new, past): `slot` [1, B, 1, N, 1] marks each row's position, so the
    # cache never leaves the device and no shape changes between steps.
    save("cache-write",
         [helper.make_node("Where", ["slot", "new_k", "past_k"], ["present_k"]),
          helper.make_node("Where", ["slot", "new_v", "past_v"], ["present_v"])],
         [tensor("past_k"), tensor("past_v"), tensor("new_k", shape=["l", "b", "h", 1, "d"]),
          tensor("new_v", shape=["l", "b", "h", 1, "d"]), tensor("slot", TensorProto.BOOL, [1, "b", 1, "n", 1])],
         [tensor("present_k"), tensor("present_v")])
    save("gather-rows", [helper.make_node("Gather", ["x", "rows"], ["y"], axis=1)],
         [tensor("x"), tensor("rows", TensorProto.INT64, ["r"])], [tensor("y", shape=["l", "r", "h", "n", "d"])])
    save("zeros", [helper.make_node("ConstantOfShape", ["shape"], ["y"],
                                    value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))],
         [tensor("shape", TensorProto.INT64, [5])], [tensor("y")])
    # Graphs for a per-layer decoder step have one output per layer, so they are built for the model's
    # layer count when it loads (src/engine/ops/layer-graphs.ts).
    save("concat-rows", [helper.make_node("Concat", ["a", "b"], ["y"], axis=1)],
         [tensor("a", shape=["l", "b1", "h", "n", "d"]), tensor("b", shape=["l", "b2", "h", "n", "d"])],
         [tensor("y", shape=["l", "b12", "h", "n", "d"])])


if __name__ == "__main__":
    main()
