"""Chat: templates, the KV cache kept across turns, the context limit, the safety filter, and the
same greedy replies as LiteRT-LM's own Conversation API on our ``.litertlm``."""

from __future__ import annotations

import json

import pytest
from test_litertlm import _in_env, litertlm_env  # noqa: F401  (the LiteRT-LM venv fixture)

from llm2tflite.core.chat import ChatTemplate

GEMMA3 = {
    "user": {"prefix": "<start_of_turn>user\n", "suffix": "<end_of_turn>\n"},
    "model": {"prefix": "<start_of_turn>model\n", "suffix": "<end_of_turn>\n"},
}
# A config-set template for a model whose family has none.
PLAIN = {
    "user": {"prefix": "U: ", "suffix": "\n"},
    "model": {"prefix": "M: ", "suffix": "\n"},
}
# The same after a default system prompt written once before the first turn (SmolLM2's, Qwen
# 2.5's templates).
PLAIN_PREAMBLE = {**PLAIN, "preamble": "S: sé breve\n"}
TURNS = ["hola", "sí", "no"]


def test_gemma3_family_template_is_keras_hubs_chat_format():
    from llm2tflite.families.registry import by_name

    template = ChatTemplate.from_dict(by_name("gemma3").chat_template)
    assert template.to_dict() == GEMMA3
    assert template.turn("Hi") == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parametrize("fields", [GEMMA3, PLAIN, PLAIN_PREAMBLE])
def test_jinja_template_renders_as_ours(fields):
    import jinja2

    template = ChatTemplate.from_dict(fields)
    messages = [
        {"role": "user", "content": "hola\n¿sí?"},
        {"role": "model", "content": "Bien {{ x }} 'ok'"},
        {"role": "user", "content": "ñandú 🤖"},
    ]
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    compiled = environment.from_string(template.jinja())
    for generation_prompt in (True, False):
        ours = template.render(messages, add_generation_prompt=generation_prompt)
        # Hugging Face's role name and LiteRT-LM's list-of-parts content render the same.
        as_hf = [{**m, "role": "assistant" if m["role"] == "model" else "user"} for m in messages]
        as_parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
        for given in (as_hf, as_parts):
            assert compiled.render(messages=given, add_generation_prompt=generation_prompt) == ours


def test_template_refuses_bad_fields():
    with pytest.raises(ValueError, match="exactly the roles"):
        ChatTemplate.from_dict({"user": {}})
    with pytest.raises(ValueError, match="a string"):
        ChatTemplate.from_dict({"user": {"prefix": 1}, "model": {}})


def test_bundle_metadata_carries_the_template():
    from llm2tflite.litertlm.bundle import llm_metadata

    info = {"start_token_id": 2, "stop_token_ids": [1, 106], "cache_length": 64}
    info["vocabulary_size"] = 300
    assert "jinja_prompt_template" not in llm_metadata(info)
    fields = llm_metadata({**info, "chat_template": GEMMA3})
    assert fields["jinja_prompt_template"] == ChatTemplate.from_dict(GEMMA3).jinja()
    assert {"token_ids": {"ids": [106]}} in fields["stop_tokens"]


@pytest.fixture
def session(small_llama_litert):
    from llm2tflite.litert.chat import ChatSession
    from llm2tflite.litert.runtime import LiteRTModel

    model = LiteRTModel(small_llama_litert["tflite"]["fp32"], threads=2)
    return ChatSession(model, ChatTemplate.from_dict(PLAIN))


def test_kv_cache_kept_across_turns(session):
    model = session.model
    first = session.reply("hola", max_new_tokens=3)
    assert session.steps[0] == ("prefill", 0, first.prompt_tokens - 1)
    after_first = session.position
    steps_before = len(session.steps)
    second = session.reply("sí", max_new_tokens=3)
    prefills = [s for s in session.steps[steps_before:] if s[0] == "prefill"]
    # Only the new turn (the pending last token + the turn's text) from where the first ended.
    turn_ids = model.token_ids(session.template.turn("sí"))
    assert prefills == [("prefill", after_first, len(turn_ids))]
    assert second.prompt_tokens == len(turn_ids) + 1
    if len(second.token_ids) == 3:  # cut at the limit: its last token is fed next turn
        assert session.position + 1 == after_first + second.prompt_tokens + 3


