import re

import pytest

from ewsready.catalogue import (
    CatalogueError,
    catalogue,
    is_prose_comment,
    parse_catalogue,
)

GOOD = {
    "title": "t",
    "why": "w",
    "doc": "https://learn.microsoft.com/x",
    "values": ["upn"],
    "commands": "Get-User {upn}",
}


def test_shipped_catalogue_is_valid_and_every_entry_renders():
    entries = catalogue()
    assert len(entries) >= 20
    for entry in entries.values():
        rendered = entry.render({name: f"value-of-{name}" for name in entry.values})
        for name in entry.values:
            assert f"value-of-{name}" in rendered
        for line in rendered.splitlines():
            if is_prose_comment(line):
                continue
            for name in entry.values:
                if f"value-of-{name}" in line:
                    assert f"'value-of-{name}'" in line, (entry.id, line)


PROSE = {**GOOD, "commands": "# Expires {when}, see {names}.\nGet-User {upn}"}


def test_values_in_a_prose_comment_read_as_text_on_one_line():
    entry = parse_catalogue({"x": {**PROSE, "values": ["when", "names", "upn"]}}, "t")[
        "x"
    ]
    rendered = entry.render(
        {
            "when": "2026-12-16 18:07 UTC",
            "names": ["a.example", "b\nStop-Computer"],
            "upn": "o'brien",
        }
    )
    assert rendered.splitlines() == [
        "# Expires 2026-12-16 18:07 UTC, see a.example, b Stop-Computer.",
        "Get-User 'o''brien'",
    ]


def test_values_in_a_commented_command_stay_quoted():
    entry = parse_catalogue(
        {
            "x": {
                **GOOD,
                "commands": "# Change: Set-User -Identity {upn}\n"
                "# Change: turn it on for {upn}:\nGet-User {upn}",
            }
        },
        "t",
    )["x"]
    assert entry.render({"upn": "a'b\nc"}).splitlines() == [
        "# Change: Set-User -Identity ('a''b' + [char]10 + 'c')",
        "# Change: turn it on for a'b c:",
        "Get-User ('a''b' + [char]10 + 'c')",
    ]


def test_once_per_names_a_value():
    [entry] = parse_catalogue({"x": {**GOOD, "once_per": "upn"}}, "t").values()
    assert entry.once_per == "upn"
    with pytest.raises(CatalogueError, match="once_per names 'file'"):
        parse_catalogue({"x": {**GOOD, "once_per": "file"}}, "t")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"doc": "http://example.invalid"}, "doc must be an https link"),
        ({"values": []}, "placeholders ['upn'] differ from values []"),
        ({"commands": "Get-User {upn} {host}"}, "placeholders ['host', 'upn'] differ"),
        ({"severity": "high"}, "unknown key(s) severity"),
        ({"why": None}, "why missing or not str"),
        ({"commands": "   "}, "has no commands"),
    ],
)
def test_malformed_entries_are_rejected(change, message):
    entry = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(CatalogueError, match=re.escape(message)):
        parse_catalogue({"x": entry}, "test.toml")


def test_missing_value_is_a_programming_error():
    [entry] = parse_catalogue({"x": GOOD}, "t").values()
    with pytest.raises(CatalogueError, match="needs value"):
        entry.render({})


def test_values_are_quoted_never_pasted():
    [entry] = parse_catalogue({"x": GOOD}, "t").values()
    assert (
        entry.render({"upn": "x'; Remove-Mailbox -Identity *; '"})
        == "Get-User 'x''; Remove-Mailbox -Identity *; '''"
    )


CHANGING_VERBS = (
    "Set-",
    "New-",
    "Add-",
    "Remove-",
    "Enable-",
    "Import-",
    "Restart-",
    "Unlock-",
    "Disable-",
    "Stop-",
    "Start-",
)


def test_every_change_is_announced_by_a_change_comment():
    """Read-only lines run as they are; any line that changes something follows a
    '# Change' comment in the same block."""
    for entry in catalogue().values():
        announced = False
        for line in entry.commands.splitlines():
            stripped = line.strip()
            if stripped.startswith("# Change"):
                announced = True
            elif not stripped:
                announced = False
            elif not stripped.startswith("#"):
                commands = [
                    part.strip() for part in stripped.replace("|", ";").split(";")
                ]
                changes = [
                    c
                    for c in commands
                    if c.startswith(CHANGING_VERBS) and not c.startswith("Set-Content")
                ]
                changes += [
                    c
                    for c in stripped.split()
                    if c.startswith(CHANGING_VERBS) and c != "Set-Content"
                ]
                assert (
                    announced or not changes
                ), f"{entry.id}: unannounced change: {line}"
