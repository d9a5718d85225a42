"""8-bit weights (mosaic_convert.quantize): what the rewrite stores. That ONNX Runtime runs the result
and how far its outputs move is test/quantize.test.ts."""
from __future__ import annotations

import json
import os
import tempfile
import unittest

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mosaic_convert.quantize import quantize_folder
from mosaic_train.graphs import quantize_blocks, store_weights_nbits


def dequantize(q: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
    n = q.shape[0]
    return ((q.astype(np.float32) - 128) * scales.reshape(n, -1, 1)).reshape(n, k).T


class QuantizeTest(unittest.TestCase):
    def test_blocks_round_trip_within_half_a_step(self):
        rng = np.random.default_rng(0)
        w = (rng.standard_normal((128, 48)) * 0.05).astype(np.float32)
        w[:32, 0] = 0  # an all-zero block keeps a usable scale
        q, scales = quantize_blocks(w, 32)
        self.assertEqual(q.shape, (48, 4, 32))
        self.assertEqual(q.dtype, np.uint8)
        back = dequantize(q, scales, 128)
        step = np.repeat(scales.reshape(48, 4), 32, axis=1).T  # [K, N]
        self.assertTrue(np.all(np.abs(back - w) <= step / 2 + 1e-7))
        self.assertTrue(np.all(back[:32, 0] == 0))
        # The largest magnitude of each block lands on 1 or 255 exactly (the zero block stays at 128).
        peaks = np.abs(q.astype(int) - 128).max(axis=-1)
        self.assertEqual(peaks[0, 0], 0)
        peaks[0, 0] = 127
        self.assertTrue(np.all(peaks == 127))

    def test_four_bits_go_two_to_a_byte_low_nibble_first(self):
        rng = np.random.default_rng(2)
        w = rng.standard_normal((64, 8)).astype(np.float32)
        q, scales = quantize_blocks(w, 32, bits=4)
        self.assertEqual(q.shape, (8, 2, 16))
        values = np.stack([q & 15, q >> 4], axis=-1).reshape(8, 2, 32)  # low nibble, then high
        back = ((values.astype(np.float32) - 8) * scales.reshape(8, 2, 1)).reshape(8, 64).T
        step = np.repeat(scales.reshape(8, 2), 32, axis=1).T
        self.assertTrue(np.all(np.abs(back - w) <= step / 2 + 1e-6))
        self.assertTrue(np.all(np.abs(values.astype(int) - 8).max(axis=-1) == 7))

    def graph(self, path: str) -> dict[str, np.ndarray]:
        """x -> MatMul(fp32 weight) -> MatMul(fp16 weight + Cast) -> MatMul(x-shaped activation): the
        two constant weights are rewritten, the activation product is not."""
        rng = np.random.default_rng(1)
        w1 = rng.standard_normal((64, 64)).astype(np.float32)
        w2 = rng.standard_normal((64, 96)).astype(np.float16)
        nodes = [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
            helper.make_node("Cast", ["w2_fp16"], ["w2"], to=TensorProto.FLOAT, name="w2_cast"),
            helper.make_node("MatMul", ["h", "w2"], ["y"], name="second"),
            helper.make_node("MatMul", ["y", "yt"], ["z"], name="activations"),
        ]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 64]),
                                           helper.make_tensor_value_info("yt", TensorProto.FLOAT, [96, "c"])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", "c"])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2_fp16")])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
        return {"w1": w1, "w2": w2.astype(np.float32)}

    def test_constant_weights_become_matmulnbits_and_the_originals_go(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "g.onnx")
            weights = self.graph(path)
            self.assertEqual(store_weights_nbits(path, bits=8, block=32, accuracy_level=0, min_elements=16), 2)
            m = onnx.load(path)
            onnx.checker.check_model(m)
            ops = [(n.name, n.op_type) for n in m.graph.node]
            self.assertEqual(ops, [("first_q8", "MatMulNBits"), ("second_q8", "MatMulNBits"), ("activations", "MatMul")])
            inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
            self.assertEqual(sorted(inits), ["first_q8", "first_q8_scales", "second_q8", "second_q8_scales"])
            self.assertIn("com.microsoft", [o.domain for o in m.opset_import])
            for node, name in zip(m.graph.node[:2], ("w1", "w2")):
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                k, n = weights[name].shape
                self.assertEqual(attrs, {"K": k, "N": n, "bits": 8, "block_size": 32, "accuracy_level": 0})
                back = dequantize(inits[node.input[1]], inits[node.input[2]], k)
                self.assertLess(np.abs(back - weights[name]).max(), np.abs(weights[name]).max() / 127)

    def test_folder_gets_its_own_name_and_provenance(self):
        with tempfile.TemporaryDirectory() as d:
            src, out = os.path.join(d, "m"), os.path.join(d, "m-int8")
            os.makedirs(src)
            self.graph(os.path.join(src, "text.onnx"))
            self.graph(os.path.join(src, "step.onnx"))
            with open(os.path.join(src, "model.json"), "w") as f:
                json.dump({"name": "tiny", "version": "1.2.0", "description": "A test.",
                           "graphs": {"textEncoder": {"file": "text.onnx"}, "decoderStep": {"file": "step.onnx"}}}, f)
            with self.assertRaises(SystemExit):
                quantize_folder(src, src)
            m = quantize_folder(src, out)
            self.assertEqual(m["name"], "tiny-int8")
            # min_elements (4096) leaves the 64x64 weight alone: 4096 is not below it; 64x96 is larger.
            self.assertEqual(m["training"]["quantized"]["matmuls"], {"textEncoder": 2, "decoderStep": 2})
            self.assertEqual(m["training"]["quantized"]["from"], "tiny@1.2.0")
            with open(os.path.join(src, "model.json")) as f:
                self.assertEqual(json.load(f)["name"], "tiny")  # the source is untouched


if __name__ == "__main__":
    unittest.main()