def test_context_full_is_said_and_leaves_the_conversation(session):
    from llm2tflite.litert.chat import ContextFullError

    session.reply("hola", max_new_tokens=4)
    position = session.position
    with pytest.raises(ContextFullError, match=r"the context is full: \d+ of \d+ tokens"):
        session.reply("palabra " * session.context_length, max_new_tokens=4)
    assert session.position == position
    reply = session.reply("sí", max_new_tokens=session.context_length)
    assert reply.context_full and session.position == session.context_length


def _chat_cli(model_file, stdin, *args):
    import subprocess
    import sys

    command = [sys.executable, "-m", "llm2tflite", "chat", str(model_file), *map(str, args)]
    return subprocess.run(command, input=stdin, capture_output=True, text=True)


def test_cli_chat_refuses_a_later_turn_and_says_when_context_is_full(small_llama_litert, tmp_path):
    from llm2tflite.__main__ import EXIT_CONTEXT_FULL

    (tmp_path / "blocklist.txt").write_text("caramba\n")
    cache_length = small_llama_litert["info"]["cache_length"]
    lines = "hola\n\ndi caramba\nsí\n" + "palabra " * cache_length + "\n"
    completed = _chat_cli(
        small_llama_litert["tflite"]["fp32"],
        lines,
        "--max-new-tokens", 3, "--blocklist", tmp_path / "blocklist.txt",
        "--chat-template-json", json.dumps(PLAIN),
    )  # fmt: skip
    assert completed.returncode == EXIT_CONTEXT_FULL, completed.stderr[-2000:]
    assert len(completed.stdout.splitlines()) == 2  # two replies: the refused turn has none
    err = completed.stderr.strip().splitlines()
    assert any("refused: the prompt contains language on the blocklist" in e for e in err)
    assert err[-1].startswith("llm2tflite: the context is full: ")


def test_cli_chat_says_what_it_cannot_open(small_llama_litert, tmp_path):
    from llm2tflite.__main__ import EXIT_BAD_INPUT

    bundle = tmp_path / "m.litertlm"
    bundle.write_bytes(b"x")
    completed = _chat_cli(bundle, "")
    assert completed.returncode == EXIT_BAD_INPUT
    assert "LiteRT-LM bundle, which this runtime cannot open" in completed.stderr
    completed = _chat_cli(small_llama_litert["tflite"]["fp32"], "hola\n")
    assert completed.returncode == EXIT_BAD_INPUT
    assert "carries no chat template" in completed.stderr


def _litert_lm_and_our_chat(litert_model, template_fields, env, tmp_path, turns, max_new_tokens):
    """The same greedy conversation through LiteRT-LM's Conversation API (template from the
    bundle) and through ours on the same fp32 ``.tflite``: per turn each side's reply text and
    the conversation's token count after it (LiteRT-LM counts the last sampled token, which we
    feed at the next turn). Also LiteRT-LM's rendering of each turn and its prefill token
    count, and our session."""
    from llm2tflite.litert.chat import ChatSession
    from llm2tflite.litert.runtime import LiteRTModel

    info = {**litert_model["info"], "chat_template": template_fields}
    info_path = tmp_path / "litert_export.json"
    info_path.write_text(json.dumps(info))
    bundle = tmp_path / "chat.litertlm"
    python = env / "bin" / "python"
    model_file = litert_model["tflite"]["fp32"]
    _in_env(
        env, python, "-m", "llm2tflite.litertlm.bundle", "build", "--model",
        model_file, "--info", info_path, "--tokenizer", litert_model["tokenizer"],
        "--out", bundle, "--check-prompt", "",
    )  # fmt: skip
    completed = _in_env_stdin(
        env,
        "\n".join(turns) + "\n",
        python, "-m", "llm2tflite.litertlm.bundle", "chat", bundle, "--max-new-tokens",
        max_new_tokens, "--max-num-tokens", info["litert_lm_max_num_tokens"], "--threads", 2,
    )  # fmt: skip
    theirs = json.loads(completed.stdout.strip().splitlines()[-1])["replies"]
    session = ChatSession(
        LiteRTModel(model_file, threads=2), ChatTemplate.from_dict(template_fields)
    )
    ours = []
    for turn in turns:
        reply = session.reply(turn, max_new_tokens)
        ours.append({"text": reply.text, "token_count": session.position + len(session.pending)})
    assert ours[-1]["token_count"] < info["litert_lm_max_num_tokens"], ours
    return ours, theirs, session


