"""The PowerShell the audit writes is inert: pasting a fix runs only its cmdlets.

Every fix command is parsed with the strict parser in tests/pwsh_parser.py and
compared with its catalogue template, itself rendered with marker values. The two
must have the same statements, cmdlets, parameters and operators; they may differ
only where the template has a value, and there the generated command must hold a
quoted value (a single-quoted literal, or quote()'s concatenation with [char]N, or
an @() array of those) that evaluates to exactly the tenant's string. So no tenant
value can stand in command position, inside a double-quoted string or a
subexpression, or leave the comment it was put in. In a comment that is prose a value
is plain text (powershell.comment_text): the comment must stay one comment holding
exactly that text. Commands an admin is told to uncomment ("# Change: Verb-Noun ...")
are checked like code.

Checked twice: every catalogue entry rendered directly with hostile values, and the
HTML report, results.json and remediation.ps1 of a lab audit of every scenario
(hostile_names among them).
"""

from __future__ import annotations

import codecs
import functools
import html
import re
from collections.abc import Sequence

import pytest

from ewsready import report
from ewsready.catalogue import PLACEHOLDER, Remedy, catalogue, remedy
from ewsready.findings import Finding, Severity
from ewsready.powershell import comment_text
from lab.scenario import scenario_names
from tests.pwsh_parser import (
    ArrayExpression,
    Comment,
    EvaluationError,
    Node,
    ParseError,
    Script,
    StringLiteral,
    command_names,
    evaluate_quoted,
    evaluate_quoted_list,
    match_template,
    parse,
    utf16,
)

MARKER = "ewsready-slot-"
MARKER_IN_TEXT = re.compile(r"'" + MARKER + r"([a-z_]+)'")
MARKER_IN_COMMENT = re.compile(MARKER + r"([a-z_]+)")
# A comment that holds a command for the admin to run by hand.
COMMENTED_COMMAND = re.compile(r"# Change: (?=[A-Z][a-z]+-[A-Z])")

Units = tuple[int, ...]
# A quoted value evaluates to UTF-16 units; a value in a prose comment is its text.
SlotValue = Units | list[Units] | str

HOSTILE = [
    "o'brien`$(Stop-Computer)@legacy.contoso.example",
    "x'; Stop-Computer; '",
    "x\u2019; Stop-Computer; \u2018",
    "\u201a\u201b'\u2018\u2019",
    "x' -Confirm:$false -Identity '*",
    '"; Stop-Computer; "',
    "\u201c$(Stop-Computer)\u201d",
    "$(Stop-Computer)",
    "${env:Path}",
    "@(Stop-Computer)",
    "{ Stop-Computer }",
    "& Stop-Computer",
    "| Stop-Computer",
    "&& Stop-Computer || Stop-Computer",
    "`\nStop-Computer",
    "a`",
    "#> Stop-Computer <#",
    "@'\nStop-Computer\n'@",
    "Ben\nRemove-Mailbox -Identity * -Confirm:$false",
    "a\r\nStop-Computer",
    "a\rStop-Computer",
    "\n",
    "\n\n",
    "\n5",
    "\x00",
    "\u2028Stop-Computer",
    "\u2029",
    "\u0085Stop-Computer",
    "<script>document.body.setAttribute('data-pwned','name')</script>Ana \u202eLópez",
    "\ufeff\u200f\u200d",
    "a\ud800b",
    "\U0001f600\U000e0041",
    "",
    "x" * 10_000,
]


def marker_name(node: Node) -> str | None:
    if isinstance(node, StringLiteral) and not node.here:
        match = MARKER_IN_TEXT.fullmatch(f"'{node.value}'")
        if match:
            return match.group(1)
    return None


@functools.cache
def template(fix_id: str) -> Script:
    """The fix's commands with a marker literal where each value goes."""
    entry: Remedy = remedy(fix_id)
    return parse(entry.render({name: MARKER + name for name in entry.values}))


def slot_value(node: Node) -> SlotValue:
    if isinstance(node, ArrayExpression):
        return evaluate_quoted_list(node)
    return evaluate_quoted(node)


