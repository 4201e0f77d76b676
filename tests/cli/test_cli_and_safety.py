"""`python -m llm2tflite generate`: prompts of every kind, --max-length, and the safety filter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from llm2tflite.core.safety import SafetyFilter, load_blocklist


def run_cli(*args, check_code=None):
    completed = subprocess.run(
        [sys.executable, "-m", "llm2tflite", "generate", *args], capture_output=True
    )
    stdout = completed.stdout.decode("utf-8", errors="replace")
    stderr = completed.stderr.decode("utf-8", errors="replace")
    if check_code is not None:
        assert completed.returncode == check_code, (completed.returncode, stdout, stderr[-2000:])
    return completed.returncode, stdout, stderr


def assert_invalid_utf8_prompt_replaced(model_path, *args):
    """A prompt with bytes that are not UTF-8 is generated from with them replaced by U+FFFD,
    and what the CLI prints is valid UTF-8."""
    completed = subprocess.run(
        [sys.executable, "-m", "llm2tflite", "generate", model_path, b"hola \xff\xfe mundo", *args],
        capture_output=True,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.decode("utf-8").startswith("hola \ufffd\ufffd mundo")


@pytest.fixture(scope="module")
def model_path(small_export):
    return str(small_export["tflite"])


def test_filter_matches_whole_words_ignoring_case_and_accents():
    safety = SafetyFilter(["cabrón", "hijo de puta", "shit"])
    assert safety.blocked_words("Eres un CABRON.") == ["cabron"]
    assert safety.blocked_words("ese hijo de puta") == ["hijo de puta"]
    assert safety.blocked_words("shitake mushrooms, Scunthorpe") == []
    assert safety.blocked_words("a clean sentence") == []


def test_default_blocklist_is_shipped_and_bilingual():
    words = load_blocklist()
    assert "mierda" in words and "fuck" in words
    assert not any(w.startswith("#") for w in words)


def test_clean_prompt_generates(model_path):
    _, stdout, _ = run_cli(model_path, "Estoy disfrutando de", check_code=0)
    assert stdout.startswith("Estoy disfrutando de") and len(stdout.strip()) > 20


def test_offensive_prompt_is_refused_before_running(model_path):
    code, stdout, stderr = run_cli(model_path, "Eres una MIERDA", check_code=3)
    assert stdout == ""
    assert "refused: the prompt contains language on the blocklist" in stderr


def test_offensive_output_is_refused(model_path, tmp_path):
    _, clean, _ = run_cli(model_path, "Estoy disfrutando de", check_code=0)
    # A whole word the model generated (the first new token may glue onto "de").
    generated_word = next(w for w in clean.split()[3:] if w.isalpha())
    blocklist = tmp_path / "words.txt"
    blocklist.write_text(f"# test list\n{generated_word}\n", encoding="utf-8")
    code, stdout, stderr = run_cli(
        model_path, "Estoy disfrutando de", "--blocklist", str(blocklist), check_code=3
    )
    assert stdout == ""
    assert "refused: the generated text contains language on the blocklist" in stderr


def test_empty_prompt_is_an_error(model_path):
    _, _, stderr = run_cli(model_path, "", check_code=2)
    assert "the prompt is empty" in stderr
    _, _, stderr = run_cli(model_path, "   ", check_code=2)
    assert "the prompt is empty" in stderr


def test_missing_model_is_an_error(tmp_path):
    _, _, stderr = run_cli(str(tmp_path / "none.tflite"), "hola", check_code=2)
    assert "does not exist" in stderr and "Traceback" not in stderr


def test_a_file_that_is_not_a_model_is_an_error(tmp_path):
    (tmp_path / "notes.tflite").write_text("not a model")
    _, _, stderr = run_cli(str(tmp_path / "notes.tflite"), "hola", check_code=2)
    assert stderr.strip() == (
        f"llm2tflite: error: {tmp_path / 'notes.tflite'} is not a TFLite "
        "flatbuffer (no TFL3 identifier)"
    )


def test_max_length_cuts_the_output(model_path, small_export):
    from llm2tflite.model_files import open_model

    model = open_model(model_path)
    prompt = "Estoy disfrutando de"
    full = model.generate(prompt)
    max_length = full.prompt_tokens + 3  # start token + prompt + 3 new tokens
    _, stdout, _ = run_cli(model_path, prompt, "--max-length", str(max_length), check_code=0)
    output = stdout.rstrip("\n")
    assert output.startswith(prompt)
    # Exactly the text of the first 3 ids the model generated.
    assert output == model.text(full.token_ids[1:max_length])
    assert full.text.startswith(output) and output != full.text
    _, _, stderr = run_cli(model_path, prompt, "--max-length", "1", check_code=2)
    assert "--max-length must be at least 2" in stderr


def test_long_prompt_is_truncated_with_a_note(model_path, small_export):
    long_prompt = "Estoy disfrutando de la música con mis amigos en la playa. " * 20
    _, stdout, stderr = run_cli(model_path, long_prompt, check_code=0)
    assert "prompt was longer than the model's prompt limit" in stderr
    assert long_prompt.startswith(stdout.split(" ")[0])


@pytest.mark.parametrize("prompt", ["¿Qué tal, cigüeña?", "emoji 🤖🎉 y ñandú", "日本語"])
def test_non_ascii_prompts(model_path, prompt):
    _, stdout, _ = run_cli(model_path, prompt, check_code=0)
    assert stdout.startswith(prompt)


def test_invalid_utf8_bytes_are_replaced(model_path):
    assert_invalid_utf8_prompt_replaced(model_path)


def test_model_level_input_rules(small_export):
    """The same rules hold in the .tflite itself, without the CLI in front."""
    from llm2tflite.codelab.runtime import TFLiteModel

    model = TFLiteModel(small_export["tflite"])
    empty = model.generate("")
    assert empty.prompt_tokens == 1 and empty.new_tokens >= 1  # the start token alone
    assert model.generate(b"caf\xe9 con leche").text.startswith("caf\ufffd con leche")
    assert model.generate("🤖" * 50).new_tokens >= 1  # multi-token characters, truncated
