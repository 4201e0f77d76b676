"""Project rules that keep the workflow reproducible and its DAG instant to parse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from llm2tflite.core import code_inputs

from conftest import (
    REPO,
    copy_default_config,
    default_run_imports,
    make_project,
    recorded_imports,
    recording_imports,
    run_snakemake,
)

RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
HEAVY_MODULES = {"tensorflow", "keras", "keras_hub", "keras_nlp", "tensorflow_text", "tf_keras"}


def _requirement_lines(lines):
    """Requirement lines without comments: pins (name==version) and local paths."""
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            yield line


def _pins(lines):
    pins = {}
    for line in _requirement_lines(lines):
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def _local_paths(lines):
    return {
        re.sub(r"^(\./|\$\{LLM2TFLITE_WORKFLOW_DIR\}/)", "", line)
        for line in _requirement_lines(lines)
        if "/" in line and not line.startswith("-e")
    }


def _canonical(name):
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _conda_pip_section():
    env = yaml.safe_load((REPO / "envs" / "llm2tflite.yaml").read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


def test_conda_env_matches_requirements():
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    pip_section = _conda_pip_section()
    assert _pins(pip_section) == _pins(requirements)
    assert (
        _local_paths(pip_section)
        == _local_paths(requirements)
        == {"packaging/tensorflow-cpu-as-tensorflow"}
    )
    # The env also holds the workflow's own package (Snakemake unsets PYTHONPATH in conda envs).
    assert "-e ${LLM2TFLITE_WORKFLOW_DIR}" in pip_section
    assert _pins(requirements)["tensorflow-cpu"] == "2.18.1"
    assert _pins(requirements)["numpy"].startswith(("1.", "2.0."))


@pytest.mark.network
def test_conda_env_pip_section_resolves_where_conda_runs_it(tmp_path):
    """conda writes the env's pip lines to a requirements file next to the copy of the env file
    that Snakemake makes (.snakemake/conda/) and runs pip there: the paths and the workflow's
    package must resolve from that directory, through LLM2TFLITE_WORKFLOW_DIR."""
    import os

    project = make_project(tmp_path / "project")
    conda_dir = project / ".snakemake" / "conda"
    conda_dir.mkdir(parents=True)
    (conda_dir / "condaenv.requirements.txt").write_text("\n".join(_conda_pip_section()) + "\n")
    env = {**os.environ, "LLM2TFLITE_WORKFLOW_DIR": str(project)}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",
            "--disable-pip-version-check",
            "--report",
            str(tmp_path / "report.json"),
            "-r",
            "condaenv.requirements.txt",
        ],
        cwd=conda_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0 and re.search(
        r"NewConnectionError|Temporary failure in name "
        r"resolution|Network is unreachable",
        completed.stdout + completed.stderr,
    ):
        from conftest import skip_or_fail

        skip_or_fail(f"PyPI unreachable: {completed.stderr[-500:]}")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    import json

    installed = {
        _canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads((tmp_path / "report.json").read_text())["install"]
    }
    assert installed["llm2tflite"] and installed["tensorflow"] == "2.18.1"
    assert installed["tensorflow-cpu"] == installed["tensorflow-text"] == "2.18.1"


def test_one_tensorflow_is_installed():
    """One TensorFlow on disk: the CPU build, whose files no other distribution overwrites (the
    CUDA build prints CUDA registration errors at every import on a CPU machine)."""
    owners = {}
    for dist in metadata.distributions():
        files = dist.files or []
        if any(f.parts[:1] == ("tensorflow",) and f.suffix in (".py", ".so") for f in files):
            owners[_canonical(dist.metadata["Name"])] = dist.version
    assert owners == {"tensorflow-cpu": "2.18.1"}, owners
    tensorflow = metadata.distribution("tensorflow")
    assert tensorflow.requires == ["tensorflow-cpu==2.18.1"], tensorflow.requires


def test_workflow_files_do_not_import_tensorflow():
    for path in RULE_FILES:
        text = path.read_text()
        assert not re.search(
            r"^\s*(import|from)\s+(tensorflow|keras|keras_hub|keras_nlp)\b", text, re.M
        ), path


def test_dag_parses_fast_without_tensorflow(tmp_path):
    """Parsing the default DAG imports no TensorFlow or Keras (a TF import costs seconds and
    gigabytes at every parse, and every cluster job parses the DAG again)."""
    copy_default_config(tmp_path)
    env = recording_imports(tmp_path / "imports")
    started = time.perf_counter()
    completed = run_snakemake(tmp_path, "--dry-run", "--quiet", "all", env=env)
    elapsed = time.perf_counter() - started
    print(f"dry run of the default DAG: {elapsed:.1f} s")
    assert completed.returncode == 0
    (snakemake,) = [
        r for r in recorded_imports(tmp_path / "imports") if "snakemake" in " ".join(r["argv"][:1])
    ]
    assert "llm2tflite" in snakemake["top_level"]  # the record is of the process that parsed
    assert not HEAVY_MODULES & set(snakemake["top_level"]), HEAVY_MODULES & set(
        snakemake["top_level"]
    )
    # A TensorFlow import alone takes longer than this whole parse on the CI machine; the
    # bound is generous, the import check above is the precise guard.
    assert elapsed < 60


def test_unknown_variant_is_a_schema_error(tmp_path):
    config = copy_default_config(tmp_path)
    config.write_text(
        config.read_text().replace("variants: [fp32, int8, fp16]", "variants: [fp32, int3]")
    )
    completed = run_snakemake(tmp_path, "--dry-run", check=False)
    assert completed.returncode != 0
    assert "int3" in completed.stdout + completed.stderr


def test_lint_is_clean(tmp_path):
    project = make_project(tmp_path / "project")
    completed = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], cwd=project, capture_output=True, text=True
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Lints for" not in output, output


def _rules(path: Path):
    """(rule name, body) of every rule in a Snakefile or .smk file."""
    text = path.read_text()
    starts = [(m.start(), m.group(1)) for m in re.finditer(r"^rule (\w+):", text, re.M)]
    for (start, name), (end, _) in zip(starts, starts[1:] + [(len(text), None)]):
        yield name, text[start:end]


def test_each_rule_lists_the_code_of_the_module_it_runs():
    """A rule's code inputs are those of the module its shell command runs, and its name says
    which module that is."""
    runs = {}
    for path in RULE_FILES:
        for name, body in _rules(path):
            modules = re.findall(r"python -m llm2tflite\.([\w.]+)", body)
            if not modules:
                continue
            (module,) = set(modules)
            assert re.search(rf'code=stage_code\("{module}"\)', body), (name, module)
            runs[name] = module
    assert runs["vocab"] == "inputs.vocab" and runs["reference"] == "inputs.reference"
    assert runs["gpt2_assets"] == "families.gpt2_assets" and runs["android"] == "report.android"
    assert not {"vocabulary", "smoke_reference", "gpt2_tokenizer", "android_assets"} & set(runs)


def test_code_inputs_follow_the_imports():
    def relative(module):
        return {
            str(p.relative_to(code_inputs.PACKAGE_DIR)) for p in code_inputs.stage_files(module)
        }

    train = relative("inputs.train")
    # Modules the train stage runs that a hand-written list once missed.
    assert {
        "inputs/vocab.py",
        "families/registry.py",
        "families/gpt2.py",
        "core/atomic.py",
        "__init__.py",
        "core/__init__.py",
        "core/tf_logging.py",
    } <= train
    assert "inputs/sources.py" in relative("codelab.trace")
    assert "inputs/sources.py" in relative("inputs.reference")
    assert "data/blocklist.txt" in relative("evaluate.smoke")
    assert "codelab/trace.py" not in relative("inputs.corpus")
    with pytest.raises(ValueError):
        code_inputs.stage_files("no_such_stage")


def test_code_inputs_of_a_package_with_every_kind_of_import(tmp_path):
    package = tmp_path / "llm2tflite"
    (package / "sub").mkdir(parents=True)
    (package / "data").mkdir()
    files = {
        "__init__.py": "",
        "stage.py": "from . import helper\nfrom llm2tflite.sub import leaf\n"
        "def main():\n    import llm2tflite.lazy\n    return 'words.txt'\n",
        "helper.py": "import os\n",
        "lazy.py": "from .sub import dynamic\n",
        "unused.py": "",
        "sub/__init__.py": "",
        "sub/leaf.py": "from .. import helper\n",
        "sub/dynamic.py": "import importlib\nimportlib.import_module('llm2tflite.sub.' + 'x')\n",
        "sub/plugin.py": "",
        "data/words.txt": "a\n",
        "data/other.txt": "b\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    found = {str(p.relative_to(package)) for p in code_inputs.stage_files("stage", package)}
    assert found == {
        "__init__.py",
        "stage.py",
        "helper.py",
        "lazy.py",
        "sub/__init__.py",
        "sub/leaf.py",
        "sub/dynamic.py",
        "sub/plugin.py",
        "data/words.txt",
    }


def test_code_inputs_cover_what_each_stage_imported(default_run):
    """Every package file a stage of the default run really imported is one of its rule's
    code inputs, and it is the project's own copy of the package (not another install)."""
    workdir, _ = default_run
    package = workdir / "llm2tflite"
    stages = 0
    for record in default_run_imports(default_run):
        script = Path(record["argv"][0])
        if not script.is_relative_to(package) or script.name == "__main__.py":
            continue
        stages += 1
        module = ".".join(script.relative_to(package).with_suffix("").parts)
        declared = set(code_inputs.stage_files(module, package))
        imported = {Path(f) for f in record["package_files"]}
        assert all(f.is_relative_to(package) for f in imported), (script, imported)
        assert imported <= declared, (script.stem, sorted(imported - declared))
    assert stages >= 20


