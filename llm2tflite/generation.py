"""What one generation produced (no TensorFlow here): the record every runtime returns.

Written per /work/design.md for the LiteRT runtime; the "numbers" helper owns this module (its
version replaces this one when the branches meet).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Generation:
    """One prompt's continuation.

    ``token_ids``: the start token, the prompt's kept ids, then the generated ids (the stop token
    that ended generation is not included); ``prompt_tokens``: how many of them are the start
    token and the prompt; ``timings``: per-step figures of runtimes that measure them.
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    timings: dict | None = field(default=None, compare=False)

    @property
    def new_tokens(self) -> int:
        """Tokens the model generated (the stop token not counted)."""
        return len(self.token_ids) - self.prompt_tokens

    @property
    def new_token_ids(self) -> list[int]:
        return self.token_ids[self.prompt_tokens:]
