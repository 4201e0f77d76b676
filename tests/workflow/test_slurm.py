"""Real (not mocked) Slurm execution tests.

A private single-node Slurm cluster (munged + slurmctld + slurmd, see
tests/slurm/cluster.sh) is started by the ``slurm_cluster`` fixture and
stopped at teardown, also when a test fails. Workflows are run exactly as a
user would: ``python -m snakemake --profile profiles/slurm ...`` in a
subprocess, so every rule becomes an ``sbatch`` job on that cluster.

The scheduler's own record of each job is read from the cluster's job
completion log (``JobCompType=jobcomp/filetxt``; no slurmdbd/sacct needed)
and joined with ``scontrol show job`` for the rule name (the plugin puts
``rule_<name>`` in the job comment; all jobs of one Snakemake run share the
run UUID as their job name).

Skipped, with the reason, when Slurm/munge are not installed
(``.ci/install-slurm.sh``) or when not running as root; under ``CI=true`` (set by ``.ci/run``)
that fails instead, so CI cannot pass without running them.

The scheduler's view of every run is printed (visible with ``pytest -s``),
written to ``<workdir>/slurm_jobs.tsv`` and, if the environment variable
``LLM2TFLITE_SLURM_REPORT`` names a file, appended there too.

``test_real_dag_on_slurm_matches_local`` runs the repository's default DAG
through ``profiles/slurm`` and compares its artifacts with the local run of the
end-to-end tests.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_PROFILE = REPO / "profiles" / "slurm"

# Client tools the workflow needs, and the daemons the fixture starts.
REQUIRED_TOOLS = (
    "sbatch",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "slurmctld",
    "slurmd",
    "munged",
    "munge",
)


# --------------------------------------------------------------------------
# Cluster lifecycle
# --------------------------------------------------------------------------


def _which(tool: str) -> str | None:
    # slurmctld/slurmd/munged live in /usr/sbin, which a non-login PATH may lack
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def _skip_reason() -> str | None:
    missing = [t for t in REQUIRED_TOOLS if _which(t) is None]
    if missing:
        return (
            "Slurm/munge not installed (missing: "
            + ", ".join(missing)
            + "); run .ci/install-slurm.sh"
        )
    if os.geteuid() != 0:
        return "the private Slurm cluster must be started as root (slurmd runs jobs)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    dir: Path
    env: dict  # environment for clients: SLURM_CONF + PATH
    node: str

    @property
    def jobcomp(self) -> Path:
        return self.dir / "jobcomp.txt"

    def log_tail(self, n: int = 30) -> str:
        out = []
        for name in ("log/slurmctld.log", "log/slurmd.log"):
            p = self.dir / name
            if p.exists():
                lines = p.read_text(errors="replace").splitlines()[-n:]
                out.append(f"--- {p} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)


def _cluster_cmd(action: str, env: dict, timeout: float = 120):
    return subprocess.run(
        ["bash", str(CLUSTER_SH), action],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory) -> Iterable[SlurmCluster]:
    reason = _skip_reason()
    if reason:
        from conftest import skip_or_fail

        skip_or_fail(reason)
    cdir = tmp_path_factory.mktemp("slurm")
    if len(str(cdir / "munge" / "munge.socket.2")) > 100:  # AF_UNIX path limit
        import tempfile

        cdir = Path(tempfile.mkdtemp(prefix="l2t-slurm-", dir="/tmp"))
    env = dict(os.environ)
    env.update(
        SLURM_TEST_DIR=str(cdir),
        # Own ports, so an already running (test or real) Slurm is not hit.
        SLURM_TEST_CTLD_PORT=str(_free_port()),
        SLURM_TEST_SLURMD_PORT=str(_free_port()),
        PATH=os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", ""), "/usr/sbin", "/sbin"]
        ),
    )
    env["SLURM_CONF"] = str(cdir / "slurm.conf")
    t0 = time.monotonic()
    try:
        started = _cluster_cmd("start", env)
        print(
            f"\n[slurm] cluster start: {time.monotonic() - t0:.1f}s (dir {cdir})\n{started.stdout}"
        )
        if started.returncode != 0:
            pytest.fail(f"cluster.sh start failed ({started.returncode}):\n{started.stdout}")
        yield SlurmCluster(dir=cdir, env=env, node=socket.gethostname().split(".")[0])
    finally:
        t1 = time.monotonic()
        stopped = _cluster_cmd("stop", env, timeout=90)
        print(
            f"\n[slurm] cluster stop: {time.monotonic() - t1:.1f}s "
            f"(rc {stopped.returncode})\n{stopped.stdout}"
        )


# --------------------------------------------------------------------------
# Scheduler records
# --------------------------------------------------------------------------


@dataclass
class SlurmJobRecord:
    """One finished job as recorded by slurmctld (jobcomp/filetxt line)."""

    job_id: int
    name: str  # Slurm job name = Snakemake's SLURM run ID
    state: str  # COMPLETED, FAILED, TIMEOUT, CANCELLED, ...
    rule: str | None  # from the job comment rule_<rule>[_wildcards_<wc>]
    wildcards: str | None
    start: _dt.datetime | None
    end: _dt.datetime | None
    exit_code: str
    node_list: str
    time_limit: str  # minutes, as given by sbatch -t (rule runtime)
    tres: str  # allocated, e.g. cpu=1,mem=200M,node=1,billing=1
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def elapsed_s(self) -> float | None:
        if self.start and self.end:
            return (self.end - self.start).total_seconds()
        return None

    @property
    def tres_dict(self) -> dict:
        return dict(kv.split("=", 1) for kv in self.tres.split(",") if "=" in kv)


# key=value pairs; a value runs until the next " Key=" (values may contain '=')
_KV = re.compile(r"([A-Za-z][\w:/]*)=(.*?)(?=\s+[A-Za-z][\w:/]*=|\s*$)")


def _parse_kv_line(line: str) -> dict:
    return {k: v.strip() for k, v in _KV.findall(line.strip())}


def _ts(value: str | None) -> _dt.datetime | None:
    try:
        return _dt.datetime.fromisoformat(value) if value else None
    except ValueError:  # "Unknown", "None"
        return None


def _job_comments(job_ids: Sequence[int], env: dict) -> dict[int, str]:
    """Job comment (rule_<name>...) per job id from slurmctld's memory.

    Finished jobs stay there for MinJobAge (600 s in cluster.sh)."""
    out = {}
    for jid in job_ids:
        r = subprocess.run(
            ["scontrol", "show", "job", "-o", str(jid)], env=env, text=True, capture_output=True
        )
        m = re.search(r"\bComment=(\S*)", r.stdout)
        if r.returncode == 0 and m and m.group(1) != "(null)":
            out[jid] = m.group(1)
    return out


def _split_comment(comment: str | None) -> tuple[str | None, str | None]:
    if not comment:
        return None, None
    body = re.sub(r"^(rule|group)_", "", comment)
    rule, _, wildcards = body.partition("_wildcards_")
    return rule, (wildcards or None)


def read_jobcomp(path: Path, offset: int = 0) -> list[dict]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    return [_parse_kv_line(line) for line in text.splitlines() if line.startswith("JobId=")]


def collect_job_records(
    cluster: SlurmCluster, offset: int, run_log: str, wait_s: float = 15.0
) -> list[SlurmJobRecord]:
    """Scheduler records of the jobs one Snakemake run submitted.

    ``offset``: size of the jobcomp file before the run. Jobs are selected by
    the run's SLURM run ID (= Slurm job name); the rule comes from the job
    comment, or failing that from the plugin's log line
    "Job N has been submitted with SLURM jobid X (log: .../rule_<r>/X.log)".
    """
    submitted = {
        int(j): log
        for j, log in re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]*)\)", run_log)
    }
    m = re.search(r"SLURM run ID: (\S+)", run_log)
    run_id = m.group(1) if m else None

    deadline = time.monotonic() + wait_s
    while True:  # jobcomp is written when slurmctld processes the completion
        rows = read_jobcomp(cluster.jobcomp, offset)
        if run_id:
            rows = [r for r in rows if r.get("Name") == run_id]
        if {int(r["JobId"]) for r in rows} >= set(submitted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)

    ids = [int(r["JobId"]) for r in rows]
    comments = _job_comments(ids, cluster.env)
    records = []
    for r in rows:
        jid = int(r["JobId"])
        rule, wildcards = _split_comment(comments.get(jid))
        if rule is None and jid in submitted:
            lm = re.search(r"/(?:rule|group)_([^/]+)/", submitted[jid])
            rule = lm.group(1) if lm else None
        records.append(
            SlurmJobRecord(
                job_id=jid,
                name=r.get("Name", ""),
                state=r.get("JobState", ""),
                rule=rule,
                wildcards=wildcards,
                start=_ts(r.get("StartTime")),
                end=_ts(r.get("EndTime")),
                exit_code=r.get("ExitCode", ""),
                node_list=r.get("NodeList", ""),
                time_limit=r.get("TimeLimit", ""),
                tres=r.get("Tres", ""),
                raw=r,
            )
        )
    return sorted(records, key=lambda rec: rec.job_id)


def format_records(records: Sequence[SlurmJobRecord]) -> str:
    head = [
        "job_id",
        "rule",
        "wildcards",
        "state",
        "exit_code",
        "elapsed_s",
        "start",
        "end",
        "node",
        "time_limit_min",
        "tres",
    ]
    lines = ["\t".join(head)]
    for r in records:
        lines.append(
            "\t".join(
                str(x)
                for x in (
                    r.job_id,
                    r.rule,
                    r.wildcards or "",
                    r.state,
                    r.exit_code,
                    "" if r.elapsed_s is None else f"{r.elapsed_s:.0f}",
                    r.start.isoformat() if r.start else "",
                    r.end.isoformat() if r.end else "",
                    r.node_list,
                    r.time_limit,
                    r.tres,
                )
            )
        )
    return "\n".join(lines)


def report_records(
    title: str, records: Sequence[SlurmJobRecord], workdir: Path, wall_s: float
) -> None:
    table = format_records(records)
    text = f"## {title} (snakemake wall time {wall_s:.1f}s)\n{table}\n"
    print("\n[slurm] scheduler view, " + text)
    (workdir / "slurm_jobs.tsv").write_text(table + "\n")
    extra = os.environ.get("LLM2TFLITE_SLURM_REPORT")
    if extra:
        with open(extra, "a") as fh:
            fh.write(text + "\n")


# --------------------------------------------------------------------------
# Running a workflow on the cluster
# --------------------------------------------------------------------------


def run_workflow_on_slurm(
    snakefile: Path,
    workdir: Path,
    extra_args: Sequence[str] = (),
    *,
    cluster: SlurmCluster,
    profile: Path = SLURM_PROFILE,
    workflow_profile: str | None = "none",
    timeout: float = 1800,
) -> tuple[subprocess.CompletedProcess, list[SlurmJobRecord]]:
    """Run ``snakemake --profile <profile>`` on the test cluster.

    Returns the completed process (stdout = Snakemake's combined log) and the
    scheduler's records of the jobs this run submitted. ``workflow_profile``
    is passed as ``--workflow-profile``; the default "none" stops Snakemake
    from layering a ``profiles/default`` found next to the Snakefile or in
    the cwd over the Slurm profile (pass None to keep Snakemake's default
    lookup).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        str(profile),
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
    ]
    if workflow_profile is not None:
        cmd += ["--workflow-profile", workflow_profile]
    cmd += list(extra_args)
    offset = cluster.jobcomp.stat().st_size if cluster.jobcomp.exists() else 0
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            cwd=workdir,
            env=cluster.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        log = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(
            f"snakemake on Slurm timed out after {timeout}s\n{log[-5000:]}\n{cluster.log_tail()}"
        )
    wall = time.monotonic() - t0
    (workdir / "snakemake_slurm.log").write_text(proc.stdout)
    records = collect_job_records(cluster, offset, proc.stdout)
    report_records(f"{Path(snakefile).name} in {workdir}", records, workdir, wall)
    return proc, records


