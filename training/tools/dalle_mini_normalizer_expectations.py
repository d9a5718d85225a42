"""Writes the expected outputs in test/fixtures/dalle-mini-normalizer.json by running dalle-mini's own
text normalisation (`TextNormalizer` in borisdayma/dalle-mini, src/dalle_mini/model/text.py; last changed
in commit f698aa3b9a7a645e0f103d583a8b3a69ce63a871) on the inputs held in that file. The TypeScript port
(src/engine/normalize-dalle-mini.ts) is tested against those outputs by test/normalize-dalle-mini.test.ts.

IT CANNOT RUN ON MOSAIC'S OWN MACHINES. It needs ftfy 6.1.1, emoji 2.2.0 and unidecode 1.3.6. Those
machines reach only the npm and Debian registries: Debian bookworm has python3-emoji 2.2.0 and
python3-unidecode 1.3.6, but no ftfy at all, and neither has dalle-mini's text.py. Where PyPI can be
reached:

    python3 -m venv /tmp/dalle-mini-text
    /tmp/dalle-mini-text/bin/pip install ftfy==6.1.1 emoji==2.2.0 unidecode==1.3.6
    # text.py from a checkout of borisdayma/dalle-mini: src/dalle_mini/model/text.py
    /tmp/dalle-mini-text/bin/python training/tools/dalle_mini_normalizer_expectations.py \\
        --text-py dalle-mini/src/dalle_mini/model/text.py            # rewrites each case's "python"
    ... --check                                                        # only compares, exit 1 on a difference

huggingface_hub is not needed: text.py imports it only for HashtagProcessor's word-frequency list,
which this script does not download (see below).

How the Python is run, so that its outputs are the ones the port must give:
- HashtagProcessor gets no word list: its __call__ still cuts the tag where its own expression cuts
  ([^a-zA-Z0-9']+) and joins the parts with spaces, but each part stays one word (its dynamic-programming
  splitter needs the list, which dalle-mini downloads). This is the port's documented difference.
- Each case's "draws" are what the "<person>" replacement's random.choices gets from random(), in order;
  a case whose draws are not all used, or that needs one more, fails.
- A case with an "engine" value is a documented difference: the port gives "engine" and the Python
  "python"; the script keeps "engine" and "note" as they are and says when the two became equal.

The fixture is the one place the inputs live: add a case there (input, optional draws), run this script
where it can run, and commit both values.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import random
import re
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "test", "fixtures", "dalle-mini-normalizer.json")
VERSIONS = {"ftfy": "6.1.1", "emoji": "2.2.0", "unidecode": "1.3.6"}


class ScriptedRandom(random.Random):
    """random.choices with the case's planned draws instead of a stream."""

    def __init__(self, draws: list[float]):
        super().__init__(0)
        self.draws = list(draws)
        self.used = 0

    def random(self) -> float:
        if self.used >= len(self.draws):
            raise RuntimeError(f"unplanned random draw (planned: {self.draws})")
        self.used += 1
        return self.draws[self.used - 1]


def load_text_module(path: str) -> types.ModuleType:
    hub = types.ModuleType("huggingface_hub")

    def hf_hub_download(*_args, **_kwargs):
        raise RuntimeError("no word list: HashtagProcessor is replaced (see the docstring)")

    hub.hf_hub_download = hf_hub_download
    sys.modules.setdefault("huggingface_hub", hub)
    spec = importlib.util.spec_from_file_location("dalle_mini_text", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class HashtagProcessorWithoutWordList(module.HashtagProcessor):
        def __init__(self):  # the original downloads the word list here
            self._SPLIT_RE = re.compile("[^a-zA-Z0-9']+")  # as HashtagProcessor.__init__ sets it

        def _split(self, s):
            return [s] if s else []

    module.HashtagProcessor = HashtagProcessorWithoutWordList
    return module


def normalise(module: types.ModuleType, normalizer, text: str, draws: list[float]) -> str:
    scripted = ScriptedRandom(draws)
    module.random = scripted  # text.py calls random.choices through its module global
    try:
        out = normalizer(text)
    finally:
        module.random = random
    if scripted.used != len(draws):
        raise RuntimeError(f"{text!r}: {len(draws)} draws planned, {scripted.used} used")
    return out


def write_fixture(path: str, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.write("\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text-py", required=True, help="dalle-mini's src/dalle_mini/model/text.py")
    p.add_argument("--fixture", default=FIXTURE)
    p.add_argument("--check", action="store_true", help="compare with the fixture instead of rewriting it")
    p.add_argument("--any-versions", action="store_true", help="run even if ftfy/emoji/unidecode are not the pinned ones")
    args = p.parse_args()
    found = {}
    for name in VERSIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    wrong = {k: v for k, v in found.items() if v != VERSIONS[k]}
    if wrong and not args.any_versions:
        raise SystemExit(f"needs {VERSIONS}; found {found} (pip install ftfy==6.1.1 emoji==2.2.0 unidecode==1.3.6)")

    module = load_text_module(args.text_py)
    normalizer = module.TextNormalizer()
    with open(args.fixture, encoding="utf-8") as f:
        data = json.load(f)
    differences = 0
    for group in data["groups"]:
        for case in group["cases"]:
            out = normalise(module, normalizer, case["input"], case.get("draws", []))
            if out != case.get("python"):
                differences += 1
                print(f"{case['input']!r}: python gives {out!r}, the fixture has {case.get('python')!r}")
            if "engine" in case and case["engine"] == out:
                print(f"{case['input']!r}: the documented difference is gone (engine and python both {out!r})")
            case["python"] = out
    if args.check:
        print(f"{differences} difference(s)")
        raise SystemExit(1 if differences else 0)
    data["pythonVersions"] = found
    write_fixture(args.fixture, data)
    print(f"wrote {args.fixture} ({differences} value(s) changed)")


if __name__ == "__main__":
    main()