def code_slots(expected: Node, generated: Node) -> list[tuple[str, SlotValue]]:
    """Compare structure; each slot must be a quoted value, nowhere it could run."""
    assert command_names(generated) == command_names(expected)
    found = []
    for slot in match_template(expected, generated, marker_name):
        assert not slot.in_command_name, slot
        assert not {"ExpandableString", "SubExpression"} & set(slot.ancestors), slot
        found.append((slot.name, slot_value(slot.node)))
    return found


def comment_slots(expected: Comment, generated: Comment) -> list[tuple[str, SlotValue]]:
    """A comment keeps its text and holds each value as plain text; a commented
    command is compared like code."""
    if COMMENTED_COMMAND.match(expected.text):
        assert COMMENTED_COMMAND.match(generated.text), generated.text
        prefix = len("# Change: ")
        return code_slots(parse(expected.text[prefix:]), parse(generated.text[prefix:]))
    pieces = MARKER_IN_COMMENT.split(expected.text)
    literals, names = pieces[0::2], pieces[1::2]
    pattern = "(.*)".join(re.escape(literal) for literal in literals)
    match = re.fullmatch(pattern, generated.text)
    assert match, f"{generated.text!r} does not follow {expected.text!r}"
    return list(zip(names, match.groups(), strict=True))


def check_fix(fix_id: str, commands: str) -> list[tuple[str, SlotValue]]:
    """Prove `commands`, made from the catalogue entry fix_id, inert; return the
    value found at each of the template's placeholders: those in code first, then
    those in comments, each in source order."""
    expected = template(fix_id)
    generated = parse(commands)
    found = code_slots(expected, generated)
    assert len(generated.comments) == len(expected.comments)
    for want, got in zip(expected.comments, generated.comments, strict=True):
        found += comment_slots(want, got)
    assert len(found) == len(PLACEHOLDER.findall(remedy(fix_id).commands))
    return found


def as_units(value: str | Sequence[str]) -> SlotValue:
    return utf16(value) if isinstance(value, str) else [utf16(v) for v in value]


def as_found(found: SlotValue, value: str | Sequence[str]) -> SlotValue:
    """What check_fix should have found for value: its text in a prose comment,
    else its UTF-16 units."""
    return comment_text(value) if isinstance(found, str) else as_units(value)


# --- the check itself ------------------------------------------------------------------


def test_check_fix_accepts_quoted_values():
    commands = remedy("address_not_primary").render(
        {"invited": "a\nb", "primary": "c'd"}
    )
    # The code's values first, then those in comments, each in source order.
    assert check_fix("address_not_primary", commands) == [
        ("primary", utf16("c'd")),
        ("primary", "c'd"),
        ("invited", "a b"),
        ("primary", utf16("c'd")),
        ("invited", utf16("a\nb")),
    ]


@pytest.mark.parametrize(
    "old, new",
    [
        ("'c''d' |", "'c''d'; Stop-Computer |"),
        ("'c''d' |", "$(Stop-Computer) |"),
        ("'c''d' |", '"$(Stop-Computer)" |'),
        ("'c''d' |", "('c' + (Stop-Computer)) |"),
        ("'c''d' |", "c |"),
        ("'c''d' |", "'c' -Confirm:$false |"),
        ("Get-Mailbox", "Remove-Mailbox"),
        ("# Invite", "Stop-Computer # Invite"),
        ("not a b.", "not a\nStop-Computer #."),
        ("not a b.", "not a b.\r$(Stop-Computer)"),
        ("-PrimarySmtpAddress ('a'", "-PrimarySmtpAddress ('a' + $x"),
        ("EmailAddresses", "EmailAddresses\nStop-Computer"),
    ],
)
def test_check_fix_refuses_anything_but_quoted_values(old, new):
    commands = remedy("address_not_primary").render(
        {"invited": "a\nb", "primary": "c'd"}
    )
    assert old in commands
    with pytest.raises((AssertionError, ParseError, EvaluationError)):
        check_fix("address_not_primary", commands.replace(old, new, 1))