def _explain(proc: subprocess.CompletedProcess, cluster: SlurmCluster) -> str:
    return (
        f"snakemake exit {proc.returncode}; log tail:\n{proc.stdout[-6000:]}\n{cluster.log_tail()}"
    )


# --------------------------------------------------------------------------
# Toy DAG: fast check of the harness + profile
# --------------------------------------------------------------------------

# rule -> (mem_mb, runtime_min); a and b are independent, c needs both.
TOY_RESOURCES = {"a": (200, 5), "b": (300, 6), "c": (250, 7)}


def write_toy_workflow(directory: Path) -> Path:
    """A three-rule DAG; each rule records the Slurm job id it ran under."""
    ra, rb, rc = (TOY_RESOURCES[k] for k in "abc")
    snakefile = directory / "Snakefile"
    snakefile.write_text(
        textwrap.dedent(f"""\
        localrules: all

        rule all:
            input: "out/c.txt"

        rule a:
            output: "out/a.txt"
            threads: 1
            resources: mem_mb={ra[0]}, runtime={ra[1]}
            shell:
                "python -c 'import os, socket; "
                "print(os.environ[\\"SLURM_JOB_ID\\"], socket.gethostname())' > {{output}}"

        rule b:
            output: "out/b.txt"
            threads: 1
            resources: mem_mb={rb[0]}, runtime={rb[1]}
            shell: "echo $SLURM_JOB_ID $(hostname) > {{output}}"

        rule c:
            input: "out/a.txt", "out/b.txt"
            output: "out/c.txt"
            threads: 1
            resources: mem_mb={rc[0]}, runtime={rc[1]}
            shell: "cat {{input}} > {{output}} && echo $SLURM_JOB_ID $(hostname) >> {{output}}"
        """)
    )
    return snakefile


