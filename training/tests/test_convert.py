"""Converter checks that need no ONNX Runtime (the numerical parity test is test/convert.test.ts)."""
from __future__ import annotations

import unittest

import torch
from dataclasses import replace

from mosaic_convert import convert, parity
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


if __name__ == "__main__":
    unittest.main()
