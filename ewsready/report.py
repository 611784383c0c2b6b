"""Report rendering: finding details, the summary, results.json and remediation.ps1.

HTML comes from Jinja2 templates with autoescaping on, so tenant-controlled strings
(names, addresses, certificate subjects) are always text. Links are http(s) only.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import markupsafe

from ewsready import __version__
from ewsready.catalogue import CatalogueError, remedy
from ewsready.findings import Finding, Severity
from ewsready.powershell import comment_text
from ewsready.text import without_bidi_overrides

log = logging.getLogger(__name__)

ENV = jinja2.Environment(
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

FINDING_TEMPLATE = ENV.from_string("""
<div class="ewsready-finding severity-{{ severity }}">
  <p class="sentence"><strong>{{ label }}:</strong> {{ sentence }}</p>
  {% if evidence %}
  <p>Evidence:</p>
  <ul class="evidence">{% for line in evidence %}<li>{{ line }}</li>{% endfor %}</ul>
  {% endif %}
  {% if why %}<p class="why"><strong>Why it matters:</strong> {{ why }}</p>{% endif %}
  {% if commands and repeated %}
  <p class="fix-repeated"><strong>Fix</strong> ({{ title }}): the same commands as
    for a finding above.</p>
  {% elif commands %}
  <p><strong>Fix</strong> ({{ title }}):</p>
  <pre class="fix">{{ commands }}</pre>
  {% endif %}
  {% if doc %}
  <p class="doc">Documentation:
    <a href="{{ doc }}" rel="noopener noreferrer">{{ doc }}</a></p>
  {% endif %}
</div>
""")

SUMMARY_TEMPLATE = ENV.from_string("""
<div class="ewsready-summary">
  <h2 class="verdict {{ 'ready' if ready else 'not-ready' }}">
    {{ verdict }} for the calendar service</h2>
  {% if detail %}<p class="verdict-detail">{{ detail[:1]|upper }}{{ detail[1:] }}.</p>
  {% endif %}
  <table>
    <tr><th>Started (UTC)</th><td>{{ started }}</td></tr>
    <tr><th>Checks</th><td>{{ counts_text }}</td></tr>
  </table>
  <div class="ewsready-findings">
  {% if actionable %}
    <h3>What to fix: {{ what_to_fix }}</h3>
    {% for fragment in actionable %}{{ fragment }}{% endfor %}
  {% endif %}
  {% if blocked %}
    <h3>Blocked until the above is fixed</h3>
    <ul>
    {% for sentence, count in blocked %}
      <li>{{ count }} check{{ '' if count == 1 else 's' }}: {{ sentence }}</li>
    {% endfor %}
    </ul>
  {% endif %}
  </div>
