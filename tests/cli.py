"""Running the `crucible` command as a user does, and what its errors must look like."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CRUCIBLE = [sys.executable, "-m", "crucible"]


def run_crucible(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CRUCIBLE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, no traceback, one line naming every fragment."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
