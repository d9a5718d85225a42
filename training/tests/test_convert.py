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
from mosaic_convert.published import MEGA, MINI, Published, text_rows, without_unscaled_norms
from mosaic_train import model_check
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

    # dalle-mini's tools/train/config/mega/config.json, the settings that shape the computation
    MEGA_CONFIG = {
        "activation_function": "gelu", "d_model": 2048, "decoder_attention_heads": 32, "decoder_start_token_id": 16384,
        "encoder_attention_heads": 32, "force_ln_scale": False, "image_vocab_size": 16415, "ln_positions": "normformer",
        "ln_type": "layernorm", "scale_embedding": False, "sinkhorn_iters": 1, "tau_init": 0.05,
        "tie_word_embeddings": False, "use_absolute_position_embeddings": True, "use_alibi": False, "use_bias": False,
        "use_cosine_attention": False, "use_deepnet_scaling": False, "use_final_ln_decoder": True,
        "use_final_ln_encoder": True, "use_glu": True, "use_head_scale": False, "use_swin_position_embeddings": False,
    }
    # Values that change what the model computes, each of which must stop the converter by name.
    UNSUPPORTED = [
        ("scale_embedding", True), ("use_deepnet_scaling", True), ("use_cosine_attention", True),
        ("sinkhorn_iters", 2), ("activation_function", "gelu_new"), ("activation_function", "relu"),
        ("ln_positions", "preln"), ("ln_positions", "cogview"), ("ln_positions", "deepnet"), ("ln_type", "rmsnorm"),
        ("use_head_scale", True), ("use_glu", False), ("use_bias", True), ("use_absolute_position_embeddings", False),
        ("use_swin_position_embeddings", True), ("use_final_ln_encoder", False), ("use_final_ln_decoder", False),
        ("tie_word_embeddings", True), ("decoder_attention_heads", 16),
    ]

    def test_dalle_mini_configs_are_accepted(self):
        self.assertEqual(convert.check_bart_config(self.MEGA_CONFIG), 32)
        convert.check_start_token(self.MEGA_CONFIG, 16384)
        # mini's config.json leaves most settings to DalleBartConfig's defaults
        mini = {"activation_function": "gelu", "encoder_attention_heads": 16, "decoder_attention_heads": 16,
                "decoder_start_token_id": 16384, "image_vocab_size": 16384, "scale_embedding": False}
        self.assertEqual(convert.check_bart_config(mini), 16)
        convert.check_start_token(mini, 16384)
        convert.check_start_token({}, 16384)  # DalleBartConfig's default: image_vocab_size, itself 16384

    def test_unsupported_settings_are_refused_by_name(self):
        for key, value in self.UNSUPPORTED:
            with self.subTest(key=key, value=value):
                with self.assertRaisesRegex(convert.ConvertError, rf"config\.json: {key} = "):
                    convert.check_bart_config({**self.MEGA_CONFIG, key: value})
        for start in (16383, 16385, 16415):
            with self.subTest(decoder_start_token_id=start):
                with self.assertRaisesRegex(convert.ConvertError, f"decoder_start_token_id = {start} is not supported"):
                    convert.check_start_token({**self.MEGA_CONFIG, "decoder_start_token_id": start}, 16384)
        with self.assertRaisesRegex(convert.ConvertError, "decoder_start_token_id = 16415"):
            convert.check_start_token({"image_vocab_size": 16415}, 16384)  # the default follows image_vocab_size

    def test_text_rows_keep_the_closing_token(self):
        rows = text_rows([0, 5, 6, 2], 8)
        self.assertEqual(rows.tolist(), [[0, 2, 1, 1, 1, 1, 1, 1], [0, 5, 6, 2, 1, 1, 1, 1]])
        # 70 tokens into 64: as dalle-mini's tokenizer truncates (the text, then <s> … </s>) and the engine does
        tokens = [0] + list(range(100, 168)) + [2]
        rows = text_rows(tokens, 64)
        self.assertEqual(rows[1].tolist(), [0] + list(range(100, 162)) + [2])
        self.assertEqual(rows[0, :2].tolist(), [0, 2])
        self.assertEqual(text_rows([0] + list(range(100, 162)) + [2], 64)[1].tolist()[-1], 2, "exactly 64 stays")

    def test_only_the_code_rows_are_kept(self):
        """docs/converting.md: mega's decoder has 16416 rows; the engine samples only the 16384 codes."""
        shape = lambda *s: torch.empty(1).expand(*s)  # noqa: E731
        dec = {"embed_tokens.weight": shape(MEGA.image_vocab + 1, 8)}
        self.assertEqual(dec["embed_tokens.weight"].shape[0], 16416)
        self.assertEqual(min(MEGA.image_vocab, convert.MAX_CODES), 16384)
        # the tiny tree has 71 rows for 64 codes, as mega has more rows than codes
        enc, dec = self.p.encoder.state_dict(), self.p.decoder.state_dict()
        self.assertEqual(dec["lm_head.weight"].shape[0], 71)
        config = Config(text_vocab=len(self.vocab), max_text_len=16, codebook_size=64, grid=4, d_model=32, heads=4,
                        encoder_layers=3, decoder_layers=2, glu_dim=48)
        out = convert.mosaic_state(enc, dec, config)
        self.assertTrue(torch.equal(out["lm_head.weight"], dec["lm_head.weight"][:64]))
        self.assertTrue(torch.equal(out["image_embed.weight"], dec["embed_tokens.weight"][:65]), "codes + start row")

    def test_bpe_reference_frames_with_bart_tokens(self):
        tok = ByteLevelBPE(self.vocab, self.merges)
        ids = tok.encode(" a red circle")
        self.assertEqual(ids[0], self.vocab["<s>"])
        self.assertEqual(ids[-1], self.vocab["</s>"])
        self.assertEqual(ids[1:-1], [self.vocab["Ġa"], self.vocab["Ġred"], self.vocab["Ġcircle"]])