# --- every catalogue entry, rendered with hostile values -----------------------------


def test_every_template_parses_and_names_its_cmdlets():
    for fix_id in catalogue():
        names = command_names(template(fix_id))
        assert names, fix_id  # every fix runs at least one cmdlet
        assert all(
            re.fullmatch(r"[A-Z][A-Za-z]+-[A-Z][A-Za-z]+|iisreset", n) for n in names
        )


@pytest.mark.parametrize("fix_id", sorted(catalogue()))
def test_every_fix_keeps_hostile_values_in_string_literals(fix_id):
    entry = remedy(fix_id)
    for offset in range(len(HOSTILE)):
        for as_list in (False, True):
            values: dict[str, str | list[str]] = {}
            for index, name in enumerate(entry.values):
                value = HOSTILE[(offset + index) % len(HOSTILE)]
                following = HOSTILE[(offset + index + 1) % len(HOSTILE)]
                values[name] = [value, following] if as_list else value
            commands = entry.render(values)

            found = check_fix(fix_id, commands)

            for name, value in found:
                assert value == as_found(value, values[name]), (name, values[name])


def test_a_remediation_script_of_every_fix_runs_only_their_cmdlets():
    hostile = "x\nStop-Computer\u2028$(Stop-Computer)\r\n# <#"
    findings = []
    for number, fix_id in enumerate(sorted(catalogue())):
        entry = remedy(fix_id)
        values = {
            n: HOSTILE[(number + i) % len(HOSTILE)] for i, n in enumerate(entry.values)
        }
        findings.append(
            report.render(
                Finding(Severity.FAIL, f"{hostile} {fix_id}", fix=fix_id, values=values)
            )
        )
    result = report.CheckResult(
        "checks/x.py::t", "t", (), "failed", Severity.FAIL, findings
    )
    text = report.remediation_ps1({"organisation": hostile, "url": hostile}, [result])

    script = parse(text)

    expected = [n for f in findings for n in command_names(parse(f.commands))]
    assert command_names(script) == expected
    assert len(script.statements) == sum(
        len(parse(f.commands).statements) for f in findings
    )
    # The header lines and each finding's sentence stay whole comments.
    comments = [c.text for c in script.comments]
    assert "# Organisation: x Stop-Computer $(Stop-Computer)  # <#" in comments
    for finding in findings:
        assert f"# [failure] x Stop-Computer $(Stop-Computer)  # <# {finding.fix}" in (
            comments
        )
    text.encode("utf-8")


# --- what a lab audit wrote ---------------------------------------------------------


@pytest.mark.parametrize("name", scenario_names())
def test_audit_outputs_hold_only_inert_fixes(scenario_run, name):
    run = scenario_run(name)
    assert run.run_dir is not None, run.stderr[-2000:]
    fixes = [f for f in run.findings() if f["commands"]]

    found = []
    for finding in fixes:
        found += check_fix(finding["fix"], finding["commands"])

    # remediation.ps1: UTF-8 with a byte-order mark; the same commands, nothing else.
    raw = (run.run_dir / "remediation.ps1").read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    text = raw[len(codecs.BOM_UTF8) :].decode("utf-8")
    script = parse(text)
    blocks = list(dict.fromkeys(f["commands"] for f in fixes if f["commands"] in text))
    assert command_names(script) == [n for b in blocks for n in command_names(parse(b))]
    assert len(script.statements) == sum(len(parse(b).statements) for b in blocks)
    if fixes:
        assert blocks

    # report.html shows exactly those commands.
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    shown = {
        html.unescape(block)
        for block in re.findall(r'<pre class="fix">(.*?)</pre>', page, re.S)
    }
    assert shown == {f["commands"] for f in fixes}

    if name == "hostile_names":
        alias = "o'brien`$(Stop-Computer)@legacy.contoso.example"
        assert ("invited", utf16(alias)) in found
        header = next(c.text for c in script.comments if "Organisation" in c.text)
        assert "inj-org" in header