@pytest.mark.slurm
def test_toy_dag_runs_as_slurm_jobs(slurm_cluster, tmp_path):
    snakefile = write_toy_workflow(tmp_path)
    workdir = tmp_path / "run"
    proc, records = run_workflow_on_slurm(snakefile, workdir, cluster=slurm_cluster)
    assert proc.returncode == 0, _explain(proc, slurm_cluster)

    outs = {k: workdir / "out" / f"{k}.txt" for k in "abc"}
    for k, p in outs.items():
        assert p.is_file() and p.stat().st_size > 0, f"missing output of rule {k}"

    # Exactly one scheduler job per rule (`all` is a localrule), all completed.
    by_rule = {}
    for r in records:
        assert r.rule not in by_rule, f"two jobs for rule {r.rule}: {records}"
        by_rule[r.rule] = r
    assert set(by_rule) == set(TOY_RESOURCES), format_records(records)
    for rule, r in by_rule.items():
        assert r.state == "COMPLETED" and r.exit_code == "0:0", format_records(records)
        assert r.node_list == slurm_cluster.node
        assert r.elapsed_s is not None and r.elapsed_s >= 0
        # resources declared in the rule reached sbatch (--mem, -t)
        mem, runtime = TOY_RESOURCES[rule]
        assert r.tres_dict.get("mem") == f"{mem}M", r.tres
        assert r.time_limit == str(runtime), r.raw

    # Each output was written inside the Slurm job the scheduler recorded.
    for rule in ("a", "b"):
        job_id = outs[rule].read_text().split()[0]
        assert job_id == str(by_rule[rule].job_id)
    assert outs["c"].read_text().splitlines()[-1].split()[0] == str(by_rule["c"].job_id)
    # c depends on a and b, so Slurm must have started it after both ended.
    assert by_rule["c"].start >= max(by_rule["a"].end, by_rule["b"].end)