@pytest.mark.parametrize("fields", [PLAIN, PLAIN_PREAMBLE], ids=["plain", "preamble"])
def test_litert_lm_conversation_equals_our_chat(
    small_llama_litert,
    litertlm_env,  # noqa: F811
    tmp_path,
    fields,
):
    """A config-set template on a family without one, with and without a preamble: LiteRT-LM's
    Conversation API and ours, same replies, same token counts; the preamble is rendered and
    prefilled once, with the first turn."""
    max_new_tokens = 2  # the turns within LiteRT-LM's context (max_num_tokens)
    turns = TURNS if fields is PLAIN else TURNS[:2]  # the preamble takes a turn's room
    ours, theirs, _ = _litert_lm_and_our_chat(
        small_llama_litert, fields, litertlm_env, tmp_path, turns, max_new_tokens
    )
    assert ours == [{k: reply[k] for k in ("text", "token_count")} for reply in theirs]
    template = ChatTemplate.from_dict(fields)
    rendered = [reply["rendered"] for reply in theirs]
    assert rendered == [template.turn(t, first=i == 0) for i, t in enumerate(turns)]
    assert "".join(rendered).count("sé breve") == (fields is PLAIN_PREAMBLE)


# ---- Gemma 3 with its family's template ---------------------------------------------------------

GEMMA3_TURNS = ["Hola, ¿qué tal?", "Cuéntame más del pingüino.", "Gracias 🤖"]
GEMMA3_MAX_NEW_TOKENS = 6
# Three turns of about 14 ids and their replies fit LiteRT-LM's context of this cache.
GEMMA3_CHAT_CACHE_LENGTH = 96


@pytest.fixture(scope="module")
def gemma3_chat_litert(gemma3_vocab, tmp_path_factory):
    """A small seeded random Gemma 3 (the family tests' shape: sliding-window layers whose window
    is shorter than one turn, and a global one) through the LiteRT route, fp32: its export info
    carries the family's template and stop tokens. <end_of_turn>'s embedding row is made a hair
    longer than that of a token of the first reply, so that replies end at <end_of_turn>
    (within the token limit) as an instruction model's do."""
    from test_gemma3 import SMALL_GEMMA3

    from conftest import build_small_causal_lm, export_litert

    causal_lm = build_small_causal_lm("gemma3", gemma3_vocab, SMALL_GEMMA3)
    first_turn = ChatTemplate.from_dict(GEMMA3).turn(GEMMA3_TURNS[0])
    preprocessor = causal_lm.preprocessor
    prompt_tokens = len(preprocessor.tokenizer(first_turn)) + 1  # and the start token
    # Room for the four ids looked at only: generate_step runs eagerly here.
    packed = preprocessor.generate_preprocess([first_turn], sequence_length=prompt_tokens + 4)
    assert int(packed["padding_mask"].numpy().sum()) == prompt_tokens
    end_of_turn = int(preprocessor.tokenizer.token_to_id("<end_of_turn>"))
    table = causal_lm.backbone.token_embedding.embeddings
    # The turn holds <end_of_turn> too, so the new row changes the reply: until it ends there
    # after a few ids.
    original, candidates, tried = table.numpy(), [], []
    for _ in range(16):
        generated = causal_lm.generate_step(packed, stop_token_ids=None)["token_ids"]
        reply = [int(i) for i in generated[0, prompt_tokens:]]
        if end_of_turn in reply[1:] and reply[0] != end_of_turn:
            break
        candidates += [t for t in reply if t not in candidates and t != end_of_turn]
        token = next(t for t in candidates if t not in tried)
        tried.append(token)
        values = original.copy()
        values[end_of_turn] = 1.01 * original[token]
        table.assign(values)
    else:
        raise AssertionError("no reply of the small Gemma 3 ends at <end_of_turn>")
    exported = export_litert(
        causal_lm,
        tmp_path_factory.mktemp("gemma3_chat"),
        cache_length=GEMMA3_CHAT_CACHE_LENGTH,
    )
    return {**exported, "end_of_turn": end_of_turn}


def _greedy_from_scratch(model, ids, max_new_tokens):
    """Greedy ids after ``ids`` prefilled from position 0 (no cache kept from anything before),
    and the stop token that ended them (None: cut at ``max_new_tokens``)."""
    import numpy as np

    model.rewind()
    model.prefill(ids[:-1], 0)
    token, position, new = ids[-1], len(ids) - 1, []
    while len(new) < max_new_tokens:
        token = int(np.argmax(model.decode_step(token, position)))
        position += 1
        if token in model.stop_token_ids:
            return new, token
        new.append(token)
    return new, None


