"""Run the audit the way a user does, in a subprocess guarded to loopback, once per
scenario per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# The real Exchange 2016 export, in the copy of shared/ that sits beside the clone.
REAL_EXPORTS = PROJECT.parent / "shared" / "real-world" / "exchange-clixml"
CLIXML_HEADER = (
    '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
)


@dataclass(frozen=True)
class AuditRun:
    returncode: int
    stdout: str
    stderr: str
    document: dict
    run_dir: Path | None
    seconds: float = 0.0  # how long the run took, start to exit

    def findings(self, severity: str | None = None) -> list[dict]:
        return [
            f
            for check in self.document.get("checks", [])
            for f in check["findings"]
            if severity is None or f["severity"] == severity
        ]

    def sentences(self, severity: str | None = None) -> list[str]:
        return [f["sentence"] for f in self.findings(severity)]

    def commands(self) -> str:
        return "\n".join(f["commands"] or "" for f in self.findings())


def run_audit(workdir: Path, *args: str, env: dict[str, str] | None = None) -> AuditRun:
    """python -m pytest <args> checks/ with reports under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    report_dir = workdir / "reports"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "tests.netguard",
        "--rootdir",
        str(PROJECT),
        "-c",
        str(PROJECT / "pytest.ini"),
        "--report-dir",
        str(report_dir),
        *args,
        str(PROJECT / "checks"),
    ]
    environment = {**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})}
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    latest = report_dir / "latest"
    results = latest / "results.json"
    document = (
        json.loads(results.read_text(encoding="utf-8")) if results.exists() else {}
    )
    return AuditRun(
        done.returncode,
        done.stdout,
        done.stderr,
        document,
        latest.resolve() if latest.exists() else None,
        seconds,
    )


def lab_collector(lab):  # type: ignore[no-untyped-def]
    """A collector for a running lab, with the lab's shell, as --lab wires it."""
    from ewsready.collect import Collector
    from fixtures.audit import lab_settings, lab_shell

    settings = lab_settings(lab)
    return Collector(
        settings, [lab.public_root_bundle], "lab root", shell=lab_shell(lab, settings)
    )
