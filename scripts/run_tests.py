"""Run every test suite (trial, then Node conformance) and print one "N passed, N failed" line.

Each runner's own output streams through unchanged; its counts are read from its summary.
Exit status is non-zero when anything failed or a runner could not report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


def run(cmd: list[str], cwd: Path) -> tuple[int, str]:
    print(f"\n=== {' '.join(cmd)} (in {cwd.relative_to(ROOT) if cwd != ROOT else '.'})", flush=True)
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        out.append(line)
    return proc.wait(), "".join(out)


def trial_counts(text: str) -> tuple[int, int]:
    """trial ends with 'PASSED (successes=N[, skips=M])' or 'FAILED (failures=a, errors=b, successes=c ...)'."""
    m = re.findall(r"^(PASSED|FAILED) \(([^)]*)\)\s*$", text, re.MULTILINE)
    if not m:
        return 0, 1
    fields = dict((k.strip(), int(v)) for k, v in (p.split("=") for p in m[-1][1].split(",")))
    passed = fields.get("successes", 0) + fields.get("expectedFailures", 0)
    failed = fields.get("failures", 0) + fields.get("errors", 0) + fields.get("unexpectedSuccesses", 0)
    return passed, failed


def node_counts(text: str) -> tuple[int, int]:
    p = re.findall(r"^# pass (\d+)\s*$", text, re.MULTILINE)
    f = re.findall(r"^# fail (\d+)\s*$", text, re.MULTILINE)
    c = re.findall(r"^# cancelled (\d+)\s*$", text, re.MULTILINE)
    if not p:
        return 0, 1
    return int(p[-1]), int(f[-1]) + (int(c[-1]) if c else 0)


def main() -> int:
    total_pass = total_fail = 0
    suites = [
        ("trial", [str(BIN / "python"), "-m", "twisted.trial", "--reactor=asyncio", "tests"], ROOT, trial_counts),
        ("conformance", ["npm", "test", "--silent"], ROOT / "conformance", node_counts),
    ]
    for name, cmd, cwd, parse in suites:
        rc, text = run(cmd, cwd)
        passed, failed = parse(text)
        if rc != 0 and failed == 0:
            failed = 1  # the runner failed without a readable summary
        print(f"--- {name}: {passed} passed, {failed} failed (exit {rc})", flush=True)
        total_pass += passed
        total_fail += failed
    print(f"{total_pass} passed, {total_fail} failed", flush=True)
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
