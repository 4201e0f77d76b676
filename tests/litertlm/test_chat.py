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
TURNS = ["hola", "sí", "no"]


def test_gemma3_family_template_is_keras_hubs_chat_format():
    from llm2tflite.families.registry import by_name

    template = ChatTemplate.from_dict(by_name("gemma3").chat_template)
    assert template.to_dict() == GEMMA3
    assert template.turn("Hi") == "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parametrize("fields", [GEMMA3, PLAIN])
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


def test_litert_lm_conversation_equals_our_chat(
    small_llama_litert,
    litertlm_env,  # noqa: F811
    tmp_path,
):
    """LiteRT-LM's Conversation API (template from the bundle, greedy) and ours: same replies,
    same token counts (LiteRT-LM counts the last sampled token, which we feed next turn)."""
    from llm2tflite.litert.chat import ChatSession
    from llm2tflite.litert.runtime import LiteRTModel

    info = {**small_llama_litert["info"], "chat_template": PLAIN}
    info_path = tmp_path / "litert_export.json"
    info_path.write_text(json.dumps(info))
    bundle = tmp_path / "chat.litertlm"
    python = litertlm_env / "bin" / "python"
    model_file = small_llama_litert["tflite"]["fp32"]
    _in_env(
        litertlm_env, python, "-m", "llm2tflite.litertlm.bundle", "build", "--model",
        model_file, "--info", info_path, "--tokenizer", small_llama_litert["tokenizer"],
        "--out", bundle, "--check-prompt", "",
    )  # fmt: skip
    max_new_tokens = 2  # three turns within LiteRT-LM's context (max_num_tokens)
    completed = _in_env_stdin(
        litertlm_env,
        "\n".join(TURNS) + "\n",
        python, "-m", "llm2tflite.litertlm.bundle", "chat", bundle, "--max-new-tokens",
        max_new_tokens, "--max-num-tokens", info["litert_lm_max_num_tokens"], "--threads", 2,
    )  # fmt: skip
    theirs = json.loads(completed.stdout.strip().splitlines()[-1])["replies"]
    session = ChatSession(LiteRTModel(model_file, threads=2), ChatTemplate.from_dict(PLAIN))
    ours = []
    for turn in TURNS:
        reply = session.reply(turn, max_new_tokens)
        ours.append({"text": reply.text, "token_count": session.position + len(session.pending)})
    assert ours[-1]["token_count"] < info["litert_lm_max_num_tokens"], ours
    assert ours == theirs


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