# dalle-mini's Flax parameter names, written out by hand from its sources rather than derived from
# flax_checkpoint's tables, so that a wrong name in those tables fails the round trips below. Each is
# paired with the name min-dalle's PyTorch files give the same tensor (published.py's modules).
#
# BART: borisdayma/dalle-mini src/dalle_mini/model/modeling.py, DalleBart as mini and mega are
# configured (ln_positions "normformer", use_glu, use_bias false, force_ln_scale false). Modules
# created inline in an @nn.compact method are named by Flax after their class and a per-parent
# counter: in FlaxBartEncoderLayer the norm before self-attention is LayerNorm_0 (bias only:
# use_scale=force_ln_scale), the attention FlaxBartAttention_0 (q_proj, k_proj, v_proj, out_proj,
# no bias), the norm after it LayerNorm_1; the feed-forward is GLU_0 with LayerNorm_0 (bias only),
# Dense_0 (through gelu), Dense_1, LayerNorm_1 (bias only), Dense_2. FlaxBartDecoderLayer adds
# LayerNorm_2 (bias only), FlaxBartAttention_1 (cross-attention) and LayerNorm_3 before its GLU_0.
FLAX_ENCODER_LAYER = {
    "LayerNorm_0/bias": "pre_self_attn_layer_norm.bias",
    "FlaxBartAttention_0/q_proj/kernel": "self_attn.q_proj.weight",
    "FlaxBartAttention_0/k_proj/kernel": "self_attn.k_proj.weight",
    "FlaxBartAttention_0/v_proj/kernel": "self_attn.v_proj.weight",
    "FlaxBartAttention_0/out_proj/kernel": "self_attn.out_proj.weight",
    "LayerNorm_1/scale": "self_attn_layer_norm.weight",
    "LayerNorm_1/bias": "self_attn_layer_norm.bias",
    "GLU_0/LayerNorm_0/bias": "glu.ln0.bias",
    "GLU_0/Dense_0/kernel": "glu.fc0.weight",
    "GLU_0/Dense_1/kernel": "glu.fc1.weight",
    "GLU_0/LayerNorm_1/bias": "glu.ln1.bias",
    "GLU_0/Dense_2/kernel": "glu.fc2.weight",
}
FLAX_DECODER_LAYER = {
    "LayerNorm_0/bias": "pre_self_attn_layer_norm.bias",
    "FlaxBartAttention_0/q_proj/kernel": "self_attn.q_proj.weight",
    "FlaxBartAttention_0/k_proj/kernel": "self_attn.k_proj.weight",
    "FlaxBartAttention_0/v_proj/kernel": "self_attn.v_proj.weight",
    "FlaxBartAttention_0/out_proj/kernel": "self_attn.out_proj.weight",
    "LayerNorm_1/scale": "self_attn_layer_norm.weight",
    "LayerNorm_1/bias": "self_attn_layer_norm.bias",
    "LayerNorm_2/bias": "pre_encoder_attn_layer_norm.bias",
    "FlaxBartAttention_1/q_proj/kernel": "encoder_attn.q_proj.weight",
    "FlaxBartAttention_1/k_proj/kernel": "encoder_attn.k_proj.weight",
    "FlaxBartAttention_1/v_proj/kernel": "encoder_attn.v_proj.weight",
    "FlaxBartAttention_1/out_proj/kernel": "encoder_attn.out_proj.weight",
    "LayerNorm_3/scale": "encoder_attn_layer_norm.weight",
    "LayerNorm_3/bias": "encoder_attn_layer_norm.bias",
    "GLU_0/LayerNorm_0/bias": "glu.ln0.bias",
    "GLU_0/Dense_0/kernel": "glu.fc0.weight",
    "GLU_0/Dense_1/kernel": "glu.fc1.weight",
    "GLU_0/LayerNorm_1/bias": "glu.ln1.bias",
    "GLU_0/Dense_2/kernel": "glu.fc2.weight",
}
# With force_ln_scale true those bias-only norms get a scale too.
FLAX_ENCODER_LAYER_SCALES = {
    "LayerNorm_0/scale": "pre_self_attn_layer_norm.weight",
    "GLU_0/LayerNorm_0/scale": "glu.ln0.weight",
    "GLU_0/LayerNorm_1/scale": "glu.ln1.weight",
}
FLAX_DECODER_LAYER_SCALES = {**FLAX_ENCODER_LAYER_SCALES, "LayerNorm_2/scale": "pre_encoder_attn_layer_norm.weight"}
# FlaxBartModule/FlaxBartEncoder/FlaxBartDecoder attributes (setup() names them), the encoder's and
# decoder's own embed_tokens, and FlaxBartForConditionalGenerationModule's lm_head (no bias). The
# layers live under `layers/` (FlaxBart*LayerCollection): nn.scan's `FlaxBartEncoderLayers` with
# every parameter stacked on a first axis, or one `FlaxBartEncoderLayer_<i>` per layer (use_scan false).
FLAX_ENCODER = {
    "model/encoder/embed_tokens/embedding": "embed_tokens.weight",
    "model/encoder/embed_positions/embedding": "embed_positions.weight",
    "model/encoder/layernorm_embedding/scale": "layernorm_embedding.weight",
    "model/encoder/layernorm_embedding/bias": "layernorm_embedding.bias",
    "model/encoder/final_ln/bias": "final_ln.bias",
}
FLAX_DECODER = {
    "model/decoder/embed_tokens/embedding": "embed_tokens.weight",
    "model/decoder/embed_positions/embedding": "embed_positions.weight",
    "model/decoder/layernorm_embedding/scale": "layernorm_embedding.weight",
    "model/decoder/layernorm_embedding/bias": "layernorm_embedding.bias",
    "model/decoder/final_ln/bias": "final_ln.bias",
    "lm_head/kernel": "lm_head.weight",
}
FLAX_ENCODER_LAYERS = {"scanned": "model/encoder/layers/FlaxBartEncoderLayers/",
                       "single": "model/encoder/layers/FlaxBartEncoderLayer_{i}/"}
