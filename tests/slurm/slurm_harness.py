"""A private single-node Slurm cluster for the tests, and Snakemake runs on it.

The cluster (munged + slurmctld + slurmd, see ``cluster.sh`` beside this file) is started once
per test session by the ``slurm_cluster`` fixture in ``tests/conftest.py`` and stopped at
teardown, also when a test fails. Workflows are run exactly as a user would: ``python -m
snakemake --profile profiles/slurm ...`` in a subprocess, so every rule becomes an ``sbatch``
job on that cluster.

The scheduler's own record of each job is read from the cluster's job completion log
(``JobCompType=jobcomp/filetxt``; no slurmdbd/sacct needed) and joined with ``scontrol show
job`` for the rule name (the plugin puts ``rule_<name>`` in the job comment; all jobs of one
Snakemake run share the run UUID as their job name). The scheduler's view of every run is
printed (visible with ``pytest -s``), written to ``<workdir>/slurm_jobs.tsv`` and, if the
environment variable ``LLM2TFLITE_SLURM_REPORT`` names a file, appended there too.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def skip_reason() -> str | None:
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


class ClusterError(RuntimeError):
    """The private cluster did not start."""


def start_cluster(directory: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd with everything under ``directory``, on free ports."""
    if len(str(directory / "munge" / "munge.socket.2")) > 100:  # AF_UNIX path limit
        import tempfile

        directory = Path(tempfile.mkdtemp(prefix="l2t-slurm-", dir="/tmp"))
    env = dict(os.environ)
    env.update(
        SLURM_TEST_DIR=str(directory),
        # Own ports, so an already running (test or real) Slurm is not hit.
        SLURM_TEST_CTLD_PORT=str(_free_port()),
        SLURM_TEST_SLURMD_PORT=str(_free_port()),
        PATH=os.pathsep.join(
            [str(Path(sys.executable).parent), env.get("PATH", ""), "/usr/sbin", "/sbin"]
        ),
    )
    env["SLURM_CONF"] = str(directory / "slurm.conf")
    t0 = time.monotonic()
    started = _cluster_cmd("start", env)
    print(
        f"\n[slurm] cluster start: {time.monotonic() - t0:.1f}s (dir {directory})\n{started.stdout}"
    )
    cluster = SlurmCluster(dir=directory, env=env, node=socket.gethostname().split(".")[0])
    if started.returncode != 0:
        stop_cluster(cluster)
        raise ClusterError(f"cluster.sh start failed ({started.returncode}):\n{started.stdout}")
    return cluster


def stop_cluster(cluster: SlurmCluster) -> None:
    t0 = time.monotonic()
    stopped = _cluster_cmd("stop", cluster.env, timeout=90)
    print(
        f"\n[slurm] cluster stop: {time.monotonic() - t0:.1f}s "
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


@dataclass
class SlurmRun:
    """A Snakemake run on the cluster, started and not yet waited for."""

    process: subprocess.Popen
    workdir: Path
    title: str
    cluster: SlurmCluster
    jobcomp_offset: int
    started: float

    @property
    def log_path(self) -> Path:
        return self.workdir / "snakemake_slurm.log"


def start_workflow_on_slurm(
    snakefile: Path,
    workdir: Path,
    extra_args: Sequence[str] = (),
    *,
    cluster: SlurmCluster,
    profile: Path = SLURM_PROFILE,
    workflow_profile: str | None = "none",
) -> SlurmRun:
    """Start ``snakemake --profile <profile>`` on the test cluster; its combined output goes to
    ``<workdir>/snakemake_slurm.log``. ``workflow_profile`` is passed as
    ``--workflow-profile``; the default "none" stops Snakemake from layering a
    ``profiles/default`` found next to the Snakefile or in the cwd over the Slurm profile (pass
    None to keep Snakemake's default lookup)."""
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
    with open(workdir / "snakemake_slurm.log", "wb") as log:
        process = subprocess.Popen(
            cmd, cwd=workdir, env=cluster.env, stdout=log, stderr=subprocess.STDOUT
        )
    return SlurmRun(
        process=process,
        workdir=workdir,
        title=f"{Path(snakefile).name} in {workdir}",
        cluster=cluster,
        jobcomp_offset=offset,
        started=time.monotonic(),
    )


def finish_workflow_on_slurm(
    run: SlurmRun, timeout: float = 1800
) -> tuple[subprocess.CompletedProcess, list[SlurmJobRecord]]:
    """Wait for a run; the completed process (stdout = Snakemake's combined log) and the
    scheduler's records of the jobs it submitted. A run still going after ``timeout`` seconds
    (counted from its start) is stopped and raises ``TimeoutError``."""
    remaining = max(1.0, timeout - (time.monotonic() - run.started))
    try:
        returncode = run.process.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        run.process.terminate()
        run.process.wait(timeout=60)
        log = run.log_path.read_text(errors="replace")
        raise TimeoutError(
            f"snakemake on Slurm timed out after {timeout}s\n{log[-5000:]}\n"
            f"{run.cluster.log_tail()}"
        ) from None
    wall = time.monotonic() - run.started
    log = run.log_path.read_text(errors="replace")
    proc = subprocess.CompletedProcess(run.process.args, returncode, stdout=log)
    records = collect_job_records(run.cluster, run.jobcomp_offset, log)
    report_records(run.title, records, run.workdir, wall)
    return proc, records


def run_workflow_on_slurm(
    snakefile: Path,
    workdir: Path,
    extra_args: Sequence[str] = (),
    *,
    cluster: SlurmCluster,
    timeout: float = 1800,
    **options,
) -> tuple[subprocess.CompletedProcess, list[SlurmJobRecord]]:
    """``start_workflow_on_slurm`` then ``finish_workflow_on_slurm``."""
    run = start_workflow_on_slurm(snakefile, workdir, extra_args, cluster=cluster, **options)
    return finish_workflow_on_slurm(run, timeout)


def explain(proc: subprocess.CompletedProcess, cluster: SlurmCluster) -> str:
    return (
        f"snakemake exit {proc.returncode}; log tail:\n{proc.stdout[-6000:]}\n{cluster.log_tail()}"
    )
