// The codelab app's offensive-language filter, as llm2tflite/core/safety.py and the CLI apply it.
//
// blocklist.json holds the words already normalized by Python (casefold, NFKD, combining marks
// dropped); text is normalized here the same way, with toLowerCase plus the few full case
// foldings that change length (JavaScript has no casefold). Whole words only: a word character
// ([\p{L}\p{N}_], Python's \w) may not touch a match on either side.

const FOLDINGS = { ß: "ss", ẞ: "ss", ς: "σ", ſ: "s" };

export function normalize(text) {
  const folded = text.toLowerCase().replace(/[ßẞςſ]/gu, (c) => FOLDINGS[c]);
  return folded.normalize("NFKD").replace(/\p{Mn}/gu, "");
}

function escape(word) {
  return word.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

export class SafetyFilter {
  constructor(normalizedWords) {
    const alternatives = [...new Set(normalizedWords)].sort((a, b) => b.length - a.length);
    this.pattern = alternatives.length
      ? new RegExp(
          `(?<![\\p{L}\\p{N}_])(?:${alternatives.map(escape).join("|")})(?![\\p{L}\\p{N}_])`,
          "gu",
        )
      : null;
  }

  blockedWords(text) {
    if (this.pattern === null) return [];
    return [...new Set(normalize(text).match(this.pattern) || [])];
  }
}

export class RefusedError extends Error {
  constructor(what, words) {
    const matches = `${words.length} match${words.length === 1 ? "" : "es"}`;
    super(
      what === "prompt"
        ? `refused: the prompt contains language on the blocklist (${matches}); rephrase the prompt`
        : `refused: the generated text contains language on the blocklist (${matches}); ` +
            "generation stopped before it (the text shown came before the match)",
    );
    this.what = what;
    this.words = words;
  }
}

// Streamed text behind the filter, one complete word at a time (the CLI's _SafeStream): text is
// held back to the end of its last complete word (a non-word character follows it); each time
// more becomes complete the whole text so far is checked, and a blocklisted word throws before
// anything after the last shown word is shown. close() checks and shows the held-back end.
export class SafeStream {
  constructor(safety, show) {
    this.safety = safety;
    this.show = show;
    this.text = "";
    this.shown = 0;
  }

  write(piece) {
    this.text += piece;
    // Python's $ also matches before a final newline.
    const tail = /[^\p{L}\p{N}_](?=[\p{L}\p{N}_]*\n?$)/gu;
    tail.lastIndex = this.shown;
    const boundary = tail.exec(this.text);
    if (boundary === null) return;
    const complete = boundary.index + boundary[0].length;
    this.check(this.text.slice(0, complete));
    this.shown = complete;
    this.show(this.text.slice(0, complete));
  }

  close(text) {
    this.check(text);
    this.shown = text.length;
    this.show(text);
  }

  check(text) {
    const blocked = this.safety.blockedWords(text);
    if (blocked.length) throw new RefusedError("output", blocked);
  }
}