</div>
""")


SUMMARY_FIELDS = ("started",)
CSS_PATH = Path(__file__).parent / "data" / "report.css"


def verdict(meta: dict, results: Sequence[CheckResult]) -> str:
    """READY only when every check ran and none failed; otherwise say what is missing.

    NOT READY: a check failed, was blocked or could not evaluate. PARTIAL: no failure,
    but a selection (-m, -k) left checks out. INCOMPLETE: the run was interrupted.
    """
    if not results:
        return "NO CHECKS RUN"
    failing = not is_ready(results)
    if meta.get("interrupted"):
        return "NOT READY, INCOMPLETE" if failing else "INCOMPLETE"
    if failing:
        return "NOT READY"
    if meta.get("deselected"):
        return "PARTIAL"
    return "READY"


SIGNAL_NAMES = {"SIGINT": "Ctrl-C (SIGINT)"}


def verdict_detail(meta: dict, results: Sequence[CheckResult]) -> str:
    ran = len(results)
    selected = int(meta.get("selected", ran))
    total = selected + int(meta.get("deselected", 0))
    notes = []
    if meta.get("interrupted"):
        signal = meta.get("stopped_by")
        how = (
            f"stopped by {SIGNAL_NAMES.get(signal, signal)}"
            if signal
            else "interrupted"
        )
        notes.append(
            f"the run was {how} before every check finished: "
            f"{ran} of {selected} checks done"
        )
    # An offline audit leaves out the checks of the live endpoint by itself; only
    # what -m or -k left out beyond those is the user's selection.
    offline = int(meta.get("left_out_offline", 0))
    if offline:
        checks = (
            "check of the live endpoint is"
            if offline == 1
            else ("checks of the live endpoint are")
        )
        notes.append(f"{offline} {checks} left out in an offline audit")
    if total - offline != selected:
        what = "offline checks" if offline else "checks"
        notes.append(f"only {selected} of {total - offline} {what} were selected")
    if not results:
        notes.append("no check ran, so nothing was audited")
    if meta.get("access_assumed"):
        notes.append(
            f"no access mode was given, so {meta.get('access') or 'impersonation'} "
            "access was assumed (--access or EWSREADY_ACCESS sets it)"
        )
    if meta.get("audited_url"):
        notes.append(
            f"the URL given is not EWS; the signed-in checks used {meta['audited_url']}"
        )
    return "; ".join(notes)


def title(meta: dict, results: Sequence[CheckResult]) -> str:
    return (
        f"ewsready: {verdict(meta, results)} for the calendar service - "
        f"{meta.get('organisation', '')}"
    )


@dataclass(frozen=True)
class RenderedFinding:
    severity: Severity
    sentence: str
    evidence: tuple[str, ...]
    fix: str | None
    title: str | None
    why: str | None
    doc: str | None
    commands: str | None
    blocked_by: str | None
    subjects: tuple[str, ...]
    # Findings with the same key share one block in remediation.ps1.
    script_key: str | None = None

    def as_json(self) -> dict:
        return {
            "severity": self.severity.label,
            "sentence": self.sentence,
            "evidence": list(self.evidence),
            "fix": self.fix,
            "title": self.title,
            "why": self.why,
            "doc": self.doc,
            "commands": self.commands,
            "blocked_by": self.blocked_by,
            "subjects": list(self.subjects),
        }


def render(finding: Finding) -> RenderedFinding:
    """Fill the finding's fix from the catalogue with the finding's values."""
    script_key = None
    if finding.fix:
        entry = remedy(finding.fix)
        title, why, doc = entry.title, entry.why, entry.doc
        try:
            commands = entry.render(finding.values)
        except CatalogueError as exc:
            # A rule that forgot a value is a bug in ewsready; the run and the rest
            # of the report go on, and the page says what is missing.
            log.error("fix for %r could not be filled in: %s", finding.sentence, exc)
            commands = f"# The fix commands could not be filled in: {exc}."
        if entry.once_per and entry.once_per in finding.values:
            script_key = f"{entry.once_per}={finding.values[entry.once_per]}"
    else:
        title = why = doc = commands = None
    return RenderedFinding(
        finding.severity,
        without_bidi_overrides(finding.sentence),
        tuple(without_bidi_overrides(line) for line in finding.evidence),
        finding.fix,
        title,
        why,
        doc if doc and doc.startswith(("https://", "http://")) else None,
        commands,
        finding.blocked_by,
        finding.subjects,
        script_key or commands,
    )


def finding_html(item: RenderedFinding, repeated: bool = False) -> str:
    """A finding's block; `repeated` when its fix commands were shown above it."""
    return FINDING_TEMPLATE.render(
        repeated=repeated,
        severity=item.severity.name.lower(),
        label=item.severity.label.capitalize(),
        sentence=item.sentence,
        evidence=item.evidence,
        why=item.why,
        title=item.title,
        commands=item.commands,
        doc=item.doc,
    )


@dataclass
class CheckResult:
    nodeid: str
    name: str
    markers: tuple[str, ...]
    outcome: str  # pytest's: passed, failed, skipped
    severity: Severity
    findings: list[RenderedFinding] = field(default_factory=list)
    message: str = ""

    def as_json(self) -> dict:
        return {
            "nodeid": self.nodeid,
            "name": self.name,
            "markers": list(self.markers),
            "outcome": self.outcome,
            "severity": self.severity.label,
            "message": self.message,
            "findings": [f.as_json() for f in self.findings],
        }


def severity_of(outcome: str, findings: Sequence[RenderedFinding]) -> Severity:
    worst = max((f.severity for f in findings), default=Severity.PASS)
    if outcome == "failed" and worst < Severity.FAIL:
        return Severity.UNKNOWN  # failed without a finding: an error inside the check
    if outcome == "skipped" and worst < Severity.BLOCKED:
        return Severity.BLOCKED
    return worst


def counts(results: Iterable[CheckResult]) -> list[tuple[str, int]]:
    tally = Counter(r.severity for r in results)
    return [(s.label, tally[s]) for s in sorted(tally, reverse=True)]


def terminal_lines(results: Iterable[CheckResult]) -> list[str]:
    """One line per distinct finding at warning or above, blocked causes last; a
    sentence that several checks share (facts that could not be read, a root cause)
    is printed once, with the number of checks."""
    tally: Counter[tuple[Severity, str]] = Counter(
        (f.severity, f.sentence)
        for r in results
        for f in r.findings
        if f.severity >= Severity.WARN
    )
    ordered = sorted(tally, key=lambda key: key[0] == Severity.BLOCKED)
    lines = []
    for severity, sentence in ordered:
        count = tally[severity, sentence]
        checks = (
            ""
            if count == 1 and severity != Severity.BLOCKED
            else (f"{count} check{'' if count == 1 else 's'}: ")
        )
        lines.append(f"[{severity.label}] {checks}{sentence}")
    return lines


