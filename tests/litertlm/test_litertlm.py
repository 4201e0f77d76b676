"""LiteRT-LM bundles: built in their own environment, run by the real LiteRT-LM, same text as ours.

The environment is created the way the workflow creates it (``python -m llm2tflite.litertlm.env``
from requirements-litert-lm.txt; PyPI needed). LiteRT-LM runs each bundle greedily through
its CLI (``litert-lm run``, HOME pointed at a scratch directory) and its Python ``Engine``; the
text must equal our runtime's on the same ``.tflite`` (fp32 and int8), for prompts of every
length up to the cache (one to several prefill chunks). Both tokenizer kinds: the small GPT-2
(``tokenizer.json`` as the bundle's ``hf_tokenizer``) and the small Llama (its SentencePiece
``tokenizer.model`` as ``sp_tokenizer``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml
from test_layout import _pins

from conftest import REPO, skip_or_fail

PROMPT = "Estoy disfrutando de"
VARIANTS = ("fp32", "int8")
# The small LiteRT-route models of conftest, one per tokenizer kind.
LITERT_MODELS = {"gpt2": "small_litert", "llama": "small_llama_litert"}


def test_environment_files_agree_and_stay_apart_from_tensorflow():
    requirements = _pins((REPO / "requirements-litert-lm.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs" / "litert-lm.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == requirements
    assert requirements["litert-lm"] == "0.18.1"
    major, minor = (int(x) for x in requirements["protobuf"].split(".")[:2])
    assert (major, minor) >= (6, 31)
    main = _pins((REPO / "requirements.txt").read_text().splitlines())
    assert "litert-lm" not in main and "litert-lm-builder" not in main


def test_metadata_fields():
    from llm2tflite.litertlm.bundle import llm_metadata, sampler_params

    assert sampler_params(None, 100) == {"type": "TOP_P", "k": 1, "p": 1.0, "temperature": 1.0}
    assert sampler_params({"temperature": 0.7, "top_k": 1}, 100)["k"] == 1
    assert sampler_params({"temperature": 0.7, "top_p": 0.9, "seed": 5}, 100) == {
        "type": "TOP_P",
        "k": 100,
        "p": 0.9,
        "temperature": 0.7,
        "seed": 5,
    }
    with pytest.raises(ValueError, match="unknown sampler"):
        sampler_params({"beam": 4}, 100)
    info = {
        "start_token_id": 7,
        "stop_token_ids": [7, 9],
        "cache_length": 64,
        "vocabulary_size": 100,
    }
    fields = llm_metadata(info, {"temperature": 0})
    assert fields["start_token"] == {"token_ids": {"ids": [7]}}
    assert fields["stop_tokens"] == [{"token_ids": {"ids": [7]}}, {"token_ids": {"ids": [9]}}]
    assert fields["max_num_tokens"] == 64 and fields["llm_model_type"] == {"generic_model": {}}
    assert llm_metadata({**info, "litert_lm_max_num_tokens": 61})["max_num_tokens"] == 61


@pytest.fixture(scope="session")
def litertlm_env(tmp_path_factory):
    """The LiteRT-LM venv, created as the workflow's litertlm_env rule creates it."""
    venv = tmp_path_factory.mktemp("litert_lm") / "venv"
    started = time.perf_counter()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.litertlm.env",
            "--requirements",
            str(REPO / "requirements-litert-lm.txt"),
            "--dir",
            str(venv),
        ],
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        if (
            "Could not find a version" in completed.stderr
            or "connection" in completed.stderr.lower()
        ):
            skip_or_fail(f"PyPI unreachable: {completed.stderr[-300:]}")
        raise AssertionError(completed.stderr[-3000:])
    print(f"litert-lm venv created in {time.perf_counter() - started:.1f} s")
    return venv


def _in_env(env, *args, home=None, check=True):
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    if home is not None:
        environment["HOME"] = str(home)
    completed = subprocess.run([*map(str, args)], capture_output=True, text=True, env=environment)
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{args[:3]} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
        )
    return completed


