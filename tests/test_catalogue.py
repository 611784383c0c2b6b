import re

import pytest

from ewsready.catalogue import CatalogueError, catalogue, parse_catalogue

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
            assert f"'value-of-{name}'" in rendered or "@('v" in rendered


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