def test_snakemake_never_imported_tensorflow_in_the_default_run(default_run):
    records = [
        r for r in default_run_imports(default_run) if Path(r["argv"][0]).parent.name == "snakemake"
    ]
    assert records
    for record in records:
        assert not HEAVY_MODULES & set(record["top_level"])


def test_shared_helpers_are_defined_once():
    sources = {p: p.read_text(encoding="utf-8") for p in (REPO / "llm2tflite").rglob("*.py")}
    sha256_helpers = [
        p.name for p, text in sources.items() if re.search(r"^def sha256_file\b", text, re.M)
    ]
    assert sha256_helpers == ["hashing.py"]
    for helper, home in [
        ("peak_rss_mb", "memory.py"),
        ("rss_mb", "memory.py"),
        ("schema", "flatbuffer.py"),
    ]:
        homes = [
            p.name for p, text in sources.items() if re.search(rf"^def {helper}\b", text, re.M)
        ]
        assert homes == [home], (helper, homes)
    prompt_definitions = sorted(
        p.name
        for p, text in sources.items()
        if re.search(r'^\w+ = "Estoy disfrutando de"', text, re.M)
    )
    assert prompt_definitions == ["__init__.py"], prompt_definitions


def test_generic_modules_name_no_model_family():
    """Family knowledge lives in llm2tflite/families/: no module outside it imports, names or
    compares against a family. Messages and docstrings may give examples."""
    import ast

    family = re.compile(r"gpt_?2|llama|gemma", re.IGNORECASE)
    package = REPO / "llm2tflite"
    generic = [p for p in sorted(package.rglob("*.py")) if p.parent.name != "families"]
    assert len(generic) > 30
    for path in generic:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and family.search(node.id):
                found.append(node.id)
            elif isinstance(node, ast.Attribute) and family.search(node.attr):
                found.append(node.attr)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [alias.name for alias in node.names] + [getattr(node, "module", "")]
                found += [m for m in modules if m and family.search(m.split(".")[-1])]
            elif isinstance(node, (ast.Compare, ast.Subscript, ast.Dict)):
                found += [
                    c.value
                    for c in ast.walk(node)
                    if isinstance(c, ast.Constant)
                    and isinstance(c.value, str)
                    and family.search(c.value)
                ]
        assert not found, (path.name, found)


