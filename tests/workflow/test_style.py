"""One style for the code, checked like everything else: ruff (lint and format) for the Python,
snakefmt for the rules; their settings are in pyproject.toml (line length 100)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

RULE_FILES = ["Snakefile", "workflow/rules"]


def _tool(name):
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else shutil.which(name)


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["snakefmt", "--check", *RULE_FILES],
    ],
    ids=["ruff check", "ruff format", "snakefmt"],
)
def test_code_is_formatted_and_lint_free(command):
    executable = _tool(command[0])
    assert executable, f"{command[0]} is not installed (requirements-test.txt)"
    completed = subprocess.run([executable, *command[1:]], cwd=REPO, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
