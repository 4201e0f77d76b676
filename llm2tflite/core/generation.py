"""What one generation produced, and the one place new tokens are counted (no TensorFlow here).

Every runtime (the codelab ``.tflite``, the traced SavedModel in TensorFlow, the LiteRT route's
prefill/decode model, the Keras model itself) returns a :class:`Generation`: the text and the ids
the model generated, so benchmark, smoke test, fidelity and CLI count the tokens the model really
produced instead of re-tokenizing its text (which can merge differently at the prompt's end).

:class:`CausalLMRuntime` is the interface the stages program against (``llm2tflite.model_files``
opens a file as one); a route adds a class with these members and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Generation:
    """One prompt's continuation.

    ``token_ids``: the start token, the prompt's ids the model kept (a long prompt keeps its first
    tokens), then the generated ids; the stop token that ended generation is not included.
    ``prompt_tokens``: how many of ``token_ids`` are the start token and the prompt.
    ``timings``: per-step figures of runtimes that can measure them (the LiteRT route):
    ``prefill_s`` (seconds of the prefill calls), ``first_token_s`` (from the call to the first
    generated id), ``decode_step_s`` (seconds of every decode step, in order); None otherwise.
    """

    text: str
    token_ids: list[int]
    prompt_tokens: int
    timings: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        self.token_ids = [int(i) for i in self.token_ids]
        self.prompt_tokens = int(self.prompt_tokens)
        if not 0 <= self.prompt_tokens <= len(self.token_ids):
            raise ValueError(
                f"prompt_tokens {self.prompt_tokens} outside token_ids of length "
                f"{len(self.token_ids)}"
            )

    @property
    def new_tokens(self) -> int:
        """Tokens the model generated (the stop token not counted)."""
        return len(self.token_ids) - self.prompt_tokens

    @property
    def new_token_ids(self) -> list[int]:
        return self.token_ids[self.prompt_tokens :]

    def to_json(self) -> dict:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "timings": self.timings,
        }

    @classmethod
    def from_json(cls, record: dict) -> Generation:
        return cls(
            record["text"], record["token_ids"], record["prompt_tokens"], record.get("timings")
        )


def kept_token_ids(
    token_ids: Sequence[int],
    padding_mask: Sequence[bool],
    prompt_tokens: int,
    stop_token_ids: Iterable[int],
) -> list[int]:
    """The ids of a generation's output buffer that a :class:`Generation` keeps.

    KerasHub's ``generate_step`` returns a fixed-length buffer and a mask that is true over the
    prompt, the generated ids and the stop token that ended generation (if any). The kept ids are
    the masked ones without a stop token after the prompt. The traced graph
    (``llm2tflite.codelab.trace``) computes the same in TensorFlow ops; a test holds them equal.
    """
    stops = {int(i) for i in stop_token_ids}
    return [
        int(t)
        for position, (t, keep) in enumerate(zip(token_ids, padding_mask))
        if keep and not (position >= prompt_tokens and int(t) in stops)
    ]


class ModelOpenError(ValueError):
    """The file is not a model this project can run (one line: what it is and what to do)."""


class CausalLMRuntime(Protocol):
    """What a runtime opened by ``llm2tflite.model_files.open_model`` offers (every route).

    ``route``: "tflite" (the codelab's one-signature generation), "litert" (prefill/decode),
    "tensorflow" (the traced SavedModel, the benchmark's baseline). ``load_seconds``: time to
    load the file and prepare its signatures.

    ``generate(prompt, max_length=None, sampler=None, on_text=None, timings=False)``:
    ``max_length`` caps the output at that many tokens, start token included (as KerasHub's
    ``generate``); ``sampler`` is a sampler name or settings the route supports (the codelab
    route's greedy sampler is fixed when it is traced: anything else is a ValueError);
    ``on_text(piece)`` is called with successive pieces of text whose concatenation is the
    returned ``Generation.text`` (a route that cannot stream calls it once); ``timings=True``
    asks for ``Generation.timings`` (a route that cannot measure steps leaves it None).
    ``token_ids(text, with_start=False)``: the text's ids by the model's own tokenizer.
    ``text(ids)``: the inverse. ``log_likelihoods(ids_with_start)``: log p of every id after the
    first given the ones before it (for perplexity).
    """

    route: str
    load_seconds: float

    def generate(
        self,
        prompt: str | bytes,
        max_length: int | None = None,
        sampler=None,
        on_text: Callable[[str], None] | None = None,
        timings: bool = False,
    ) -> Generation: ...

    def token_ids(self, text: str | bytes, with_start: bool = False) -> list[int]: ...

    def text(self, token_ids: Sequence[int]) -> str: ...

    def log_likelihoods(self, token_ids_with_start: Sequence[int]) -> list[float]: ...