def _package_imports(path: Path) -> set[str]:
    """The llm2tflite modules a file imports (top level or in a function), as dotted names."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith("llm2tflite.")}


def _layer_of(module: str, package: Path) -> str | None:
    """The subpackage a dotted name lives in, "top" for a top-level module (model_files,
    config_check, the CLI), None for the package root or a name defined in its __init__."""
    first = module.split(".")[1]
    if (package / first).is_dir():
        return first
    return "top" if (package / f"{first}.py").is_file() else None


def test_package_layers_import_only_what_they_may():
    """The folders are the architecture: core imports nothing else of the package; the two routes
    never import each other; nothing below the report layer imports it; the demo pages (web, a
    layer beside report) read the LiteRT route's files by its contract and import neither the
    codelab route nor the checks, and only the CLI (__main__) imports them; subpackage __init__
    files are empty (a stage's code inputs follow its imports, see core/code_inputs.py)."""
    package = REPO / "llm2tflite"
    may_not_import = {
        "core": {
            "families",
            "inputs",
            "codelab",
            "litert",
            "litertlm",
            "evaluate",
            "report",
            "web",
            "top",
        },
        "families": {"inputs", "codelab", "litert", "litertlm", "evaluate", "report", "web"},
        "inputs": {"codelab", "litert", "litertlm", "evaluate", "report", "web"},
        "codelab": {"litert", "litertlm", "evaluate", "report", "web"},
        "litert": {"codelab", "litertlm", "evaluate", "report", "web"},
        "litertlm": {"codelab", "evaluate", "report", "web"},
        "evaluate": {"report", "web"},
        "report": {"web"},
        "web": {"families", "inputs", "codelab", "litertlm", "evaluate", "report", "top"},
        # The CLI (__main__.py) serves the pages; no other top-level module imports them.
        "top": {"web"},
    }
    layers = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert set(may_not_import) - {"top"} == layers, layers
    checked = 0
    for path in sorted(package.rglob("*.py")):
        layer = path.parent.name if path.parent != package else "top"
        if path.name == "__init__.py" and layer != "top":
            assert path.read_text() == "", path
        forbidden = may_not_import.get(layer, set())
        if path == package / "__main__.py":
            forbidden = forbidden - {"web"}
        if layer == "web":
            # The light contract only: the runtime tokenizer's module imports the families.
            litert = {m for m in _package_imports(path) if m.startswith("llm2tflite.litert.")}
            assert all(m.startswith("llm2tflite.litert.contract") for m in litert), (path, litert)
        imported = {_layer_of(m, package) for m in _package_imports(path)} - {None, layer}
        assert not imported & forbidden, (str(path.relative_to(package)), imported & forbidden)
        checked += 1
    assert checked > 40


_CLOSURE_PRINTER = """
def pytest_collection_finish(session):
    for item in session.items:
        print("CLOSURE", item.path, *item.fixturenames)
"""


def test_tests_that_read_the_default_run_share_one_process_group(tmp_path):
    """The README's `-n 2 --dist loadgroup` builds the default run once only if every test
    whose fixtures reach it is in conftest's default-run group (which is read from the files'
    text); pytest's own view of each test's fixtures is the independent source here."""
    from conftest import DEFAULT_RUN_GROUP, process_group

    (tmp_path / "closure_printer.py").write_text(_CLOSURE_PRINTER)
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "closure_printer",
         "-p", "no:cacheprovider", "-o", "addopts=", "-m", "", str(REPO / "tests")],
        capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    reaching = {"default_run", "default_run_on_slurm", "slurm_cluster"}
    files, reads = set(), set()
    for line in completed.stdout.splitlines():
        if line.startswith("CLOSURE "):
            _, path, *fixtures = line.split(" ")
            files.add(Path(path))
            if reaching & set(fixtures):
                reads.add(Path(path))
    # The web page test reaches it through request.getfixturevalue, which no closure shows.
    reads.add(REPO / "tests/web/test_web_page.py")
    assert len(files) > 40 and len(reads) >= 10
    grouped = {f for f in files if process_group(f) == DEFAULT_RUN_GROUP}
    assert grouped == reads
    assert process_group(REPO / "tests/families/test_qwen.py") == "folder-families"


