import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT } from "../src/engine/settings.ts";
import { normalizeDalleMini } from "../src/engine/normalize-dalle-mini.ts";
import { normalize } from "../src/engine/text.ts";

// Inputs and expected strings live in test/fixtures/dalle-mini-normalizer.json: "python" is the output of
// dalle-mini's own text.py (TextNormalizer) under ftfy 6.1.1, emoji 2.2.0 and unidecode 1.3.6, with its
// hashtag splitter given no word list and the case's draws fed to Python's random module, as
// training/tools/dalle_mini_normalizer_expectations.py writes it; "engine", where present, pins a
// documented difference.

interface Case {
  input: string;
  draws?: number[];
  python: string;
  engine?: string;
  note?: string;
}
interface Fixture {
  groups: { name: string; cases: Case[] }[];
}
const FIXTURE = path.join(PACKAGE_ROOT, "test", "fixtures", "dalle-mini-normalizer.json");
const fixture = JSON.parse(readFileSync(FIXTURE, "utf8")) as Fixture;

/** Normalises with scripted "<person>" draws; a draw the case did not plan for fails the test. */
function norm(text: string, draws: readonly number[] = []): string {
  let next = 0;
  const random = (): number => {
    const draw = draws[next++];
    assert.ok(draw !== undefined, `unplanned random draw for ${JSON.stringify(text)}`);
    return draw;
  };
  const out = normalizeDalleMini(text, { random });
  assert.equal(next, draws.length, "every planned draw is used");
  return out;
}

for (const group of fixture.groups) {
  test(group.name, () => {
    for (const c of group.cases) {
      const label = `${JSON.stringify(c.input)}${c.note ? ` (${c.note})` : ""}`;
      if (c.engine !== undefined) {
        assert.notEqual(c.engine, c.python, `${label}: a documented difference must differ from the Python`);
      }
      assert.equal(norm(c.input, c.draws), c.engine ?? c.python, label);
    }
  });
}

test("the fixture holds every case the port was checked on", () => {
  const cases = fixture.groups.flatMap((g) => g.cases);
  assert.ok(cases.length >= 46, "at least the 46 cases the port was first checked on");
  assert.equal(new Set(cases.map((c) => c.input)).size, cases.length, "no input twice");
});

test("a <person> drawn from the default random source is one of Python's three words", () => {
  assert.match(normalizeDalleMini("<person>"), /^ (a person|someone|somebody)$/);
});

test("through the engine, a prompt with <person> normalises the same way every time", () => {
  const prompt = "<person> riding a horse, <person> watching";
  const first = normalize(prompt, "dalle-mini");
  for (let i = 0; i < 5; i++) assert.equal(normalize(prompt, "dalle-mini"), first);
  assert.ok(!first.includes("person>"), first);
});