@pytest.mark.parametrize("source", ["family", "tokenizer_config"])
def test_gemma3_conversation_with_its_template_equals_litert_lms(
    gemma3_chat_litert,
    litertlm_env,  # noqa: F811
    tmp_path,
    source,
):
    """Gemma 3's own template on a multi-turn conversation: LiteRT-LM's Conversation API on our
    .litertlm and our chat give the same greedy replies and token counts. The template is the
    family's (from the export info) or the one derived from Gemma 3's Jinja template (a
    checkpoint's tokenizer_config.json: content stripped, here of turns with surrounding
    whitespace). LiteRT-LM renders each turn with the template and prefills only the new turn
    (its count is ours); our kept KV cache gives, turn by turn, the replies of the whole
    conversation prefilled from scratch; a reply ends at <end_of_turn>."""
    from test_chat_templates import GEMMA3_JINJA

    from llm2tflite.core.chat import from_jinja
    from llm2tflite.litert.runtime import LiteRTModel

    info = gemma3_chat_litert["info"]
    assert info["chat_template"] == GEMMA3
    end_of_turn = gemma3_chat_litert["end_of_turn"]
    assert end_of_turn in info["stop_token_ids"]
    if source == "family":
        fields, turns = GEMMA3, GEMMA3_TURNS
    else:
        fields = from_jinja(GEMMA3_JINJA, "<eos>").to_dict()
        assert fields == {**GEMMA3, "trim": True}
        turns = [f"  {turn}\t " for turn in GEMMA3_TURNS]
    ours, theirs, session = _litert_lm_and_our_chat(
        gemma3_chat_litert, fields, litertlm_env, tmp_path, turns, GEMMA3_MAX_NEW_TOKENS
    )
    assert ours == [{k: reply[k] for k in ("text", "token_count")} for reply in theirs]
    template = ChatTemplate.from_dict(fields)
    for turn, reply in zip(turns, theirs):
        assert reply["rendered"] == template.turn(turn)
    # Neither side prefills the history again. LiteRT-LM prefills the start token and the first
    # turn, then each later turn's own ids (it feeds the last sampled token apart). Ours: the
    # token pending and the turn, but the last id (decode takes it), from where the last turn
    # ended.
    model = LiteRTModel(gemma3_chat_litert["tflite"]["fp32"], threads=2)
    turn_ids = [len(model.token_ids(template.turn(turn))) for turn in turns]
    assert [r["prefill_tokens"] for r in theirs] == [turn_ids[0] + 1, *turn_ids[1:]]
    prefills = [step[1:] for step in session.steps if step[0] == "prefill"]
    ends = [0] + [reply["token_count"] - 1 for reply in ours[:-1]]
    assert prefills == [(end, count) for end, count in zip(ends, turn_ids)]

    # The kept cache against the conversation prefilled from scratch, turn by turn.
    # A reply cut at the limit ends with its last id, fed at the next turn; one that stopped,
    # with the stop token, fed too.
    conversation, stops = [model.start_token_id], []
    for turn, reply in zip(turns, ours):
        conversation += model.token_ids(template.turn(turn))
        new, stop = _greedy_from_scratch(model, conversation, GEMMA3_MAX_NEW_TOKENS)
        assert model.text(new) == reply["text"]
        conversation += new + ([stop] if stop is not None else [])
        stops.append(stop)
    assert end_of_turn in stops and any(reply["text"] for reply in ours), stops


def test_cli_chat_on_gemma3_applies_its_template(gemma3_chat_litert):
    """`python -m llm2tflite chat` on the Gemma 3 .tflite alone: the template comes from the
    export info the file carries, the replies are the session's (compared with LiteRT-LM above)
    and a reply ends at <end_of_turn>."""
    from llm2tflite.litert.chat import ChatSession
    from llm2tflite.litert.runtime import LiteRTModel

    model_file = gemma3_chat_litert["tflite"]["fp32"]
    session = ChatSession(LiteRTModel(model_file, threads=2))
    assert session.template == ChatTemplate.from_dict(GEMMA3)
    replies = [session.reply(turn, GEMMA3_MAX_NEW_TOKENS) for turn in GEMMA3_TURNS]
    assert any(len(r.token_ids) < GEMMA3_MAX_NEW_TOKENS for r in replies)  # <end_of_turn>
    completed = _chat_cli(
        model_file, "\n".join(GEMMA3_TURNS) + "\n", "--max-new-tokens", GEMMA3_MAX_NEW_TOKENS
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.splitlines() == [r.text for r in replies]


def _in_env_stdin(env, stdin, *args):
    import os
    import subprocess

    from conftest import REPO

    completed = subprocess.run(
        [*map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed
