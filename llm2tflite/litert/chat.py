"""A multi-turn conversation on the LiteRT route's ``.tflite``, its KV cache kept across turns.

Each turn prefills only its own tokens at the current position (the history stays in the cache,
never prefilled again), in the order LiteRT-LM's Conversation API prefills them
(``llm2tflite.core.chat``): the token sampled last (the start token before the first turn),
then the turn's text ``user.prefix + text + user.suffix + model.prefix`` tokenized on its own
(the first turn's preceded by the template's preamble).
The reply is decoded until a stop token or ``max_new_tokens`` tokens (the last of which, as a
stop token, is fed at the next turn).

``steps`` records every runtime call: ``("prefill", position, count)`` per turn and
``("decode", position)`` per decode step, so a test can see that a later turn starts where the
last one ended. When a turn does not fit the context, :class:`ContextFullError` says so and the
conversation is left as it was; a reply that reaches the end of the cache stops there
(``Reply.context_full``). ``forget`` drops the last turn (the safety filter's refusal).
"""

from __future__ import annotations

from dataclasses import dataclass

from llm2tflite.core.chat import ChatTemplate
from llm2tflite.litert.runtime import _as_sampler, _TextStream


class ContextFullError(ValueError):
    """The turn does not fit the context left (one line: how much is used, how much it needs)."""


class NoChatTemplateError(ValueError):
    """The model carries no chat template."""


@dataclass
class Reply:
    text: str
    token_ids: list[int]  # the reply's ids, the stop token not included
    prompt_tokens: int  # ids this turn prefilled (the pending token included)
    context_full: bool  # the reply stopped at the end of the cache


class ChatSession:
    def __init__(self, model, template: ChatTemplate | None = None, sampler=None):
        if template is None:
            fields = model.info.get("chat_template")
            if not fields:
                refused = model.info.get("chat_template_refused")
                raise NoChatTemplateError(
                    f"{model.path} carries no chat template ("
                    + (f"its checkpoint's was refused: {refused}" if refused else
                       "its export info has no chat_template")
                    + "): set litert.chat_templates.<model> in the config, or use a family "
                    "that has one (gemma3), or give --chat-template-json"
                )  # fmt: skip
            template = ChatTemplate.from_dict(fields)
        self.model, self.template = model, template
        self.sampler = _as_sampler(sampler)
        self.position = 0  # rows of the cache in use
        self.pending = [model.start_token_id] if model.add_start_token else []
        self.turns = 0
        self.steps: list[tuple] = []
        self._saved = None
        model.rewind()

    @property
    def context_length(self) -> int:
        return self.model.cache_length

    def reply(self, user_text: str, max_new_tokens: int = 64, on_text=None) -> Reply:
        model = self.model
        text = self.template.turn(user_text, first=self.turns == 0)
        ids = self.pending + model.token_ids(text)
        if not ids:
            raise ValueError("the turn is empty")
        if self.position + len(ids) > self.context_length:
            raise ContextFullError(
                f"the context is full: {self.position} of {self.context_length} tokens are "
                f"in use and this turn needs {len(ids)} more; it was not answered (start a new "
                "conversation)"
            )
        self._saved = (self.position, list(self.pending), self.turns)
        model.prefill(ids[:-1], self.position)
        if len(ids) > 1:
            self.steps.append(("prefill", self.position, len(ids) - 1))
        token, position = ids[-1], self.position + len(ids) - 1
        pick = self.sampler.start()
        stream = _TextStream(model.text, on_text) if on_text is not None else None
        new, context_full = [], False
        while True:
            if position >= self.context_length:
                context_full = True
                break
            logits = model.decode_step(token, position)
            self.steps.append(("decode", position))
            token = pick(logits)
            position += 1
            if token in model.stop_token_ids:
                break
            new.append(token)
            if stream is not None:
                stream.update(new)
            if len(new) >= max_new_tokens:
                break
        self.position = position
        self.pending = [] if context_full else [token]
        self.turns += 1
        text = model.text(new)
        if stream is not None:
            stream.finish(text)
        return Reply(text, new, len(ids), context_full)

    def forget(self):
        """Drop the last turn: the cache rows it wrote are hidden again, its tokens never fed."""
        if self._saved is None:
            return
        self.position, self.pending, self.turns = self._saved
        self.model.rewind(self.position)
        self._saved = None
