"""Run the audit the way a user does, in a subprocess guarded to loopback, once per
scenario per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# A real Exchange 2016 export (microsoft/CSS-Exchange, MIT; see its README).
REAL_EXPORTS = PROJECT / "tests" / "data" / "exchange-clixml"
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


def audit_command(report_dir: Path, *args: str) -> list[str]:
    """python -m pytest <args> checks/, guarded to loopback, reports under report_dir."""
    return [
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


def audit_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(PROJECT),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }


def finished_run(
    report_dir: Path, returncode: int, stdout: str, stderr: str, seconds: float = 0.0
) -> AuditRun:
    latest = report_dir / "latest"
    results = latest / "results.json"
    document = (
        json.loads(results.read_text(encoding="utf-8")) if results.exists() else {}
    )
    return AuditRun(
        returncode,
        stdout,
        stderr,
        document,
        latest.resolve() if latest.exists() else None,
        seconds,
    )


def run_audit(workdir: Path, *args: str, env: dict[str, str] | None = None) -> AuditRun:
    """python -m pytest <args> checks/ with reports under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    report_dir = workdir / "reports"
    started = time.monotonic()
    done = subprocess.run(
        audit_command(report_dir, *args),
        cwd=workdir,
        env=audit_environment(env),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    return finished_run(report_dir, done.returncode, done.stdout, done.stderr, seconds)


class RunningAudit:
    """An audit started in the background, to be watched and signalled as it runs."""

    def __init__(
        self, workdir: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.report_dir = workdir / "reports"
        self.process = subprocess.Popen(
            audit_command(self.report_dir, *args),
            cwd=workdir,
            env=audit_environment(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._output: list[bytes] = []
        self._errors: list[bytes] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            for stream, sink in (
                (self.process.stdout, self._output),
                (self.process.stderr, self._errors),
            )
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, sink: list[bytes]) -> None:  # type: ignore[no-untyped-def]
        for chunk in iter(lambda: stream.read1(65536), b""):
            with self._lock:
                sink.append(chunk)

    @property
    def stdout(self) -> str:
        with self._lock:
            return b"".join(self._output).decode("utf-8", "replace")

    def wait_for(self, text: str, timeout: float = 120.0) -> None:
        """Until the audit has printed text; fails if it ends or the time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.stdout:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(
                    f"the audit never printed {text!r}:\n{self.stdout[-3000:]}"
                )
            time.sleep(0.05)

    def finish(self, timeout: float = 120.0) -> AuditRun:
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for reader in self._readers:
                reader.join(10)
        with self._lock:
            errors = b"".join(self._errors).decode("utf-8", "replace")
        return finished_run(
            self.report_dir, self.process.returncode, self.stdout, errors
        )


def lab_collector(lab):  # type: ignore[no-untyped-def]
    """A collector for a running lab, with the lab's shell, as --lab wires it."""
    from ewsready.collect import Collector
    from fixtures.audit import lab_settings, lab_shell

    settings = lab_settings(lab)
    return Collector(
        settings, [lab.public_root_bundle], "lab root", shell=lab_shell(lab, settings)
    )
