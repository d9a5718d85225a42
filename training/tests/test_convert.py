"""Converter checks that need no ONNX Runtime (the numerical parity test is test/convert.test.ts)."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import unittest

import msgpack
import numpy as np
import torch
from dataclasses import replace

from mosaic_convert import convert, flax_checkpoint, parity
from mosaic_convert.bpe import ByteLevelBPE
from mosaic_convert.published import MEGA, MINI, Published, without_unscaled_norms
from mosaic_train.transformer import Config, DalleBart


class ConvertTest(unittest.TestCase):
    def setUp(self):
        vocab, merges = parity.tiny_vocab()
        self.vocab, self.merges = vocab, merges
        self.p = Published(replace(parity.DIMS, text_vocab=len(vocab)), parity.VQ_DIMS, parity.ENCODER_LAYERS)
        g = torch.Generator().manual_seed(0)
        for m in (self.p.encoder, self.p.decoder):
            parity.randomise(m, g)  # layer norm scales too, so "filled with ones" is not true by accident

    def test_sizes_are_read_from_the_weights(self):
        d, enc_layers = convert.bart_dims(self.p.encoder.state_dict(), self.p.decoder.state_dict(), heads=4)
        self.assertEqual((d.width, d.layers, enc_layers, d.glu, d.image_vocab, d.text_tokens), (32, 2, 3, 48, 70, 16))
        v = convert.vqgan_dims(self.p.detokenizer.state_dict())
        self.assertEqual((v.codebook, v.embed, v.ch, v.ch_mult, v.res_blocks), (64, 8, 32, (1, 1, 2), 3))

    def test_every_published_parameter_has_a_place(self):
        enc, dec = self.p.encoder.state_dict(), self.p.decoder.state_dict()
        d, enc_layers = convert.bart_dims(enc, dec, heads=4)
        config = Config(text_vocab=d.text_vocab, max_text_len=d.text_tokens, codebook_size=64, grid=4, d_model=32,
                        heads=4, encoder_layers=enc_layers, decoder_layers=d.layers, glu_dim=d.glu)
        # strict loading: nothing missing, nothing left over — with every layer norm scale present, and in
        # dalle-mini's force_ln_scale=False layout where some are left out (they load as ones)
        DalleBart(config).load_state_dict(convert.mosaic_state(enc, dec, config))
        sparse = convert.mosaic_state(without_unscaled_norms(enc), without_unscaled_norms(dec), config)
        self.assertLess(len(without_unscaled_norms(enc)), len(enc))
        model = DalleBart(config)
        model.load_state_dict(sparse)
        self.assertTrue(torch.equal(model.encoder_layers[0].pre_attn_ln.weight, torch.ones(32)))
        self.assertTrue(torch.equal(model.decoder_final_ln.weight, torch.ones(32)))
        self.assertTrue(torch.equal(model.decoder_layers[1].post_cross_ln.weight, dec["layers.1.encoder_attn_layer_norm.weight"]))

    def test_unknown_parameters_are_named(self):
        enc = dict(self.p.encoder.state_dict())
        enc["layers.0.self_attn.rotary.weight"] = enc["final_ln.weight"]
        config = Config(text_vocab=len(self.vocab), max_text_len=16, codebook_size=64, grid=4, d_model=32, heads=4,
                        encoder_layers=3, decoder_layers=2, glu_dim=48)
        with self.assertRaisesRegex(convert.ConvertError, "encoder.pt: unexpected parameter 'layers.0.self_attn.rotary.weight'"):
            convert.mosaic_state(enc, self.p.decoder.state_dict(), config)
        with self.assertRaisesRegex(convert.ConvertError, "missing parameter 'embed_tokens.weight'"):
            convert.bart_dims({}, self.p.decoder.state_dict(), None)

    def test_published_sizes_are_recognised(self):
        for dims in (MINI, MEGA):
            # shapes only: expanded views of one element cost no memory
            shape = lambda *s: torch.empty(1).expand(*s)
            enc = {"embed_tokens.weight": shape(dims.text_vocab, dims.width), "embed_positions.weight": shape(64, dims.width)}
            dec = {"embed_tokens.weight": shape(dims.image_vocab + 1, dims.width), "embed_positions.weight": shape(256, dims.width)}
            for i in range(dims.layers):
                enc[f"layers.{i}.glu.fc0.weight"] = dec[f"layers.{i}.glu.fc0.weight"] = shape(dims.glu, dims.width)
            d, enc_layers = convert.bart_dims(enc, dec, heads=None)
            self.assertEqual(d, dims)
            self.assertEqual(enc_layers, dims.layers)

    def test_bpe_reference_frames_with_bart_tokens(self):
        tok = ByteLevelBPE(self.vocab, self.merges)
        ids = tok.encode(" a red circle")
        self.assertEqual(ids[0], self.vocab["<s>"])
        self.assertEqual(ids[-1], self.vocab["</s>"])
        self.assertEqual(ids[1:-1], [self.vocab["Ġa"], self.vocab["Ġred"], self.vocab["Ġcircle"]])


def _flax_leaf(name: str, t: torch.Tensor) -> tuple[str, np.ndarray]:
    """A published (PyTorch) parameter as Flax names and layouts: the inverse of flax_checkpoint."""
    base, leaf = name.rsplit(".", 1)
    a = t.detach().numpy()
    if leaf == "weight" and t.dim() == 2 and "embed" in base:
        return f"{base}.embedding", a
    if leaf == "weight" and t.dim() == 2:
        return f"{base}.kernel", a.T.copy()
    if leaf == "weight" and t.dim() == 4:
        return f"{base}.kernel", a.transpose(2, 3, 1, 0).copy()
    if leaf == "weight":
        return f"{base}.scale", a
    return name, a


def _nest(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *path, leaf = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _flax_layer_part(inner: str) -> str:
    parts = {v: k for k, v in {**flax_checkpoint.LAYER_PARTS, **flax_checkpoint.DECODER_PARTS}.items()}
    glu = {v: k for k, v in flax_checkpoint.GLU_PARTS.items()}
    head, _, rest = inner.partition(".")
    if head == "glu":
        sub, _, leaf = rest.partition(".")
        return f"GLU_0.{glu[sub]}.{leaf}"
    return f"{parts[head]}.{rest}"


def flax_bart_tree(encoder: dict, decoder: dict, scanned: bool) -> dict:
    model = {}
    for codec, state in (("encoder", encoder), ("decoder", decoder)):
        flat, layers = {}, {}
        for name, t in state.items():
            if name == "lm_head.weight":
                continue
            key, a = _flax_leaf(name, t)
            m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
            if m:
                layers.setdefault(_flax_layer_part(m.group(2)), {})[int(m.group(1))] = a
            else:
                flat[key] = a
        for part, per_layer in layers.items():
            if scanned:
                flat[f"layers.FlaxBart{codec.title()}Layers.{part}"] = np.stack([per_layer[i] for i in sorted(per_layer)])
            else:
                for i, a in per_layer.items():
                    flat[f"layers.FlaxBart{codec.title()}Layer_{i}.{part}"] = a
        model[codec] = _nest(flat)
    return {"model": model, "lm_head": {"kernel": decoder["lm_head.weight"].numpy().T.copy()}}


def flax_vqgan_tree(detoker: dict) -> dict:
    flat = {"encoder.conv_in.kernel": np.zeros((3, 3, 3, 8), np.float32), "quant_conv.bias": np.zeros(8, np.float32)}
    for name, t in detoker.items():
        if name == "embedding.weight":
            flat["quantize.embedding.embedding"] = t.numpy()
            continue
        name = re.sub(r"up\.(\d+)\.(block|attn)\.(\d+)\.", r"up_\1.\2_\3.", name)
        name = re.sub(r"up\.(\d+)\.", r"up_\1.", name)
        key, a = _flax_leaf(name, t)
        flat[key] = a
    return _nest(flat)


def write_flax_msgpack(tree: dict, path: str) -> None:
    """As flax.serialization.msgpack_serialize writes (ndarray leaves as extension type 1)."""
    def pack(x):
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((x.shape, x.dtype.name, x.tobytes("C")), use_bin_type=True))
        return x
    with open(path, "wb") as f:
        f.write(msgpack.packb(tree, default=pack, strict_types=True))


class FlaxCheckpointTest(unittest.TestCase):
    """dalle-mini's Flax layout reads into exactly the published PyTorch state; the rest of the
    converter is the path test/convert.test.ts checks against the reference numerically."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        vocab, _ = parity.tiny_vocab()
        self.p = Published(replace(parity.DIMS, text_vocab=len(vocab)), parity.VQ_DIMS, parity.ENCODER_LAYERS)
        g = torch.Generator().manual_seed(1)
        for m in (self.p.encoder, self.p.decoder, self.p.detokenizer):
            parity.randomise(m, g)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def assert_same(self, got: dict, want: dict):
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            self.assertTrue(torch.equal(got[k], want[k].float()), k)

    def test_bart_scanned_and_per_layer(self):
        enc = without_unscaled_norms(self.p.encoder.state_dict())
        dec = without_unscaled_norms(self.p.decoder.state_dict())
        for scanned in (True, False):
            path = os.path.join(self.tmp, f"bart-{scanned}.msgpack")
            write_flax_msgpack(flax_bart_tree(enc, dec, scanned), path)
            got_enc, got_dec = flax_checkpoint.bart_states(flax_checkpoint.read_msgpack(path))
            self.assert_same(got_enc, enc)
            self.assert_same(got_dec, dec)

    def test_vqgan(self):
        state = self.p.detokenizer.state_dict()
        path = os.path.join(self.tmp, "vqgan.msgpack")
        write_flax_msgpack(flax_vqgan_tree(state), path)
        self.assert_same(flax_checkpoint.vqgan_state(flax_checkpoint.read_msgpack(path)), state)
        # older Flax group norms keep their scale and bias as (1, 1, 1, C)
        tree = flax_vqgan_tree(state)
        norm = tree["decoder"]["norm_out"]
        norm["scale"], norm["bias"] = norm["scale"][None, None, None], norm["bias"][None, None, None]
        write_flax_msgpack(tree, path)
        self.assert_same(flax_checkpoint.vqgan_state(flax_checkpoint.read_msgpack(path)), state)

    def test_chunked_and_fp16_leaves(self):
        a = np.arange(10, dtype=np.float16).reshape(2, 5)
        flat = a.reshape(-1)
        tree = {"x": {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 5},
                      "chunks": {"0": flat[:4], "1": flat[4:8], "2": flat[8:]}}}
        path = os.path.join(self.tmp, "chunked.msgpack")
        write_flax_msgpack(tree, path)
        np.testing.assert_array_equal(flax_checkpoint.read_msgpack(path)["x"], a)

    def test_converter_takes_the_flax_folders(self):
        bart = os.path.join(self.tmp, "dalle-mini")
        vq = os.path.join(self.tmp, "vqgan")
        os.makedirs(bart)
        os.makedirs(vq)
        enc = without_unscaled_norms(self.p.encoder.state_dict())
        dec = without_unscaled_norms(self.p.decoder.state_dict())
        write_flax_msgpack(flax_bart_tree(enc, dec, True), os.path.join(bart, "flax_model.msgpack"))
        write_flax_msgpack(flax_vqgan_tree(self.p.detokenizer.state_dict()), os.path.join(vq, "flax_model.msgpack"))
        vocab, merges = parity.tiny_vocab()
        with open(os.path.join(bart, "vocab.json"), "w") as f:
            json.dump(vocab, f)
        with open(os.path.join(bart, "merges.txt"), "w") as f:
            f.write("\n".join(merges))
        with open(os.path.join(bart, "config.json"), "w") as f:
            json.dump({"encoder_attention_heads": 4}, f)
        out = os.path.join(self.tmp, "model")
        convert.convert(bart, vq, out, "flax-tiny", patch=None)
        with open(os.path.join(out, "model.json")) as f:
            m = json.load(f)
        self.assertEqual(m["architecture"]["heads"], 4, "heads come from config.json")
        self.assertEqual(m["training"]["convertedFrom"]["format"],
                         "BART: dalle-mini Flax checkpoint; VQGAN: dalle-mini Flax checkpoint")

    def test_unknown_layer_parts_are_reported_by_the_converter(self):
        bart = os.path.join(self.tmp, "odd")
        os.makedirs(bart)
        tree = flax_bart_tree(self.p.encoder.state_dict(), self.p.decoder.state_dict(), True)
        tree["model"]["encoder"]["layers"]["FlaxBartEncoderLayers"]["RMSNorm_0"] = {"scale": np.ones((3, 32), np.float32)}
        write_flax_msgpack(tree, os.path.join(bart, "flax_model.msgpack"))
        for f in ("vocab.json", "merges.txt"):
            open(os.path.join(bart, f), "w").write("{}" if f.endswith("json") else "")
        detoker = os.path.join(self.tmp, "detoker.pt")
        torch.save(self.p.detokenizer.state_dict(), detoker)
        with self.assertRaisesRegex(convert.ConvertError, "flax_model.msgpack: not a dalle-mini checkpoint .*RMSNorm_0"):
            convert.convert(bart, detoker, os.path.join(self.tmp, "out"), "odd", heads=4)


if __name__ == "__main__":
    unittest.main()
