import assert from "node:assert/strict";
import { test } from "node:test";
import { normaliseDalleMini } from "../src/engine/normalize-dalle-mini.ts";
import { normalise } from "../src/engine/text.ts";

// Expected strings are the output of dalle-mini's own text.py (TextNormalizer) run under ftfy
// 6.1.1, emoji 2.2.0 and unidecode 1.3.6, with its hashtag splitter given no word list, and with
// the same draws fed to Python's random module; the last test pins a documented difference.

/** Normalises with scripted "<person>" draws; a draw the case did not plan for fails the test. */
function norm(text: string, draws: readonly number[] = []): string {
  let next = 0;
  const random = (): number => {
    const draw = draws[next++];
    assert.ok(draw !== undefined, `unplanned random draw for ${JSON.stringify(text)}`);
    return draw;
  };
  const out = normaliseDalleMini(text, { random });
  assert.equal(next, draws.length, "every planned draw is used");
  return out;
}

test("output is lower-cased, white space collapsed, and always starts with one space", () => {
  assert.equal(norm("A RED Car"), " a red car");
  assert.equal(norm("a\tb\n\nc   d"), " a b c d");
  assert.equal(norm(""), " ");
  assert.equal(norm("   "), " ");
});

test("accents and other scripts are transliterated to ASCII", () => {
  assert.equal(norm("Crème Brûlée à la Façon de Zoë"), " creme brulee a la facon de zoe");
  assert.equal(norm("Straße in Москва, 北京"), " strasse in moskva, bei jing");
});

test("punctuation becomes commas, runs of commas merge, and none is left at the ends", () => {
  assert.equal(norm("Hello!! World?? (test) [x] {y} a|b k:v a;b a=b+c~d"), " hello, world, test, x, y, a, b k, v a, b a, b, c, d");
  assert.equal(norm("The Eiffel Tower, Paris (France) -- at night!"), " the eiffel tower, paris, france, at night");
  assert.equal(norm(",,, hello ,,,"), " hello");
  assert.equal(norm("photo of a dog ,"), " photo of a dog");
});

test("<person> tokens: joined ones become 'people', single ones a weighted person word", () => {
  assert.equal(norm("<PERSON> and <person> met <person>", [0.1]), " people met a person");
  assert.equal(norm("<person>, <person> and <person>"), " people");
  assert.equal(norm("<person> <person>"), " people");
  assert.equal(norm("<person> saw <person> near <person>", [0.67, 0.68, 0.98]), " a person saw someone near somebody");
  // Either side of the running totals 282265 / 415678 and 403459 / 415678 (random.choices).
  assert.equal(norm("<person> saw <person> near <person> by <person>", [0.679, 0.6791, 0.9706, 0.9707]), " a person saw someone near someone by somebody");
  assert.match(normaliseDalleMini("<person>"), /^ (a person|someone|somebody)$/);
});

test("wiki references are removed at either end only", () => {
  assert.equal(norm("[12] The Eiffel Tower [3]"), " the eiffel tower");
  assert.equal(norm("a [4] b"), " a, 4, b");
});

test("HTML: entities unescaped as ftfy and fix_html do, then tags removed", () => {
  assert.equal(norm("<b>Bold</b> &amp; <i>italic</i>"), " bold & italic");
  // ftfy unescapes until nothing changes, but only before the first line that holds "<".
  assert.equal(norm("Tom &amp;amp; Jerry"), " tom & jerry");
  assert.equal(norm("x &amp;amp;\n<i>y &amp;amp;amp;</i>"), " x & y & amp");
  assert.equal(norm("a < b &amp;amp; c"), " a < b & c");
  // Escaped tags become real tags, and go.
  assert.equal(norm("&lt;b&gt;x&lt;/b&gt;"), " x");
  // ftfy also reads all-caps names (&NTILDE;) that html.unescape would leave alone.
  assert.equal(norm("&quot;hi&quot; &#39;s &eacute;t&eacute; &NTILDE;"), ' " hi " \'s ete n');
});

test("URLs are removed", () => {
  assert.equal(norm("see https://example.com/a?b=1 now, or http://x.org"), " see now, or");
});

test("thousands separators go; decimals, dotted words and dates keep their dots and slashes", () => {
  assert.equal(norm("1,000,000 people"), " 1000000 people");
  assert.equal(norm("12,34 and 12,345.67"), " 12, 34 and 12345.67");
  assert.equal(norm("pi is 3.14"), " pi is 3.14");
  assert.equal(norm("e.g. a.b"), " e.g, a.b");
  assert.equal(norm("on 12/25/2020 a/b"), " on 12/25/2020 a, b");
});

test("quotes: contractions keep their apostrophe, other quotes become one spaced double quote", () => {
  assert.equal(
    norm("it's Tom's 'quoted' \"dq\" `bt` we'll they're I've I'd I'm don't"),
    ' it\'s tom\'s " quoted " dq " bt " we\'ll they\'re i\'ve i\'d i\'m don\'t',
  );
  assert.equal(norm('"""quoted"""'), ' " quoted "');
});

test("special characters: hyphens between words become spaces, % & / $ * are spaced out", () => {
  assert.equal(norm("x-ray well - known 50% off AT&T $5 a*b"), " x ray well, known 50 % off at & t $ 5 a * b");
  assert.equal(norm("__init__ back\\slash"), " init back slash");
});

test("hashtags lose their '#' and are cut at '_' only (no word list: documented difference)", () => {
  assert.equal(norm("#sunset_beach #SummerVibes2021 # C#"), " sunset beach summervibes2021 c");
  assert.equal(norm("#a_b_c #x.y #top10"), " a b c x.y top10");
  // A hashtag's "#" and the "_" at its ends are dropped outright; any other "#" becomes a space.
  assert.equal(norm("word#tag a#b_c we're#_x_"), " wordtag ab c we'rex");
});

test("a character repeated four or more times collapses to one, except digits", () => {
  assert.equal(norm("soooooo cool!!!!! VIII zzzz 1111 aaa"), " so cool, viii z 1111 aaa");
  assert.equal(norm("soooo sooo"), " so sooo");
});

test("emoji become their names", () => {
  assert.equal(norm("I ❤️ NY 👍🏽 🇫🇷"), " i, red heart, ny, thumbs up medium skin tone, france");
  assert.equal(norm("© 2020 ™"), " copyright, 2020, trade mark");
});

test("ftfy's character fixes: ligatures, curly quotes, full width, terminal escapes, controls", () => {
  assert.equal(norm("ﬁne “curly” ‘single’ ＡＢＣ"), ' fine " curly " single " abc');
  assert.equal(norm("Ａ　Ｂ"), " a b");
  assert.equal(norm("\x1b[31mred\x1b[0m a\x00b"), " red ab");
  // These run before the HTML steps, so what they produce is unescaped too.
  assert.equal(norm("Tom ＆ａｍｐ； Jerry"), " tom & jerry");
  assert.equal(norm("&ﬁlig;"), " fi");
});

test("documented difference: mojibake is not repaired (Python's ftfy gives ' cafe')", () => {
  assert.equal(norm("cafÃ©"), " cafa, copyright");
});

test("through the engine, a prompt with <person> normalises the same way every time", () => {
  const prompt = "<person> riding a horse, <person> watching";
  const first = normalise(prompt, "dalle-mini");
  for (let i = 0; i < 5; i++) assert.equal(normalise(prompt, "dalle-mini"), first);
  assert.ok(!first.includes("person>"), first);
});
