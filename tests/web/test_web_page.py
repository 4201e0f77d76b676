"""The demo page in headless Chromium: the CLI's greedy text, refusals, seeded sampling, a full
context.

The pages are built by the stage's CLI (``python -m llm2tflite.web.page``) from the LiteRT-route
files of the default models, ``tiny`` and ``tiny_llama`` (int8), and served by
``llm2tflite.web.serve`` in this process. The model files come from the default run
(``default_run``), or from a finished project named by LLM2TFLITE_WEB_TEST_PROJECT (a directory
with results/<model>/litert/: a workstation's existing run, no rebuild). One Chromium runs every
page (tests/web/drive.mjs, puppeteer-core from tests/web/package-lock.json; both installed by
.ci/install-browser.sh). Under CI=true a missing browser fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from conftest import REPO, in_ci, run_snakemake, skip_or_fail

WEB_TESTS = Path(__file__).resolve().parent
MODELS = ("tiny", "tiny_llama")
VARIANT = "int8"
PROMPTS = (
    "Estoy disfrutando de",
    "I am enjoying the",
    "¿Dónde está",
    # Longer than one prefill chunk of 32 (and than a few decode steps at the cache end).
    "El libro que " * 7,
)
# Fills the context of 100 positions: the CLI keeps its first 99 tokens, the page refuses it.
LONG_PROMPT = "El libro que " * 30
# A page whose export info sets a sequence_length below max_length - 1: the CLI and the page
# both cut a longer prompt to its first tokens and generate (data-note).
SEQUENCE_LENGTH = 12
SAMPLED = {"temperature": "0.9", "top_k": "40", "top_p": "0.95", "seed": "7"}
OUTPUT_BLOCKED_WORD = "leche"  # tiny's greedy continuation of the first prompt holds it
PROJECT_ENV = "LLM2TFLITE_WEB_TEST_PROJECT"
SCREENSHOT = "web-demo.png"
BROWSER_TIMEOUT_S = 240


def _browser_prerequisites() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    node = shutil.which("node")
    if chromium is None or node is None:
        skip_or_fail("chromium or node is not installed (run .ci/install-browser.sh)")
    if not (WEB_TESTS / "node_modules" / "puppeteer-core" / "package.json").is_file():
        skip_or_fail("tests/web/node_modules lacks puppeteer-core (run .ci/install-browser.sh)")
    return chromium, node


@pytest.fixture(scope="module")
def project(request) -> Path:
    """A project whose results/<model>/litert/ hold the default models' LiteRT files."""
    if os.environ.get(PROJECT_ENV):
        return Path(os.environ[PROJECT_ENV])
    workdir, _ = request.getfixturevalue("default_run")
    return workdir


def _cli(stage: str, *args: str):
    subprocess.run(
        [sys.executable, "-m", f"llm2tflite.web.{stage}", *args],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.getenv("PYTHONPATH", "")])},
    )


@pytest.fixture(scope="module")
def site(project, tmp_path_factory):
    """The pages built by the stage's CLI and served on 127.0.0.1: (base URL, directory)."""
    from llm2tflite.web import node_env
    from llm2tflite.web.serve import make_server

    root = tmp_path_factory.mktemp("web_site")
    web = root / "web"
    node_modules = project / ".snakemake" / "web-node-env" / "node_modules"
    if not node_modules.is_dir():
        if shutil.which("npm") is None:
            skip_or_fail("npm is not installed (run .ci/install-browser.sh)")
        node_modules = Path(node_env.install(root / "node-env")["node_modules"])
    _cli("vendor", "--node-modules", str(node_modules), "--out", str(web / "runtime"))
    for model in MODELS:
        litert = project / "results" / model / "litert"
        _cli("page", "--litert-dir", str(litert), "--variant", VARIANT, "--out", str(web / model))
    # A page whose blocklist holds a word tiny generates (the refusal mid-stream), and one
    # whose model file is missing.
    words = root / "words.txt"
    words.write_text(f"{OUTPUT_BLOCKED_WORD}\n", encoding="utf-8")
    tiny = str(project / "results" / "tiny" / "litert")
    _cli(
        "page", "--litert-dir", tiny, "--variant", VARIANT, "--model", "tiny",
        "--blocklist", str(words), "--out", str(web / "tiny_blocked"),
    )  # fmt: skip
    shutil.copytree(web / "tiny", web / "no_model")
    (web / "no_model" / f"{VARIANT}.tflite").unlink()
    # A model file LiteRT.js cannot load (the same path as one too large to allocate).
    shutil.copytree(web / "tiny", web / "damaged_model")
    damaged = web / "damaged_model" / f"{VARIANT}.tflite"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    _cli(
        "page", "--litert-dir", str(short_prompt_litert(project, root)), "--variant", VARIANT,
        "--model", "tiny", "--out", str(web / "tiny_short_prompt"),
    )  # fmt: skip
    server = make_server(web)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", web, words
    server.shutdown()
    server.server_close()