@pytest.mark.slurm
def test_failed_slurm_job_is_reported(slurm_cluster, tmp_path):
    """A failing rule: Slurm records FAILED, Snakemake exits non-zero, and the
    independent rule still completes (--keep-going)."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        textwrap.dedent("""\
        localrules: all
        rule all:
            input: "ok.txt", "bad.txt"
        rule ok:
            output: "ok.txt"
            resources: mem_mb=100, runtime=5
            shell: "echo fine > {output}"
        rule bad:
            output: "bad.txt"
            resources: mem_mb=100, runtime=5
            shell: "echo about to fail; exit 3"
        """)
    )
    workdir = tmp_path / "run"
    proc, records = run_workflow_on_slurm(
        snakefile, workdir, ["--keep-going"], cluster=slurm_cluster, timeout=600
    )
    assert proc.returncode != 0, _explain(proc, slurm_cluster)
    assert (workdir / "ok.txt").is_file()
    assert not (workdir / "bad.txt").exists()
    states = {r.rule: r.state for r in records}
    assert states == {"ok": "COMPLETED", "bad": "FAILED"}, format_records(records)


# --------------------------------------------------------------------------
# Real DAG (to be finished by the lead)
# --------------------------------------------------------------------------


def prepare_real_workdir(workdir: Path) -> None:
    """Make ``workdir`` usable with ``--directory``: Snakemake resolves
    ``configfile: "config/config.yaml"`` relative to the working directory,
    not to the Snakefile, so the config has to be there."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "config", workdir / "config", dirs_exist_ok=True)