@pytest.fixture(scope="session", params=sorted(LITERT_MODELS))
def litert_model(request):
    """Each small LiteRT-route model in turn (the tests below run once per model)."""
    return {"family": request.param, **request.getfixturevalue(LITERT_MODELS[request.param])}


@pytest.fixture(scope="session")
def bundles(litertlm_env, litert_model, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"bundles_{litert_model['family']}")
    built = {}
    for variant in VARIANTS:
        bundle = out / f"{variant}.litertlm"
        _in_env(
            litertlm_env,
            litertlm_env / "bin" / "python",
            "-m",
            "llm2tflite.litertlm.bundle",
            "build",
            "--model",
            litert_model["tflite"][variant],
            "--info",
            litert_model["dir"] / "litert_export.json",
            "--tokenizer",
            litert_model["tokenizer"],
            "--out",
            bundle,
            "--check-prompt",
            PROMPT,
        )
        built[variant] = bundle
    return built


def test_marker_records_the_environment(litertlm_env):
    from llm2tflite.litertlm.env import VENV_MARKER

    record = json.loads((litertlm_env / VENV_MARKER).read_text())
    assert int(record["protobuf"].split(".")[0]) >= 6
    assert (litertlm_env / "bin" / "litert-lm-builder").exists()
    assert any(p.startswith("litert-lm==0.18.1") for p in record["packages"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_litert_lm_cli_greedy_text_equals_ours(
    bundles, litert_model, litertlm_env, variant, tmp_path
):
    from llm2tflite.litert.runtime import LiteRTModel

    record = json.loads((bundles[variant].parent / f"{variant}.litertlm.json").read_text())
    max_num_tokens = record["llm_metadata"]["max_num_tokens"]
    # The context LiteRT-LM may use without a prefill chunk running past the cache.
    assert (
        max_num_tokens
        == litert_model["info"]["litert_lm_max_num_tokens"]
        <= litert_model["info"]["cache_length"]
    )
    model = LiteRTModel(litert_model["tflite"][variant], threads=2)
    ours = model.generate(PROMPT, max_length=max_num_tokens)
    continuation = _continuation(model, ours, PROMPT)
    assert ours.new_tokens >= 5
    assert record["check"]["continuation"] == continuation
    assert record["activation_type"] == "fp32"
    # The runtime tokenizer file, as is, in the section LiteRT-LM reads for its kind.
    section = {"byte_level_bpe": "hf_tokenizer", "sentencepiece": "sp_tokenizer"}[
        litert_model["info"]["tokenizer_kind"]
    ]
    assert record["tokenizer"]["section"] == section
    _in_env(
        litertlm_env,
        litertlm_env / "bin" / "litert-lm",
        "unpack",
        bundles[variant],
        "--output-dir",
        tmp_path / "unpacked",
        home=tmp_path,
    )
    (unpacked,) = (tmp_path / "unpacked").glob("Section*_Tokenizer*")
    assert _section_bytes(unpacked) == litert_model["tokenizer"].read_bytes()
    completed = _in_env(
        litertlm_env,
        litertlm_env / "bin" / "litert-lm",
        "run",
        bundles[variant],
        "--no-template",
        "--prompt",
        PROMPT,
        "--cache",
        "no",
        "--cpu-thread-count",
        "2",
        "--top-k",
        "1",
        "--max-num-tokens",
        max_num_tokens,
        home=tmp_path,
    )
    assert completed.stdout.strip() == continuation.strip()
    assert not list(bundles[variant].parent.glob("*.xnnpack_cache"))


def _section_bytes(path):
    """An unpacked bundle section's content: the SentencePiece model as is; the Hugging Face
    tokenizer (``*.zlib``) as its uncompressed size (8 bytes, little-endian) + zlib data."""
    import zlib

    data = path.read_bytes()
    if path.suffix != ".zlib":
        return data
    content = zlib.decompress(data[8:])
    assert len(content) == int.from_bytes(data[:8], "little")
    return content


@pytest.mark.parametrize("variant", VARIANTS)
def test_litert_lm_engine_equals_ours_for_every_prompt_length(
    bundles, litert_model, litertlm_env, variant
):
    from llm2tflite.litert.runtime import LiteRTModel

    model = LiteRTModel(litert_model["tflite"][variant], threads=2)
    max_num_tokens = litert_model["info"]["litert_lm_max_num_tokens"]
    words = (
        "uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce "
        "quince dieciséis diecisiete dieciocho diecinueve veinte "
    ) * 2
    ids = model.token_ids(words)
    # 1 .. prompt limit - 1 prompt tokens: one to several prefill chunks (lengths 8 and 16).
    prompts = [model.text(ids[:n]) for n in range(1, model.prompt_token_limit())]
    # Within the prompt limit: LiteRT-LM takes a prompt whole, we keep a long one's first tokens.
    prompts += ["emoji 🤖🎉 y ñandú", "日本語", "¿Qué tal?"]
    assert all(len(model.token_ids(p)) < model.prompt_token_limit() for p in prompts)
    ours = [_continuation(model, model.generate(p, max_length=max_num_tokens), p) for p in prompts]
    completed = _in_env(
        litertlm_env,
        litertlm_env / "bin" / "python",
        "-m",
        "llm2tflite.litertlm.bundle",
        "generate",
        bundles[variant],
        *prompts,
        "--max-num-tokens",
        max_num_tokens,
        "--threads",
        "2",
        "--sampler-json",
        '{"temperature": 0}',
    )
    theirs = json.loads(completed.stdout.strip().splitlines()[-1])["continuations"]
    mismatches = [(p, o, t) for p, o, t in zip(prompts, ours, theirs) if o != t]
    assert not mismatches, mismatches[:3]


def _continuation(model, generation, prompt):
    """Our generated ids decoded on their own, as LiteRT-LM returns its continuation.

    With a byte-level BPE that is exactly the text after the prompt. SentencePiece drops the
    space a text starts with, so there the continuation lacks the word boundary after the
    prompt that our full text keeps (the space is a piece of the first generated id).
    """
    continuation = model.text(generation.token_ids[generation.prompt_tokens :])
    if model.info["tokenizer_kind"] == "byte_level_bpe" or not continuation:
        assert generation.text == prompt + continuation
    else:
        assert generation.text in (prompt + continuation, prompt + " " + continuation)
    return continuation


def test_android_handoff_of_a_bundle(bundles, litert_model, tmp_path):
    import hashlib

    from llm2tflite.report import android

    record_path = bundles["fp32"].parent / "fp32.litertlm.json"
    assets = tmp_path / "app" / "src" / "main" / "assets"
    arguments = [
        "--route",
        "litert",
        "--model",
        str(bundles["fp32"]),
        "--bundle-record",
        str(record_path),
        "--tflite",
        str(litert_model["tflite"]["fp32"]),
        "--export-info",
        str(litert_model["dir"] / "litert_export.json"),
        "--model-name",
        "small",
        "--variant",
        "fp32",
        "--prompt",
        PROMPT,
        "--out-model",
        str(assets / "autocomplete.litertlm"),
        "--out-json",
        str(assets / "autocomplete.json"),
    ]
    android.main(arguments)
    handoff = json.loads((assets / "autocomplete.json").read_text())
    data = (assets / "autocomplete.litertlm").read_bytes()
    assert data == bundles["fp32"].read_bytes()
    assert handoff["model"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert handoff["model"]["path_in_project"] == "app/src/main/assets/autocomplete.litertlm"
    record = json.loads(record_path.read_text())
    assert handoff["expected_output"] == PROMPT + record["check"]["continuation"]
    assert handoff["runtimes_agree"] is True
    assert handoff["flex_delegate"]["needed"] is False and handoff["custom_ops"] == []
    assert handoff["max_num_tokens"] == litert_model["info"]["litert_lm_max_num_tokens"]
    decode = {t["name"]: t for t in handoff["signatures"]["decode"]["inputs"]}
    assert decode["mask"]["shape"] == [1, 1, 1, litert_model["info"]["cache_length"]]
    assert set(handoff["signatures"]) == {"decode", "prefill_8", "prefill_16"}
    notes = " ".join(handoff["android"]["notes"])
    assert "EngineConfig" in notes and "no Flex" in notes
    sentencepiece = litert_model["info"]["tokenizer_kind"] == "sentencepiece"
    assert (
        "SentencePiece tokenizer: LiteRT-LM decodes the continuation on its own" in notes
    ) is sentencepiece
    assert handoff["android"]["dependencies"][0].startswith(
        "com.google.ai.edge.litertlm:litertlm-android"
    )
    # A record of another bundle is refused, and nothing is written.
    stale = dict(record, sha256="0" * 64)
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    arguments[arguments.index("--bundle-record") + 1] = str(tmp_path / "stale.json")
    arguments[arguments.index("--out-model") + 1] = str(tmp_path / "b.litertlm")
    arguments[arguments.index("--out-json") + 1] = str(tmp_path / "b.json")
    with pytest.raises(ValueError, match="another file"):
        android.main(arguments)
    assert not (tmp_path / "b.litertlm").exists() and not (tmp_path / "b.json").exists()


def _dry_run(tmp_path, edit):
    from conftest import copy_default_config, run_snakemake

    config_file = copy_default_config(tmp_path)
    config = yaml.safe_load(config_file.read_text())
    edit(config)
    config_file.write_text(yaml.safe_dump(config, allow_unicode=True))
    return run_snakemake(tmp_path, "--dry-run", "--quiet", "rules", check=False)


def _jobs(completed, rule):
    for line in completed.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == rule:
            return int(parts[1])
    return 0


def test_config_chooses_the_bundles_and_the_android_route(tmp_path):
    default = _dry_run(tmp_path / "default", lambda c: None)
    assert default.returncode == 0, default.stderr[-2000:]
    # Both default models (tiny: tokenizer.json, tiny_llama: tokenizer.model), 3 variants each.
    assert _jobs(default, "litertlm_bundle") == 6 and _jobs(default, "litertlm_env") == 1
    assert _jobs(default, "runtime_tokenizer") == 2

    def one_bundle_for_android(config):
        config["litertlm"]["variants"] = ["int8"]
        config["android"].update(route="litert", variant="int8")

    litert = _dry_run(tmp_path / "litert", one_bundle_for_android)
    assert litert.returncode == 0, litert.stderr[-2000:]
    assert _jobs(litert, "litertlm_bundle") == 2 and _jobs(litert, "android") == 1

    def bundle_of_a_variant_not_built(config):
        config["litert"]["variants"] = ["fp32", "int8"]
        config["litertlm"]["variants"] = ["int4"]

    wrong = _dry_run(tmp_path / "wrong", bundle_of_a_variant_not_built)
    assert wrong.returncode != 0
    assert "litertlm.variants: ['int4'] are not LiteRT variants" in wrong.stdout + wrong.stderr

    def codelab_variant_for_the_litert_route(config):
        config["android"].update(route="litert", variant="fp16")

    wrong = _dry_run(tmp_path / "route", codelab_variant_for_the_litert_route)
    assert wrong.returncode != 0
    assert (
        "android.variant: fp16 is not a variant of the litert route" in wrong.stdout + wrong.stderr
    )


def test_venv_creation_never_replaces_a_directory_it_did_not_make(tmp_path):
    from llm2tflite.litertlm.env import create_venv

    kept = tmp_path / "venv" / "notes.txt"
    kept.parent.mkdir()
    kept.write_text("mine")
    with pytest.raises(SystemExit, match=r"is not a LiteRT-LM venv made by llm2tflite"):
        create_venv(REPO / "requirements-litert-lm.txt", kept.parent)
    assert kept.read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    with pytest.raises(SystemExit, match=r"is not a LiteRT-LM venv"):
        create_venv(REPO / "requirements-litert-lm.txt", a_file)
    assert a_file.read_text() == "mine"