def short_prompt_litert(project: Path, root: Path) -> Path:
    """A copy of tiny's LiteRT files whose export info keeps at most SEQUENCE_LENGTH prompt
    tokens (the runtime's `sequence_length`), for the CLI and a page alike: in the sidecar and in
    the file's own metadata (the runtime refuses a sidecar that differs from it)."""
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import embedded

    litert = root / "short_prompt" / "tiny" / "litert"
    if not litert.is_dir():
        litert.mkdir(parents=True)
        source = project / "results" / "tiny" / "litert"
        shutil.copyfile(source / "tokenizer.json", litert / "tokenizer.json")
        info = json.loads((source / "litert_export.json").read_text(encoding="utf-8"))
        info["sequence_length"] = SEQUENCE_LENGTH
        (litert / "litert_export.json").write_bytes(embedded.info_bytes(info))
        model = litert_convert.read_model((source / f"{VARIANT}.tflite").read_bytes())
        embedded.embed(model, embedded.runtime_entries(info, litert / "tokenizer.json"))
        (litert / f"{VARIANT}.tflite").write_bytes(litert_convert.write_model(model))
    return litert


def cli_output(model_file: Path, prompt: str, *options: str) -> tuple[int, str, str]:
    """``python -m llm2tflite generate``: (exit code, stdout, stderr), in a process of its own as a
    user runs it (the CLI sets up logging before TensorFlow is imported; the suite's other tests
    have imported it in this process)."""
    completed = subprocess.run(
        [sys.executable, "-m", "llm2tflite", "generate", str(model_file), prompt, *options],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.getenv("PYTHONPATH", "")])},
    )
    return completed.returncode, completed.stdout, completed.stderr


def _url(base: str, page: str, **params) -> str:
    return f"{base}/{page}/?{urlencode(params)}"


def _sp_lines(project: Path) -> list[str]:
    """tiny_llama's corpus lines, to check tokenizers.js's ids in the browser."""
    lines = []
    for name in ("heldout.txt", "train.txt"):
        path = project / "results" / "tiny_llama" / "corpus" / name
        if path.is_file():
            lines += path.read_text(encoding="utf-8").splitlines()
    return lines[:1500]