def is_ready(results: Iterable[CheckResult]) -> bool:
    return all(r.severity < Severity.BLOCKED for r in results)


def is_ready_run(meta: dict, results: Sequence[CheckResult]) -> bool:
    return verdict(meta, results) == "READY"


def what_to_fix(findings: int, fixes: int) -> str:
    """'8 findings, 6 distinct fixes': findings and the distinct fixes they need."""
    return (
        f"{findings} finding{'' if findings == 1 else 's'}, "
        f"{fixes} distinct fix{'' if fixes == 1 else 'es'}"
    )


def summary_html(meta: dict, results: Sequence[CheckResult]) -> str:
    """The verdict, the run's facts, then every finding an admin must act on."""
    findings = [f for r in results for f in r.findings]
    actionable = sorted(
        (
            f
            for f in findings
            if f.severity >= Severity.WARN and f.severity != Severity.BLOCKED
        ),
        key=lambda f: -f.severity,
    )
    blocked = Counter(f.sentence for f in findings if f.severity == Severity.BLOCKED)
    # Several findings can share one fix (two checks see the same missing scope):
    # its commands are shown once, and the heading counts fixes and findings apart.
    shown: set[str] = set()
    fragments = []
    keys: set[str] = set()
    for finding in actionable:
        repeated = bool(finding.commands) and finding.commands in shown
        if finding.commands:
            shown.add(finding.commands)
        # Counted by the key remediation.ps1 uses, so the page and the script agree
        # on what is one fix (one certificate request per host, say).
        key = finding.script_key or finding.commands
        if key:
            keys.add(key)
        fragments.append(markupsafe.Markup(finding_html(finding, repeated)))
    return SUMMARY_TEMPLATE.render(
        ready=is_ready_run(meta, results),
        verdict=verdict(meta, results),
        detail=verdict_detail(meta, results),
        counts_text=", ".join(f"{label}: {n}" for label, n in counts(results)),
        version=__version__,
        # Fragments built here by our own autoescaping template, so safe to insert.
        actionable=fragments,
        what_to_fix=what_to_fix(len(actionable), len(keys)),
        blocked=sorted(blocked.items()),
        **{k: v for k, v in meta.items() if k in SUMMARY_FIELDS},
    )


def results_json(meta: dict, results: Sequence[CheckResult]) -> str:
    document = {
        "ewsready": __version__,
        "ready": is_ready_run(meta, results),
        "verdict": verdict(meta, results),
        "counts": dict(counts(results)),
        **meta,
        "checks": [r.as_json() for r in results],
    }
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)


def remediation_ps1(meta: dict, results: Sequence[CheckResult]) -> str:
    """Every fix of the run, in check order; comments carry the findings."""
    lines = [
        "# ewsready remediation script",
        f"# Organisation: {_comment(meta.get('organisation', ''))}",
        f"# EWS URL: {_comment(meta.get('url', ''))}",
        f"# Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by ewsready "
        f"{__version__}.",
        "# Review every command before running it in the Exchange Management Shell.",
        "# The audit itself changed nothing. Commands without a mark only read. Each "
        "block",
        "# that changes the organisation starts with a '# Change:' comment: read it, "
        "then",
        "# run that block alone.",
        "",
    ]
    # One block per fix: findings with the same commands, or the same certificate
    # request file, share the first one's block, each named above it.
    blocks: dict[str, tuple[str, list[str]]] = {}
    for result in results:
        for finding in result.findings:
            if not finding.commands or finding.severity < Severity.WARN:
                continue
            key = finding.script_key or finding.commands
            header = f"# [{finding.severity.label}] {_comment(finding.sentence)}"
            if key not in blocks:
                blocks[key] = (finding.commands, [])
            if header not in blocks[key][1]:
                blocks[key][1].append(header)
    for commands, headers in blocks.values():
        lines.extend(headers)
        if len(headers) > 1:
            lines.append(f"# One fix for the {len(headers)} findings above:")
        lines.extend(commands.splitlines())
        lines.append("")
    if not blocks:
        lines.append("# Nothing to fix.")
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    """Text for a '#' comment line: no character that could end the line."""
    return comment_text(text)


def write_atomic(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Write to a temporary file beside path, then rename: readers never see half a
    file, and a failed write leaves no debris."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(
            handle, "w", encoding=encoding, errors="backslashreplace"
        ) as out:
            out.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# Windows PowerShell 5.1 reads a script without a byte-order mark in the ANSI code
# page; the BOM makes it read UTF-8, so quoted values stay exactly as written.
PS1_ENCODING = "utf-8-sig"
