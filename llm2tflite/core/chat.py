"""Chat templates: how a conversation's turns become the text an instruction model continues.

A template is a prefix and a suffix around each role's turn (``user``, ``model``), the shape of
LiteRT-LM's ``PromptTemplates`` (``PromptAffixes``): ``{"user": {"prefix": ..., "suffix": ...},
"model": {"prefix": ..., "suffix": ...}}``, and optionally a ``preamble``: text once before the
first turn (SmolLM2's and Qwen 2.5's default system prompt). A family may know its own (Gemma 3:
``llm2tflite.families.gemma3``), the config may set one per model (``litert: chat_templates:
{MODEL: ...}``); the LiteRT export records it in the export info (``chat_template``), which
travels inside the ``.tflite`` and into the ``.litertlm`` bundle as the
``jinja_prompt_template`` LiteRT-LM's Conversation API renders (``jinja``).

The conversation text is ``preamble + user.prefix + U1 + user.suffix + model.prefix + M1 +
model.suffix + user.prefix + U2 + ...``. A conversation is prefilled turn by turn, as
LiteRT-LM's Conversation API does (checked against it: tests/litertlm/test_chat.py): a new turn
prefills the token the model sampled last (its stop token, or the last token of a reply cut at
the token limit: sampled, not yet fed) and then ``user.prefix + U + user.suffix +
model.prefix``, tokenized on its own (``turn``); ``model.suffix`` is never prefilled (Gemma 3:
the stop token ``<end_of_turn>`` is fed, its newline is not). The first turn starts with the
start token instead (the runtime puts it first, as LiteRT-LM does; the template holds no start
token), then the preamble.

A template whose Jinja source strips each message's surrounding whitespace (Gemma 3's and Llama
3's ``| trim``) has ``trim``: ``render``, ``turn`` and ``jinja`` strip the content too.

A Hugging Face checkpoint's ``tokenizer_config.json`` carries its template as Jinja source
(``chat_template``); ``from_jinja`` derives the prefixes and suffixes by rendering it as
transformers does on sentinel messages, then checks them by rendering conversations both ways,
and refuses (``ChatTemplateError``, one line) a template that a preamble and prefix/suffix per
role cannot express: content changed beyond stripping, roles told apart by more than their turn's
text, earlier turns rendered differently once later ones follow. Text the template writes only
before the first turn (a default system prompt) becomes the preamble.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROLES = ("user", "model")
# Hugging Face's role name for the model's turns.
HF_ROLES = {"user": "user", "model": "assistant"}


class ChatTemplateError(ValueError):
    """A Jinja chat template that prefix/suffix per role cannot express (one line)."""


@dataclass(frozen=True)
class ChatTemplate:
    user_prefix: str
    user_suffix: str
    model_prefix: str
    model_suffix: str
    trim: bool = False  # each message's content is stripped of surrounding whitespace
    preamble: str = ""  # text once before the first turn (a default system prompt)

    @classmethod
    def from_dict(cls, fields: Mapping) -> ChatTemplate:
        """From ``{"user": {"prefix", "suffix"}, "model": {"prefix", "suffix"}}``, an optional
        ``"trim": true`` and an optional ``"preamble"`` string (ValueError)."""
        if not isinstance(fields, Mapping) or set(fields) - {"trim", "preamble"} != set(ROLES):
            raise ValueError(f"a chat template has exactly the roles {ROLES}: {fields!r}")
        if not isinstance(fields.get("trim", False), bool):
            raise ValueError(f"chat template trim: true or false, not {fields['trim']!r}")
        if not isinstance(fields.get("preamble", ""), str):
            raise ValueError(f"chat template preamble: a string, not {fields['preamble']!r}")
        values = {"trim": fields.get("trim", False), "preamble": fields.get("preamble", "")}
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
        fields = {
            role: {
                "prefix": getattr(self, f"{role}_prefix"),
                "suffix": getattr(self, f"{role}_suffix"),
            }
            for role in ROLES
        }
        if self.trim:
            fields["trim"] = True
        if self.preamble:
            fields["preamble"] = self.preamble
        return fields

    @property
    def end_of_turn(self) -> str:
        """The text that ends the model's turn, its suffix without surrounding whitespace
        (Gemma 3: ``<end_of_turn>``; ChatML: ``<|im_end|>``): a stop token when the tokenizer
        reads it as one token. Empty: none."""
        return self.model_suffix.strip()

    def render(self, messages, add_generation_prompt: bool = True) -> str:
        """The conversation's text: ``messages`` are ``{"role": "user"|"model", "content"}``."""
        parts = [self.preamble] if messages else []
        for message in messages:
            role = message["role"]
            if role not in ROLES:
                raise ValueError(f"role {role!r}: one of {ROLES}")
            content = message["content"].strip() if self.trim else message["content"]
            parts += [getattr(self, f"{role}_prefix"), content, getattr(self, f"{role}_suffix")]
        if add_generation_prompt:
            parts.append(self.model_prefix)
        return "".join(parts)

    def turn(self, user_text: str, first: bool = False) -> str:
        """The text a new user turn prefills (see the module doc): the first turn's starts with
        the preamble."""
        text = self.render([{"role": "user", "content": user_text}])
        return text if first else text[len(self.preamble) :]

    def jinja(self) -> str:
        """The template as a Jinja chat template (Hugging Face's convention: ``messages``,
        ``add_generation_prompt``; LiteRT-LM's ``jinja_prompt_template``). The role
        ``assistant`` is the model's. No start token: the runtime puts it first. The preamble
        is written with the first message (LiteRT-LM renders the conversation so far and
        prefills what a turn added, so it is prefilled once). A message's
        content is a string or, as LiteRT-LM's Conversation passes it, a list of parts
        (``{"type": "text", "text": ...}``) whose texts are joined (each stripped when ``trim``)."""
        trim = " | trim" if self.trim else ""
        content = (
            "{% if message['content'] is string %}{{ message['content']" + trim + " }}"
            "{% else %}{% for part in message['content'] %}"
            "{% if part['type'] == 'text' %}{{ part['text']" + trim + " }}{% endif %}"
            "{% endfor %}{% endif %}"
        )

        def literal(text):
            return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"

        preamble = (
            "{% if loop.first %}" + literal(self.preamble) + "{% endif %}" if self.preamble else ""
        )
        return (
            "{% for message in messages %}"
            + preamble
            + "{% if message['role'] == 'user' %}"
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


# ---- from a Hugging Face checkpoint's Jinja template -------------------------------------------

# Message contents that no template's own text contains: where each lands in a rendering marks
# the prefixes and suffixes around it.
_SENTINELS = ("llm2tfliteSentinelA", "llm2tfliteSentinelB", "llm2tfliteSentinelC")
# The template's ``bos_token``: where it lands tells whether the template writes the start token
# (SmolLM2's bos, <|im_start|>, also begins each turn: the text alone cannot tell).
_BOS_SENTINEL = "llm2tfliteStartToken"
# Contents of the conversations a derived template is checked on: markup, quotes, newlines,
# non-ASCII, and (last) surrounding whitespace, which a ``trim`` template strips.
_CHECK_CONTENTS = (
    "hola",
    "¿Qué tal? ñandú 🤖",
    "{{ x }} {% if %} 'single' \"double\"",
    "line one\nline two",
    "  padded both sides \n",
    "\ttab first",
)


def _compiled(source: str):
    """The template compiled as transformers compiles chat templates (sandboxed, blocks trimmed,
    loop controls, ``raise_exception``, ``strftime_now``, a JSON ``tojson``)."""
    import datetime

    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
            sort_keys=sort_keys,
        )  # fmt: skip

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.filters["tojson"] = tojson
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda f: datetime.datetime.now().strftime(f)
    try:
        return environment.from_string(source)
    except jinja2.exceptions.TemplateError as error:
        raise ChatTemplateError(f"the chat template is not valid Jinja: {error}") from None


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def from_jinja(source: str, eos_token: str = "") -> ChatTemplate:
    """The template (preamble, prefix and suffix per role) that renders conversations as the
    Jinja chat template ``source`` does (Hugging Face's convention: ``messages`` of roles
    ``user`` and ``assistant``, ``add_generation_prompt``, ``bos_token``, ``eos_token``).

    The ``bos_token`` the template writes first is left out: the runtime puts the start token
    first itself (export info ``add_start_token``), as LiteRT-LM does. Raises
    ``ChatTemplateError`` (one line) for a template prefix/suffix per role cannot express; the
    derived template is checked by rendering conversations of one to three exchanges, ending
    with a user turn and the generation prompt or with a model turn, both ways."""
    import jinja2

    compiled = _compiled(source)

    def render(roles_contents, generation_prompt: bool) -> str:
        messages = [{"role": HF_ROLES[r], "content": c} for r, c in roles_contents]
        try:
            text = compiled.render(
                messages=messages,
                add_generation_prompt=generation_prompt,
                bos_token=_BOS_SENTINEL,
                eos_token=eos_token,
            )
        except jinja2.exceptions.TemplateError as error:
            raise ChatTemplateError(
                f"the chat template fails on a {len(messages)}-message conversation: {error}"
            ) from None
        text = text.removeprefix(_BOS_SENTINEL)
        if _BOS_SENTINEL in text:
            refuse("it writes the start token (bos_token) after the start")
        return text

    def refuse(reason: str):
        raise ChatTemplateError(
            f"the chat template cannot be expressed as a prefix and suffix per role: {reason}"
        )

    a, b, c = _SENTINELS
    first = render([("user", a)], False)
    if first.count(a) != 1:
        refuse("a message's content does not appear in its rendering as it was given")
    user_prefix, user_suffix = first.split(a)
    prompted = render([("user", a)], True)
    if not prompted.startswith(first):
        refuse("the generation prompt changes the user turn before it")
    model_prefix = prompted[len(first) :]
    exchange = render([("user", a), ("model", b)], False)
    if exchange.count(b) != 1 or exchange[: exchange.index(b)] != prompted:
        refuse(
            "a model turn does not follow the user turn as the generation prompt "
            f"{_short(model_prefix)} does"
        )
    model_suffix = exchange[len(prompted) + len(b) :]
    later = render([("user", a), ("model", b), ("user", c)], True)
    if not later.startswith(exchange) or later.count(c) != 1:
        refuse("a later turn changes the turns before it")
    later_prefix = later[len(exchange) : later.index(c)]
    # Text before the first user turn only (a default system prompt): the preamble.
    if not user_prefix.endswith(later_prefix):
        refuse(
            f"the text before the first user turn, {_short(user_prefix)}, does not end with "
            f"the text before later ones, {_short(later_prefix)}"
        )
    preamble = user_prefix[: len(user_prefix) - len(later_prefix)]
    user_prefix = later_prefix

    padded = " " + a + "\n"
    trimmed = render([("user", padded)], True)
    if trimmed == prompted:
        trim = True
    elif trimmed == preamble + user_prefix + padded + user_suffix + model_prefix:
        trim = False
    else:
        refuse("a message's surrounding whitespace is changed other than by stripping it")
    template = ChatTemplate(user_prefix, user_suffix, model_prefix, model_suffix, trim, preamble)

    for exchanges in (1, 2, 3):
        contents = [_CHECK_CONTENTS[(exchanges + i) % len(_CHECK_CONTENTS)] for i in range(6)]
        turns = [(ROLES[i % 2], contents[i]) for i in range(2 * exchanges)]
        for conversation, generation_prompt in ((turns[:-1], True), (turns, False)):
            ours = template.render(
                [{"role": r, "content": t} for r, t in conversation], generation_prompt
            )
            theirs = render(conversation, generation_prompt)
            if ours != theirs:
                at = next(
                    (i for i, (x, y) in enumerate(zip(ours, theirs)) if x != y),
                    min(len(ours), len(theirs)),
                )
                start = max(0, at - 20)
                refuse(
                    f"rendering a {len(conversation)}-message conversation gives "
                    f"{_short(theirs[start:])} from character {start}, prefix/suffix per role "
                    f"{_short(ours[start:])}"
                )
    return template


def _special_token(value) -> str:
    """A tokenizer_config.json special token: a string, ``{"content": ...}`` or null."""
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else ""


def from_tokenizer_config(checkpoint_dir) -> ChatTemplate | None:
    """The chat template of a Hugging Face checkpoint directory: its ``tokenizer_config.json``'s
    ``chat_template`` (a Jinja string, or the one named ``default`` of a list of named
    templates) through ``from_jinja``; None when it has none. ``ChatTemplateError`` (one line,
    naming the file) when it cannot be expressed."""
    path = Path(checkpoint_dir).expanduser() / "tokenizer_config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ChatTemplateError(f"{path}: not valid JSON: {error}") from None
    source = config.get("chat_template")
    if isinstance(source, list):  # [{"name": ..., "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in source if isinstance(t, Mapping)}
        source = named.get("default")
    if not source:
        return None
    if not isinstance(source, str):
        raise ChatTemplateError(f"{path}: chat_template is not a string")
    try:
        return from_jinja(source, _special_token(config.get("eos_token")))
    except ChatTemplateError as error:
        raise ChatTemplateError(f"{path}: {error}") from None