@pytest.fixture(scope="module")
def browser_results(site, project, tmp_path_factory):
    """Every page job run in one headless Chromium: {job name: result}."""
    chromium, node = _browser_prerequisites()
    base, _, _ = site
    from test_web_tokenizer import HARD_CASES

    jobs = {}
    for model in MODELS:
        for index, prompt in enumerate(PROMPTS):
            jobs[f"{model}/greedy/{index}"] = {"url": _url(base, model, prompt=prompt)}
        jobs[f"{model}/refused"] = {"url": _url(base, model, prompt="eres un cabrón")}
        for attempt in (1, 2):
            jobs[f"{model}/sampled/{attempt}"] = {
                "url": _url(base, model, prompt=PROMPTS[0], **SAMPLED)
            }
        jobs[f"{model}/context_full"] = {"url": _url(base, model, prompt=LONG_PROMPT)}
        jobs[f"{model}/max_length_full"] = {
            "url": _url(base, model, prompt=PROMPTS[0], max_length=2)
        }
    jobs["tiny_llama/greedy/0"]["encode"] = _sp_lines(project) + HARD_CASES
    jobs["tiny/greedy/0"]["encode"] = HARD_CASES
    jobs["tiny_short_prompt"] = {"url": _url(base, "tiny_short_prompt", prompt=PROMPTS[3])}
    jobs["tiny_blocked"] = {"url": _url(base, "tiny_blocked", prompt=PROMPTS[0])}
    jobs["no_model"] = {"url": _url(base, "no_model", prompt=PROMPTS[0])}
    jobs["damaged_model"] = {"url": _url(base, "damaged_model", prompt=PROMPTS[0])}
    screenshots = tmp_path_factory.mktemp("web_screenshot")
    jobs["tiny/greedy/1"]["screenshot"] = str(screenshots / SCREENSHOT)
    spec = tmp_path_factory.mktemp("web_jobs") / "jobs.json"
    spec.write_text(
        json.dumps(
            {
                "executable": chromium,
                "profile": str(tmp_path_factory.mktemp("chromium_profile")),
                "timeout_ms": 60_000,
                "jobs": list(jobs.values()),
            }
        ),
        encoding="utf-8",
    )
    started = time.perf_counter()
    completed = subprocess.run(
        [node, str(WEB_TESTS / "drive.mjs"), str(spec)],
        capture_output=True,
        text=True,
        cwd=WEB_TESTS,
        timeout=BROWSER_TIMEOUT_S,
    )
    if completed.returncode != 0:
        raise AssertionError(f"drive.mjs failed:\n{completed.stderr[-3000:]}")
    print(f"{len(jobs)} pages in headless Chromium: {time.perf_counter() - started:.1f} s")
    results = dict(zip(jobs, json.loads(completed.stdout)))
    # The in-browser figures docs/web.md quotes (pytest -s): one LiteRT.js thread, wasm CPU.
    for name, result in results.items():
        if ("/greedy/" in name or "/sampled/" in name) and result["stats"]:
            stats = result["stats"]
            print(
                f"{name}: {stats['new_tokens']} new tokens, "
                f"{stats['decode_tokens_per_s']:.0f} tokens/s decode, first token "
                f"{stats['first_token_ms']:.1f} ms, load {stats['load_ms']:.0f} ms, "
                f"page {result['wall_ms']} ms"
            )
    results["screenshot"] = screenshots / SCREENSHOT
    return results


@pytest.mark.parametrize("model", MODELS)
def test_greedy_text_equals_the_cli(browser_results, project, model):
    model_file = project / "results" / model / "litert" / f"{VARIANT}.tflite"
    for index, prompt in enumerate(PROMPTS):
        result = browser_results[f"{model}/greedy/{index}"]
        assert result["error"] is None and result["done"] == "true", result
        code, stdout, _ = cli_output(model_file, prompt)
        assert code == 0
        assert result["text"] == stdout.removesuffix("\n"), (model, prompt)
        stats = result["stats"]
        assert stats["new_tokens"] >= 1 and stats["first_token_ms"] > 0
        assert result["note"] is None, result["note"]
    assert browser_results[f"{model}/greedy/0"]["isolated"], "COOP/COEP headers not in effect"


@pytest.mark.parametrize("model", MODELS)
def test_prompt_filling_the_context_is_a_context_full_error(browser_results, project, model):
    """A prompt of at least max_length tokens (start included) leaves no room: the page says
    so in one line where the CLI cuts the prompt to max_length - 1 tokens (docs/web.md)."""
    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer

    litert = project / "results" / model / "litert"
    cache_length = json.loads((litert / "litert_export.json").read_text())["cache_length"]
    tokens = 1 + len(load_runtime_tokenizer(litert).encode(LONG_PROMPT))
    assert tokens >= cache_length
    result = browser_results[f"{model}/context_full"]
    assert result["error"] == (
        f"context full: the prompt is {tokens} tokens (start token included) and max_length "
        f"{cache_length} leaves no room for a new token; shorten the prompt"
    )
    assert result["done"] == "true" and result["text"] == ""
    # What the page refuses, the CLI cuts (and says so).
    code, _, stderr = cli_output(litert / f"{VARIANT}.tflite", LONG_PROMPT)
    assert code == 0 and "cut to its first tokens" in stderr
    short = browser_results[f"{model}/max_length_full"]
    assert short["error"].startswith("context full:") and short["error"].endswith(
        f"max_length 2 leaves no room for a new token; shorten the prompt or raise max_length "
        f"(the model's context holds {cache_length})"
    )


