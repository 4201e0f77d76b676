"""The codelab app's offensive-language filter: refuse prompts and outputs with blocked words.

Matching is on whole words (or phrases), case- and accent-insensitive ("CABRON" matches
"cabrón"), so that "Scunthorpe" or "shitake"-style substrings do not trip it.
"""

from __future__ import annotations

import re
import unicodedata
from importlib import resources
from pathlib import Path

DEFAULT_BLOCKLIST = Path(str(resources.files("llm2tflite") / "data" / "blocklist.txt"))


def _normalize(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def load_blocklist(path: str | Path | None = None) -> list[str]:
    path = Path(path) if path else DEFAULT_BLOCKLIST
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return words


class SafetyFilter:
    def __init__(self, words):
        self.words = list(words)
        alternatives = sorted({re.escape(_normalize(w)) for w in self.words}, key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")
            if alternatives
            else None
        )

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> SafetyFilter:
        return cls(load_blocklist(path))

    def blocked_words(self, text: str) -> list[str]:
        """The blocked words or phrases found in ``text`` (normalized), in order of appearance."""
        if self._pattern is None:
            return []
        return list(dict.fromkeys(self._pattern.findall(_normalize(text))))


class RefusedError(RuntimeError):
    """A prompt or an output was refused by the safety filter."""

    def __init__(self, what: str, words: list[str]):
        self.what, self.words = what, words
        super().__init__(
            f"refused: the {what} contains language on the blocklist ({len(words)} match"
            f"{'es' if len(words) != 1 else ''}); rephrase the prompt"
            if what == "prompt"
            else f"refused: the generated text contains language on the blocklist "
            f"({len(words)} match{'es' if len(words) != 1 else ''}); it is not shown"
        )
