"""Training-side checks: the data generator, the text pipeline, sampling, and a smoke run."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

from mosaic_train import adherence, data, model_check
from mosaic_train.sampling import Mulberry32, Settings, choose
from mosaic_train.text import WordTokenizer, normalise


class DataTest(unittest.TestCase):
    def test_deterministic(self):
        for i in (0, 1, 17):
            a, b = data.sample(5, i), data.sample(5, i)
            self.assertEqual(a[0], b[0])
            self.assertEqual(a[1], b[1])
            np.testing.assert_array_equal(a[2], b[2])
        self.assertNotEqual(data.sample(5, 0)[1], data.sample(6, 0)[1])

    def test_captions_state_every_fact(self):
        for i in range(200):
            scene, caption, _ = data.sample(3, i)
            self.assertIn(scene.background, caption)
            for s in scene.shapes:
                self.assertIn(f"{s.colour} {s.shape}", caption)
                self.assertTrue(any(p in caption for p in data.POSITION_PHRASES[s.position]), caption)
                self.assertTrue(any(w in caption for w in data.SIZE_WORDS[s.size]), caption)

    def test_images_match_captions(self):
        """The pixels show what the caption says: the adherence check passes on every real image."""
        results = []
        for i in range(150):
            scene, _, img = data.sample(4, i, held_out=True)
            self.assertEqual(img.shape, (64, 64, 3))
            results.append(adherence.score(img, scene))
        summary = adherence.summarise(results)
        for key in ("adherent", "position", "shape", "size"):
            self.assertEqual(summary[key], 1.0, summary)

    def test_held_out_never_in_training(self):
        for i in range(500):
            scene, _, _ = data.sample(1, i)
            self.assertFalse(any(data.is_held_out(scene.background, s) for s in scene.shapes))

    def test_check_rejects_wrong_images(self):
        scene, _, img = data.sample(8, 0, held_out=True)
        other = data.SceneSpec(scene.background, ())
        blank = data.render(other)
        self.assertFalse(adherence.score(blank, scene)["adherent"])


class TextTest(unittest.TestCase):
    def test_normalise(self):
        self.assertEqual(normalise("  A Big RED circle!!  On the LEFT... "), "a big red circle , on the left")
        self.assertEqual(normalise("Crème brûlée, naïve"), "creme brulee , naive")
        self.assertEqual(normalise(",,hello,,"), "hello")
        self.assertEqual(normalise(""), "")

    def test_tokenizer(self):
        tok = WordTokenizer(data.vocabulary())
        ids = tok.encode("a red zebra", 32)
        self.assertEqual(ids[0], tok.vocab["<s>"])
        self.assertEqual(ids[-1], tok.vocab["</s>"])
        self.assertEqual(ids[3], tok.vocab["<unk>"])
        long = tok.encode("red " * 100, 32)
        self.assertEqual(len(long), 32)
        self.assertEqual(long[-1], tok.vocab["</s>"])


class SamplingTest(unittest.TestCase):
    def test_mulberry32_known_values(self):
        # Pinned against the TypeScript implementation (test/sampling.test.ts has the same numbers).
        r = Mulberry32(42)
        self.assertEqual([r.next_u32() for _ in range(3)], [2581720956, 1925393290, 3661312704])

    def test_top_k_one_is_argmax(self):
        logits = np.array([0.1, 3.0, 2.0, -1.0])
        self.assertEqual(choose(logits, Settings(top_k=1), Mulberry32(1)), 1)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SmokeTest(unittest.TestCase):
    """A few steps of every stage (mosaic_train.smoke), then what they exported: model.json against
    the format and the ONNX graphs (mosaic_train.model_check), and the folder loaded by the TypeScript
    engine, which must reproduce the PyTorch fixtures the export wrote (scripts/smoke-engine.ts)."""

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="mosaic-smoke-")
        cls.model = os.path.join(cls.work, "model")
        cls.run_ = subprocess.run([sys.executable, "-m", "mosaic_train.smoke", "--work", cls.work],
                                  capture_output=True, text=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.run_.returncode, 0, self.run_.stderr[-3000:])

    def test_every_stage_runs(self):
        self.assertIn("smoke run ok", self.run_.stdout)

    def test_the_export_is_a_valid_model_folder(self):
        m = model_check.check_model_folder(self.model)
        a = m["architecture"]
        # the sizes smoke.py asks for
        self.assertEqual((a["encoderLayers"], a["decoderLayers"], a["heads"], a["modelWidth"], a["feedForwardWidth"],
                          a["codebookSize"], a["startTokenId"]), (1, 1, 2, 32, 48, 32, 32))
        self.assertEqual(a["textVocabSize"], len(WordTokenizer(data.vocabulary()).vocab))

    def test_the_check_catches_a_broken_folder(self):
        def broken(edit) -> str:
            folder = tempfile.mkdtemp(dir=self.work)
            for f in os.listdir(self.model):
                shutil.copy(os.path.join(self.model, f), folder)
            with open(os.path.join(folder, "model.json")) as f:
                m = json.load(f)
            edit(m, folder)
            with open(os.path.join(folder, "model.json"), "w") as f:
                json.dump(m, f)
            return folder

        cases = {
            "codebookSize": lambda m, _: m["architecture"].update(codebookSize=33),
            "textVocabSize": lambda m, _: m["architecture"].update(textVocabSize=39),
            "maxTextLength": lambda m, _: m["architecture"].update(maxTextLength=31),
            "decoderLayers": lambda m, _: m["architecture"].update(decoderLayers=2),
            "feed-forward": lambda m, _: m["architecture"].update(feedForwardWidth=64),
            "heads × headDim": lambda m, _: m["architecture"].update(heads=4),
            "architecture.grid is missing": lambda m, _: m["architecture"].pop("grid"),
            "sampling.topK is missing": lambda m, _: m["sampling"].pop("topK"),
            "decoder_step.onnx is missing": lambda _, d: os.remove(os.path.join(d, "decoder_step.onnx")),
            "code-patches.bin: ": lambda _, d: open(os.path.join(d, "code-patches.bin"), "ab").write(b"x"),
            "outputs": lambda m, _: m["graphs"]["decoderStep"]["outputs"].pop(),
            "tokenizer": lambda m, _: m["text"].update(tokenizer="missing.json"),
        }
        for problem, edit in cases.items():
            with self.subTest(problem=problem):
                with self.assertRaisesRegex(model_check.ModelFolderError, re.escape(problem)):
                    model_check.check_model_folder(broken(edit))

    def test_the_engine_serves_the_export(self):
        out = subprocess.run(["node", "--import", "tsx", os.path.join("scripts", "smoke-engine.ts"), self.model,
                              os.path.join(self.work, "fixtures.json")], cwd=ROOT, capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr[-3000:] + out.stdout[-1000:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual((result["ok"], result["generations"], result["tokensEach"]), (True, 4, 256))


if __name__ == "__main__":
    unittest.main()
