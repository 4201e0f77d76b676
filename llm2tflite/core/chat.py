"""Chat templates: how a conversation's turns become the text an instruction model continues.

A template is a prefix and a suffix around each role's turn (``user``, ``model``), the shape of
LiteRT-LM's ``PromptTemplates`` (``PromptAffixes``): ``{"user": {"prefix": ..., "suffix": ...},
"model": {"prefix": ..., "suffix": ...}}``. A family may know its own (Gemma 3:
``llm2tflite.families.gemma3``), the config may set one per model (``litert: chat_templates:
{MODEL: ...}``); the LiteRT export records it in the export info (``chat_template``), which
travels inside the ``.tflite`` and into the ``.litertlm`` bundle as the
``jinja_prompt_template`` LiteRT-LM's Conversation API renders (``jinja``).

The conversation text is ``user.prefix + U1 + user.suffix + model.prefix + M1 + model.suffix +
user.prefix + U2 + ...``. A conversation is prefilled turn by turn, as LiteRT-LM's Conversation
API does (checked against it: tests/litertlm/test_chat.py): a new turn prefills the token the
model sampled last (its stop token, or the last token of a reply cut at the token limit: sampled,
not yet fed) and then ``user.prefix + U + user.suffix + model.prefix``, tokenized on its own
(``turn``); ``model.suffix`` is never prefilled (Gemma 3: the stop token ``<end_of_turn>`` is
fed, its newline is not). The first turn starts with the start token instead (the runtime puts
it first, as LiteRT-LM does), so the template holds no start token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("user", "model")


@dataclass(frozen=True)
class ChatTemplate:
    user_prefix: str
    user_suffix: str
    model_prefix: str
    model_suffix: str

    @classmethod
    def from_dict(cls, fields: Mapping) -> ChatTemplate:
        """From ``{"user": {"prefix", "suffix"}, "model": {"prefix", "suffix"}}`` (ValueError)."""
        if not isinstance(fields, Mapping) or set(fields) != set(ROLES):
            raise ValueError(f"a chat template has exactly the roles {ROLES}: {fields!r}")
        values = {}
        for role in ROLES:
            affixes = fields[role]
            if not isinstance(affixes, Mapping) or not set(affixes) <= {"prefix", "suffix"}:
                raise ValueError(f"chat template {role}: give prefix and/or suffix: {affixes!r}")
            for part in ("prefix", "suffix"):
                value = affixes.get(part, "")
                if not isinstance(value, str):
                    raise ValueError(f"chat template {role}.{part}: a string, not {value!r}")
                values[f"{role}_{part}"] = value
        return cls(**values)

    def to_dict(self) -> dict:
        return {
            role: {
                "prefix": getattr(self, f"{role}_prefix"),
                "suffix": getattr(self, f"{role}_suffix"),
            }
            for role in ROLES
        }

    def render(self, messages, add_generation_prompt: bool = True) -> str:
        """The conversation's text: ``messages`` are ``{"role": "user"|"model", "content"}``."""
        parts = []
        for message in messages:
            role = message["role"]
            if role not in ROLES:
                raise ValueError(f"role {role!r}: one of {ROLES}")
            parts += [
                getattr(self, f"{role}_prefix"),
                message["content"],
                getattr(self, f"{role}_suffix"),
            ]
        if add_generation_prompt:
            parts.append(self.model_prefix)
        return "".join(parts)

    def turn(self, user_text: str) -> str:
        """The text a new user turn prefills (see the module doc)."""
        return self.render([{"role": "user", "content": user_text}])

    def jinja(self) -> str:
        """The template as a Jinja chat template (Hugging Face's convention: ``messages``,
        ``add_generation_prompt``; LiteRT-LM's ``jinja_prompt_template``). The role
        ``assistant`` is the model's. No start token: the runtime puts it first. A message's
        content is a string or, as LiteRT-LM's Conversation passes it, a list of parts
        (``{"type": "text", "text": ...}``) whose texts are joined."""
        content = (
            "{% if message['content'] is string %}{{ message['content'] }}"
            "{% else %}{% for part in message['content'] %}"
            "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
            "{% endfor %}{% endif %}"
        )

        def literal(text):
            return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"

        return (
            "{% for message in messages %}"
            "{% if message['role'] == 'user' %}"
            + literal(self.user_prefix)
            + content
            + literal(self.user_suffix)
            + "{% else %}"
            + literal(self.model_prefix)
            + content
            + literal(self.model_suffix)
            + "{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}" + literal(self.model_prefix) + "{% endif %}"
        )