FLAX_DECODER_LAYERS = {"scanned": "model/decoder/layers/FlaxBartDecoderLayers/",
                       "single": "model/decoder/layers/FlaxBartDecoderLayer_{i}/"}

# VQGAN: patil-suraj/vqgan-jax vqgan_jax/modeling_flax_vqgan.py. VQModule's setup() names encoder,
# decoder, quantize (its nn.Embed `embedding`), quant_conv, post_quant_conv; lists of modules assigned
# in setup() are named `<attribute>_<index>`, so the decoder's levels are up_<i> (level 0 = the finest,
# the list is reversed back into taming's order) with block_<j>, attn_<j> and `upsample/conv`; MidBlock
# has block_1, attn_1, block_2. Group norms have scale and bias, convolutions kernel and bias.
FLAX_RESNET = {
    "norm1/scale": "norm1.weight", "norm1/bias": "norm1.bias", "conv1/kernel": "conv1.weight", "conv1/bias": "conv1.bias",
    "norm2/scale": "norm2.weight", "norm2/bias": "norm2.bias", "conv2/kernel": "conv2.weight", "conv2/bias": "conv2.bias",
}
FLAX_NIN_SHORTCUT = {"nin_shortcut/kernel": "nin_shortcut.weight", "nin_shortcut/bias": "nin_shortcut.bias"}
FLAX_ATTN = {
    "norm/scale": "norm.weight", "norm/bias": "norm.bias", "q/kernel": "q.weight", "q/bias": "q.bias",
    "k/kernel": "k.weight", "k/bias": "k.bias", "v/kernel": "v.weight", "v/bias": "v.bias",
    "proj_out/kernel": "proj_out.weight", "proj_out/bias": "proj_out.bias",
}
FLAX_VQGAN = {
    "quantize/embedding/embedding": "embedding.weight",
    "post_quant_conv/kernel": "post_quant_conv.weight", "post_quant_conv/bias": "post_quant_conv.bias",
    "decoder/conv_in/kernel": "decoder.conv_in.weight", "decoder/conv_in/bias": "decoder.conv_in.bias",
    "decoder/norm_out/scale": "decoder.norm_out.weight", "decoder/norm_out/bias": "decoder.norm_out.bias",
    "decoder/conv_out/kernel": "decoder.conv_out.weight", "decoder/conv_out/bias": "decoder.conv_out.bias",
}
FLAX_VQGAN_MID = {"decoder/mid/block_1/": ("decoder.mid.block_1.", FLAX_RESNET),
                  "decoder/mid/attn_1/": ("decoder.mid.attn_1.", FLAX_ATTN),
                  "decoder/mid/block_2/": ("decoder.mid.block_2.", FLAX_RESNET)}