def test_tests_of_a_group_run_in_one_process():
    """The scheduler conftest gives xdist is the one in use: two files of one folder, under the
    README's options, run in the same worker (xdist's own `load` spreads them)."""
    files = ["tests/core/test_sampling.py", "tests/core/test_atomic.py"]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "-o", "addopts=", *files],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    workers = {
        line.split("]")[0].lstrip("[") for line in completed.stdout.splitlines()
        if " PASSED " in line and line.startswith("[gw")
    }  # fmt: skip
    assert len(workers) == 1, completed.stdout[-3000:]


_WEIGHT_CACHE_PROBE = """
import os
from pathlib import Path


def pytest_sessionfinish(session):
    directory = Path(os.environ["LLM2TFLITE_WEIGHT_CACHE_DIR"])
    (directory / f"packed-{os.getpid()}.xnnpack").write_bytes(b"weights")
    with open(os.environ["PROBE_LOG"], "a") as log:
        log.write(f"{directory}\\n")
"""


def test_a_test_session_leaves_no_weight_cache_behind(tmp_path):
    """conftest gives the session one weight-cache directory in the temporary directory; under
    the README's `-n 2`, the controller and both workers write into that one directory, and it is
    gone once pytest has exited (the probe writes into it after every test has run)."""
    (tmp_path / "weight_cache_probe.py").write_text(_WEIGHT_CACHE_PROBE)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LLM2TFLITE_WEIGHT_CACHE_DIR"}
    env.update(TMPDIR=str(temporary), PYTHONPATH=str(tmp_path), PROBE_LOG=str(tmp_path / "log"))
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "weight_cache_probe",
         "-p", "no:cacheprovider", "-o", "addopts=", "tests/core/test_sampling.py"],
        capture_output=True, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    written = (tmp_path / "log").read_text().splitlines()
    assert len(written) == 3 and len(set(written)) == 1, written
    assert Path(written[0]).parent == temporary
    assert not Path(written[0]).exists()
    assert not list(temporary.glob("llm2tflite-test-weight-cache-*"))