# ---- Comparing two runs' results, file by file ---------------------------------------------
# A measured time, memory peak or ratio of times, or a clock reading, is named by one of these
# words: a unit of time (s, ms, seconds), "rss", "speed"/"speedup", "date", "time", "timestamp".
# Sizes, counts, ids, texts and quality figures have none of them.
MEASURED_WORDS = frozenset(
    {"s", "ms", "seconds", "rss", "speed", "speedup", "date", "time", "timestamp"}
)
# A JSON key or CSV column naming a measurement is a snake_case identifier with such a word
# ("median_s", "decode_ms_per_token", "peak_rss_mb", "speedup_vs_tf", Keras's "date_saved"); a
# vocabulary's tokens (keys like "s" or "Ġs") are not.
MEASURED_KEY = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
# Keys describing the process that ran a job rather than what it made: its id, and the CPUs the
# scheduler gave it (a Slurm allocation is not the local machine's affinity mask).
RUN_ENVIRONMENT_KEYS = frozenset({"pid", "cpus_available"})
# A measured time in running text: "(+6 tokens, 0.025 s)".
MEASURED_TIME_IN_TEXT = re.compile(r"\d+(?:\.\d+)?(?:e-?\d+)? ?(?:s|ms)\b")


def _names_a_measurement(words) -> bool:
    return bool(MEASURED_WORDS & set(words))


def is_measured_key(key: str) -> bool:
    if key in RUN_ENVIRONMENT_KEYS:
        return True
    return bool(MEASURED_KEY.fullmatch(key)) and _names_a_measurement(key.split("_"))


def is_measured_header(header: str) -> bool:
    """A table column's header: "median s (min-max)", "tokens/s", "peak RSS MiB", ..."""
    return _names_a_measurement(re.split(r"[^a-z0-9]+", header.lower()))