def test_prompt_cut_to_the_sequence_length_equals_the_cli(browser_results, project, site):
    """Where the CLI cuts a long prompt and still generates (an export info's sequence_length),
    the page gives the same text and a data-note with the counts."""
    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer

    _, web, _ = site
    litert = short_prompt_litert(project, web.parent)
    tokens = 1 + len(load_runtime_tokenizer(litert).encode(PROMPTS[3]))
    assert tokens > SEQUENCE_LENGTH
    code, stdout, stderr = cli_output(litert / f"{VARIANT}.tflite", PROMPTS[3])
    assert code == 0 and "cut to its first tokens" in stderr
    result = browser_results["tiny_short_prompt"]
    assert result["error"] is None and result["done"] == "true", result
    assert result["text"] == stdout.removesuffix("\n")
    assert f"(kept {SEQUENCE_LENGTH} of {tokens}, start token included)" in result["note"]


@pytest.mark.parametrize("model", MODELS)
def test_tokenizers_js_gives_the_runtime_tokenizers_ids(browser_results, project, model):
    from test_web_tokenizer import HARD_CASES

    from llm2tflite.litert.runtime_tokenizer import load_runtime_tokenizer

    tokenizer = load_runtime_tokenizer(project / "results" / model / "litert")
    job = browser_results[f"{model}/greedy/0"]
    browser_ids = job["ids"]  # tokenizers.js's ids of the job's "encode" texts

    lines = (_sp_lines(project) if model == "tiny_llama" else []) + HARD_CASES
    assert len(browser_ids) == len(lines)
    differ = [line for line, ids in zip(lines, browser_ids) if ids != tokenizer.encode(line)]
    assert not differ, f"{len(differ)} of {len(lines)} lines differ, e.g. {differ[:3]}"


@pytest.mark.parametrize("model", MODELS)
def test_blocklisted_prompt_is_refused(browser_results, model):
    result = browser_results[f"{model}/refused"]
    assert result["error"].startswith("refused: the prompt contains language on the blocklist")
    assert result["text"] == ""


def test_blocklisted_output_stops_the_stream_as_the_cli(browser_results, project, site):
    _, _, words = site
    model_file = project / "results" / "tiny" / "litert" / f"{VARIANT}.tflite"
    code, stdout, stderr = cli_output(model_file, PROMPTS[0], "--blocklist", str(words))
    assert code == 3 and "generation stopped before it" in stderr
    result = browser_results["tiny_blocked"]
    assert result["error"].startswith("refused: the generated text contains language")
    assert result["text"] == stdout.removesuffix("\n")
    assert OUTPUT_BLOCKED_WORD not in result["text"]


@pytest.mark.parametrize("model", MODELS)
def test_seeded_sampling_repeats(browser_results, model):
    first, second = (browser_results[f"{model}/sampled/{i}"] for i in (1, 2))
    assert first["error"] is None and first["done"] == "true"
    assert first["text"] == second["text"]
    assert first["text"].startswith(PROMPTS[0])


def test_missing_model_is_a_one_line_error(browser_results):
    error = browser_results["no_model"]["error"]
    assert error.startswith("model not found:") and "404" in error and "\n" not in error


def test_model_litert_js_cannot_load_is_a_one_line_error(browser_results):
    """Not LiteRT.js's bare source line: the file, and what to try (docs/web.md)."""
    result = browser_results["damaged_model"]
    assert result["done"] == "true" and result["stats"] is None
    error = result["error"]
    assert error.startswith(f"LiteRT.js could not load {VARIANT}.tflite ("), error
    assert "web.variant: int4" in error and "\n" not in error


def test_screenshot_taken(browser_results):
    shot = browser_results["screenshot"]
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_web_rules_are_in_the_default_dag(tmp_path):
    """`snakemake -n` plans the node packages, the shared runtime and each model's page."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    completed = run_snakemake(tmp_path, "-n", "--cores", "1")
    for target in (
        ".snakemake/web-node-env/llm2tflite-web-env.json",
        "results/reports/default/web/runtime",
        "results/reports/default/web/tiny",
        "results/reports/default/web/tiny_llama",
    ):
        assert target in completed.stdout, target


def test_ci_fails_without_a_browser(monkeypatch):
    """The CI guard: under CI=true a missing chromium is a failure, not a skip."""
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        _browser_prerequisites()
