"""`python -m llm2tflite generate` on a LiteRT-route model: streaming, sampling, safety filter."""

from __future__ import annotations

import io

import pytest
from test_cli_and_safety import assert_invalid_utf8_prompt_replaced, run_cli

PROMPT = "Estoy disfrutando de"


@pytest.fixture(scope="module")
def litert_path(small_litert):
    return str(small_litert["tflite"]["fp32"])


@pytest.fixture(scope="module")
def model(litert_path):
    from llm2tflite.litert.runtime import LiteRTModel

    return LiteRTModel(litert_path)


def test_streamed_output_is_the_generation(litert_path, model):
    _, stdout, stderr = run_cli(litert_path, PROMPT, check_code=0)
    assert stdout == model.generate(PROMPT).text + "\n"
    assert stderr == ""  # no interpreter INFO line ("Created ... XNNPACK delegate"), no note
    _, verbose_stdout, verbose_stderr = run_cli(litert_path, PROMPT, "-v", check_code=0)
    assert verbose_stdout == stdout and "XNNPACK delegate" in verbose_stderr


def test_sampling_flags(litert_path, model):
    args = [litert_path, PROMPT, "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95"]
    _, first, _ = run_cli(*args, "--seed", "7", check_code=0)
    _, again, _ = run_cli(*args, "--seed", "7", check_code=0)
    _, other, _ = run_cli(*args, "--seed", "8", check_code=0)
    assert first == again != other
    from llm2tflite.core.sampling import Sampler

    expected = model.generate(PROMPT, sampler=Sampler(0.9, 40, 0.95, 7)).text
    assert first == expected + "\n"
    # --top-k alone samples at temperature 1; --top-k 1 is greedy.
    _, greedy, _ = run_cli(litert_path, PROMPT, "--top-k", "1", "--seed", "3", check_code=0)
    assert greedy == model.generate(PROMPT).text + "\n"
    _, _, stderr = run_cli(litert_path, PROMPT, "--top-p", "1.5", check_code=2)
    assert "top_p must be in (0, 1]" in stderr and "Traceback" not in stderr


def test_sampling_flags_are_refused_for_the_codelab_route(small_export):
    code, stdout, stderr = run_cli(
        str(small_export["tflite"]), PROMPT, "--temperature", "0.7", "--seed", "1", check_code=2
    )
    assert stdout == ""
    assert "--temperature, --seed" in stderr and "fixed when it is traced" in stderr


def test_blocklisted_word_stops_the_stream(litert_path, tmp_path):
    _, clean, _ = run_cli(litert_path, PROMPT, check_code=0)
    clean = clean.rstrip("\n")
    words = clean[len(PROMPT) :].split()
    # A whole word of the continuation that is not its first or last word.
    word = next(w for w in words[1:-1] if w.isalpha() and clean.count(w) == 1)
    blocklist = tmp_path / "words.txt"
    blocklist.write_text(f"{word}\n", encoding="utf-8")
    code, stdout, stderr = run_cli(litert_path, PROMPT, "--blocklist", str(blocklist), check_code=3)
    printed = stdout.rstrip("\n")
    assert printed and clean.startswith(printed)
    assert word not in printed.split() and len(printed) <= clean.index(word)
    assert "refused: the generated text contains language on the blocklist" in stderr
    assert "generation stopped before it" in stderr


def test_prompt_on_the_blocklist_is_refused_before_running(litert_path):
    code, stdout, stderr = run_cli(litert_path, "Eres una MIERDA", check_code=3)
    assert stdout == ""
    assert "refused: the prompt contains language on the blocklist" in stderr


def test_lengths_and_inputs(litert_path, model):
    _, stdout, stderr = run_cli(litert_path, PROMPT, "--max-length", "500", check_code=0)
    assert "exceeds the model's context of 40 tokens" in stderr
    prompt_tokens = len(model.token_ids(PROMPT, with_start=True))
    _, stdout, _ = run_cli(
        litert_path, PROMPT, "--max-length", str(prompt_tokens + 3), check_code=0
    )
    assert len(model.token_ids(stdout.rstrip("\n"))) == prompt_tokens - 1 + 3
    long_prompt = "Estoy disfrutando de la música con mis amigos en la playa. " * 20
    _, stdout, stderr = run_cli(litert_path, long_prompt, check_code=0)
    assert "prompt was longer than the model's prompt limit" in stderr
    assert long_prompt.startswith(stdout.split(" ")[0])
    assert_invalid_utf8_prompt_replaced(litert_path, "--threads", "1")
    _, _, stderr = run_cli(litert_path, PROMPT, "--threads", "0", check_code=2)
    assert "--threads must be at least 1" in stderr


def test_safe_stream_prints_whole_words_only():
    from llm2tflite.__main__ import _SafeStream, _StreamRefused
    from llm2tflite.core.safety import SafetyFilter

    out = io.StringIO()
    stream = _SafeStream(SafetyFilter(["shit", "hijo de puta"]), out)
    stream.write("Hola")
    assert out.getvalue() == ""
    stream.write(" mun")
    assert out.getvalue() == "Hola "
    stream.write("do, shi")
    assert out.getvalue() == "Hola mundo, "
    stream.write("take rico")  # "shitake" is not the blocked word "shit"
    assert out.getvalue() == "Hola mundo, shitake "
    stream.close("Hola mundo, shitake rico")
    assert out.getvalue() == "Hola mundo, shitake rico\n"

    out = io.StringIO()
    stream = _SafeStream(SafetyFilter(["shit", "hijo de puta"]), out)
    stream.write("Eres un hijo de ")
    assert out.getvalue() == "Eres un hijo de "
    stream.write("pu")
    with pytest.raises(_StreamRefused):
        stream.write("ta y más")
    assert out.getvalue() == "Eres un hijo de "
    out = io.StringIO()
    stream = _SafeStream(SafetyFilter(["shit"]), out)
    stream.write("oh shit")
    with pytest.raises(_StreamRefused):  # the last word is checked before it is printed
        stream.close("oh shit")
    assert out.getvalue() == "oh "