def without_measurements(value):
    """A JSON value with every measured key dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_measurements(v) for k, v in value.items() if not is_measured_key(k)}
    if isinstance(value, list):
        return [without_measurements(v) for v in value]
    return value


def _markdown_without_measurements(text: str) -> list[str]:
    """Markdown (summary.md, ops/*.md): table cells under a measured header dropped (cells
    stripped, since column widths follow the widest value), times in running text masked."""
    lines, measured_columns = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            measured_columns = None
            lines.append(MEASURED_TIME_IN_TEXT.sub("<time>", line))
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if measured_columns is None:  # the header row
            measured_columns = {i for i, cell in enumerate(cells) if is_measured_header(cell)}
        lines.append("|".join(c for i, c in enumerate(cells) if i not in measured_columns))
    return lines


def _csv_without_measurements(text: str) -> list[dict]:
    import csv
    import io

    return [
        {k: v for k, v in row.items() if not is_measured_key(k)}
        for row in csv.DictReader(io.StringIO(text))
    ]


def measurement_free_content(path: Path):
    """What must be equal in two runs' copies of a file whose bytes differ; None for a format
    that holds no measurement (its bytes must be equal)."""
    if path.suffix == ".json":
        return without_measurements(json.loads(path.read_text()))
    if path.suffix == ".csv":
        return _csv_without_measurements(path.read_text())
    if path.suffix == ".md":
        return _markdown_without_measurements(path.read_text())
    if path.suffix == ".png":
        # A plot draws measured latencies: its pixels follow them; its size must not change.
        from PIL import Image

        return Image.open(path).size
    return None


def result_files(workdir: Path) -> dict[str, Path]:
    """Every file under results/, by path relative to the run's directory, except Snakemake's
    `benchmark:` files (results/benchmarks/: each job's wall-clock time and memory, nothing
    else)."""
    return {
        str(p.relative_to(workdir)): p
        for p in sorted((workdir / "results").rglob("*"))
        if p.is_file() and not p.relative_to(workdir).parts[1] == "benchmarks"
    }


def run_differences(first: Path, second: Path) -> tuple[list[str], list[str]]:
    """(differences, files equal only without their measurements) between two runs' results.

    Every file both runs wrote is compared: bytes equal, or, for a file that records
    measurements, equal once they are dropped (``measurement_free_content``); the manifest by
    its own entries, each checked against the file it names."""
    files = {run: result_files(run) for run in (first, second)}
    differences = [
        f"only in {run}: {name}"
        for run, other in ((first, second), (second, first))
        for name in sorted(set(files[run]) - set(files[other]))
    ]
    measured_only = []
    for name in sorted(set(files[first]) & set(files[second])):
        a, b = files[first][name], files[second][name]
        if a.name == "manifest.json":
            continue  # compared below, entry by entry
        if a.read_bytes() == b.read_bytes():
            continue
        content = measurement_free_content(a)
        if content is not None and content == measurement_free_content(b):
            measured_only.append(name)
        else:
            differences.append(f"differs: {name}")
    manifests = {run: run / "results/reports/default/manifest.json" for run in (first, second)}
    entries = {run: json.loads(path.read_text()) for run, path in manifests.items()}
    for run, manifest in entries.items():
        for name, entry in manifest["artifacts"].items():
            if not (run / name).is_file():
                differences.append(f"{run}: the manifest names a missing file, {name}")
            elif hashlib.sha256((run / name).read_bytes()).hexdigest() != entry["sha256"]:
                differences.append(f"{run}: the manifest's SHA-256 of {name} is not the file's")
    if entries[first]["versions"] != entries[second]["versions"]:
        differences.append("manifest versions differ")
    if set(entries[first]["artifacts"]) != set(entries[second]["artifacts"]):
        differences.append("the manifests list different artifacts")
    return differences, measured_only


@pytest.mark.slurm
def test_real_dag_on_slurm_matches_local(slurm_cluster, default_run, tmp_path):
    """The default DAG, every rule an sbatch job, gives the local run's artifacts."""
    local_dir, _ = default_run
    slurm_dir = tmp_path / "slurm"
    prepare_real_workdir(slurm_dir)
    proc, records = run_workflow_on_slurm(
        REPO / "Snakefile", slurm_dir, (), cluster=slurm_cluster, timeout=3600
    )
    assert proc.returncode == 0, _explain(proc, slurm_cluster)
    assert records and all(r.state == "COMPLETED" for r in records), format_records(records)
    # Every rule of the DAG went through sbatch (the aggregate `all` is a local rule).
    assert {"corpus", "vocab", "train", "trace", "convert", "smoke"} <= {r.rule for r in records}
    # Two cold runs of the whole default DAG (the local run is default_run's, the same
    # fixture the end-to-end tests read): this also is the check that a clean run reproduces
    # every artifact byte for byte, both routes, both models, bundles and Android hand-off.
    differences, measured_only = run_differences(local_dir, slurm_dir)
    print(f"\n[slurm] equal once their measurements are dropped: {measured_only}")
    assert not differences, "\n".join(differences)
    manifest = json.loads((slurm_dir / "results/reports/default/manifest.json").read_text())
    compared = set(result_files(slurm_dir)) - set(measured_only)
    for model in ("tiny", "tiny_llama"):
        for route, variant in (("tflite", "int8"), ("litert", "int4")):
            assert f"results/{model}/{route}/{variant}.tflite" in manifest["artifacts"]
        assert f"results/{model}/litert/int4.litertlm" in compared
        assert f"results/{model}/preset/model.weights.h5" in compared


# ---- The comparison itself, on two small hand-made runs (fast, no cluster) -------------------


def _write_run(root: Path, perplexity=6.665, median_s=0.0127, weights=b"\x00\x01", cell="6"):
    files = {
        "results/m/preset/model.weights.h5": weights,
        "results/m/bench.json": json.dumps(
            {"entries": [{"median_s": median_s, "pid": os.getpid() + int(median_s * 1e4)}]}
        ).encode(),
        "results/m/tflite/fidelity/int8.json": json.dumps({"perplexity": perplexity}).encode(),
        "results/reports/default/benchmarks.csv": f"model,median_s,new_tokens\nm,{median_s},6\n",
        "results/reports/default/summary.md": (
            "| variant | median s (min-max) | new tokens |\n|:--|:--|:--|\n"
            f"| int8 | {median_s} ({median_s}-{median_s}) | {cell} |\n\n"
            f'[int8] passed\n  "a" -> "a b" (+1 tokens, {median_s} s)\n'
        ),
        "results/benchmarks/m/train.tsv": f"s\n{median_s}\n",
    }
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        (root / name).write_bytes(data)
    artifacts = {
        name: {"sha256": hashlib.sha256((root / name).read_bytes()).hexdigest()}
        for name in files
        if "benchmarks/m" not in name
    }
    manifest = root / "results/reports/default/manifest.json"
    manifest.write_text(json.dumps({"versions": {"keras": "3"}, "artifacts": artifacts}))
    return root


def test_runs_that_differ_only_in_measurements_are_equal(tmp_path):
    first = _write_run(tmp_path / "a")
    second = _write_run(tmp_path / "b", median_s=0.0234)
    differences, measured_only = run_differences(first, second)
    assert differences == []
    assert measured_only == [
        "results/m/bench.json",
        "results/reports/default/benchmarks.csv",
        "results/reports/default/summary.md",
    ]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"perplexity": 6.7}, "differs: results/m/tflite/fidelity/int8.json"),
        ({"weights": b"\x00\x02"}, "differs: results/m/preset/model.weights.h5"),
        ({"cell": "7"}, "differs: results/reports/default/summary.md"),
    ],
)
def test_a_difference_beyond_measurements_is_reported(tmp_path, change, expected):
    first = _write_run(tmp_path / "a")
    second = _write_run(tmp_path / "b", median_s=0.0234, **change)
    differences, _ = run_differences(first, second)
    assert differences == [expected]


def test_a_missing_file_and_a_wrong_manifest_entry_are_reported(tmp_path):
    first = _write_run(tmp_path / "a")
    second = _write_run(tmp_path / "b")
    (second / "results/m/preset/model.weights.h5").unlink()
    (first / "results/m/tflite/fidelity/int8.json").write_text("{}")
    differences, _ = run_differences(first, second)
    assert f"only in {first}: results/m/preset/model.weights.h5" in differences
    assert f"{second}: the manifest names a missing file, results/m/preset/model.weights.h5" in (
        differences
    )
    assert (
        f"{first}: the manifest's SHA-256 of results/m/tflite/fidelity/int8.json is not the file's"
        in differences
    )