# The encoder half, which the converter must skip (a few of its names; their values are never read).
FLAX_VQGAN_ENCODER = ("encoder/conv_in/kernel", "encoder/down_0/block_0/norm1/scale", "encoder/mid/attn_1/q/kernel",
                      "quant_conv/kernel", "quant_conv/bias")


def _flax_array(path: str, t: torch.Tensor) -> np.ndarray:
    """A PyTorch tensor in the layout Flax keeps under `path`: dense kernels [in, out], convolution
    kernels [kh, kw, in, out]; embeddings, scales and biases as they are."""
    a = t.detach().numpy()
    if path.endswith("/kernel"):
        return a.T.copy() if a.ndim == 2 else a.transpose(2, 3, 1, 0).copy()
    return a


def _nest(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *path, leaf = key.split("/")
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def flax_bart_tree(encoder: dict, decoder: dict, scanned: bool, scaled: bool = False) -> dict:
    """The tree of a dalle-mini flax_model.msgpack holding the published state `encoder`/`decoder`,
    under the names above; every published parameter must have one."""
    flat, used = {}, {"encoder": set(), "decoder": set()}
    parts = (("encoder", encoder, FLAX_ENCODER, FLAX_ENCODER_LAYERS,
              {**FLAX_ENCODER_LAYER, **(FLAX_ENCODER_LAYER_SCALES if scaled else {})}),
             ("decoder", decoder, FLAX_DECODER, FLAX_DECODER_LAYERS,
              {**FLAX_DECODER_LAYER, **(FLAX_DECODER_LAYER_SCALES if scaled else {})}))
    for codec, state, top, layers, per_layer in parts:
        tops = {**top, "model/" + codec + "/final_ln/scale": "final_ln.weight"} if scaled else top
        for path, name in tops.items():
            flat[path] = _flax_array(path, state[name])
            used[codec].add(name)
        n = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
        for part, name in per_layer.items():
            arrays = [_flax_array(part, state[f"layers.{i}.{name}"]) for i in range(n)]
            used[codec].update(f"layers.{i}.{name}" for i in range(n))
            if scanned:
                flat[layers["scanned"] + part] = np.stack(arrays)
            else:
                for i, a in enumerate(arrays):
                    flat[layers["single"].format(i=i) + part] = a
    for codec, state in (("encoder", encoder), ("decoder", decoder)):
        assert used[codec] == set(state), f"{codec}: no Flax name for {sorted(set(state) - used[codec])}"
    return _nest(flat)


def flax_vqgan_tree(detoker: dict, v) -> dict:
    """The tree of vqgan-jax's flax_model.msgpack holding `detoker` (dims `v`), encoder half included."""
    names = dict(FLAX_VQGAN)
    for prefix, (target, table) in FLAX_VQGAN_MID.items():
        names.update({prefix + k: target + n for k, n in table.items()})
    chans = [v.ch * m for m in v.ch_mult]
    for i, cout in enumerate(chans):
        cin = chans[i + 1] if i + 1 < len(chans) else chans[-1]
        for j in range(v.res_blocks):
            block = {**FLAX_RESNET, **(FLAX_NIN_SHORTCUT if j == 0 and cin != cout else {})}
            names.update({f"decoder/up_{i}/block_{j}/{k}": f"decoder.up.{i}.block.{j}.{n}" for k, n in block.items()})
            if i == len(chans) - 1:  # attention at the coarsest level only (attn_resolutions 16)
                names.update({f"decoder/up_{i}/attn_{j}/{k}": f"decoder.up.{i}.attn.{j}.{n}" for k, n in FLAX_ATTN.items()})
        if i > 0:
            names[f"decoder/up_{i}/upsample/conv/kernel"] = f"decoder.up.{i}.upsample.conv.weight"
            names[f"decoder/up_{i}/upsample/conv/bias"] = f"decoder.up.{i}.upsample.conv.bias"
    assert set(names.values()) == set(detoker), f"no Flax name for {sorted(set(detoker) - set(names.values()))}"
    flat = {path: _flax_array(path, detoker[name]) for path, name in names.items()}
    flat.update({path: np.zeros(2, np.float32) for path in FLAX_VQGAN_ENCODER})
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
        """dalle-mini's names (written out above from its modeling.py) read into min-dalle's, scanned or
        layer by layer, with the scale-less norms of force_ln_scale=False or with every scale."""
        for scaled in (False, True):
            enc, dec = self.p.encoder.state_dict(), self.p.decoder.state_dict()
            if not scaled:
                enc, dec = without_unscaled_norms(enc), without_unscaled_norms(dec)
            for scanned in (True, False):
                with self.subTest(scanned=scanned, scaled=scaled):
                    path = os.path.join(self.tmp, f"bart-{scanned}-{scaled}.msgpack")
                    write_flax_msgpack(flax_bart_tree(enc, dec, scanned, scaled), path)
                    got_enc, got_dec = flax_checkpoint.bart_states(flax_checkpoint.read_msgpack(path))
                    self.assert_same(got_enc, enc)
                    self.assert_same(got_dec, dec)

    def test_flax_names_are_dalle_minis(self):
        """A few full paths as they appear in dalle-mini's checkpoints, spelled out once more."""
        enc = without_unscaled_norms(self.p.encoder.state_dict())
        dec = without_unscaled_norms(self.p.decoder.state_dict())
        flat = flax_checkpoint.flatten(flax_bart_tree(enc, dec, scanned=True))
        for key in ("model.encoder.layers.FlaxBartEncoderLayers.FlaxBartAttention_0.q_proj.kernel",
                    "model.decoder.layers.FlaxBartDecoderLayers.FlaxBartAttention_1.out_proj.kernel",
                    "model.decoder.layers.FlaxBartDecoderLayers.GLU_0.Dense_2.kernel",
                    "model.decoder.layers.FlaxBartDecoderLayers.LayerNorm_3.scale",
                    "model.encoder.embed_positions.embedding", "model.decoder.final_ln.bias", "lm_head.kernel"):
            self.assertIn(key, flat)
        self.assertEqual(flat["model.encoder.layers.FlaxBartEncoderLayers.GLU_0.Dense_0.kernel"].shape,
                         (parity.ENCODER_LAYERS, parity.DIMS.width, parity.DIMS.glu), "stacked, [in, out]")
        vq = flax_checkpoint.flatten(flax_vqgan_tree(self.p.detokenizer.state_dict(), parity.VQ_DIMS))
        for key in ("decoder.up_2.attn_0.proj_out.kernel", "decoder.up_1.block_0.nin_shortcut.kernel",
                    "decoder.up_1.upsample.conv.kernel", "decoder.mid.block_1.norm1.scale", "post_quant_conv.kernel"):
            self.assertIn(key, vq)

    def test_vqgan(self):
        state = self.p.detokenizer.state_dict()
        path = os.path.join(self.tmp, "vqgan.msgpack")
        write_flax_msgpack(flax_vqgan_tree(state, parity.VQ_DIMS), path)
        self.assert_same(flax_checkpoint.vqgan_state(flax_checkpoint.read_msgpack(path)), state)
        # older Flax group norms keep their scale and bias as (1, 1, 1, C)
        tree = flax_vqgan_tree(state, parity.VQ_DIMS)
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
        write_flax_msgpack(flax_vqgan_tree(self.p.detokenizer.state_dict(), parity.VQ_DIMS), os.path.join(vq, "flax_model.msgpack"))
        vocab, merges = parity.tiny_vocab()
        with open(os.path.join(bart, "vocab.json"), "w") as f:
            json.dump(vocab, f)
        with open(os.path.join(bart, "merges.txt"), "w") as f:
            f.write("\n".join(merges))
        config = {**ConvertTest.MEGA_CONFIG, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                  "d_model": 32, "image_vocab_size": 70, "decoder_start_token_id": 64}
        out = os.path.join(self.tmp, "model")
        # each setting Mosaic does not compute stops the conversion, naming config.json and the setting
        for key, value in [*ConvertTest.UNSUPPORTED, ("decoder_start_token_id", 70)]:
            with self.subTest(key=key, value=value):
                with open(os.path.join(bart, "config.json"), "w") as f:
                    json.dump({**config, key: value}, f)
                with self.assertRaisesRegex(convert.ConvertError, rf"dalle-mini/config\.json: {key} = "):
                    convert.convert(bart, vq, out, "flax-tiny", patch=None)
        with open(os.path.join(bart, "config.json"), "w") as f:
            json.dump(config, f)
        convert.convert(bart, vq, out, "flax-tiny", patch=None)
        m = model_check.check_model_folder(out)
        self.assertEqual(m["architecture"]["heads"], 4, "heads come from config.json")
        self.assertEqual(m["training"]["convertedFrom"]["format"],
                         "BART: dalle-mini Flax checkpoint; VQGAN: dalle-mini Flax checkpoint")

    def test_unknown_layer_parts_are_reported_by_the_converter(self):
        bart = os.path.join(self.tmp, "odd")
        os.makedirs(bart)
        tree = flax_bart_tree(self.p.encoder.state_dict(), self.p.decoder.state_dict(), True, scaled=True)
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
