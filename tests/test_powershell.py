"""quote() and quote_list(): every value comes back exactly, on one line, as one
argument, whatever it holds. Checked with the strict parser in tests/pwsh_parser.py,
which evaluates the quoted text with PowerShell's own rules."""

from __future__ import annotations

import random
import unicodedata

import pytest

from ewsready.powershell import quote, quote_list
from tests.pwsh_parser import (
    Command,
    Parameter,
    Pipeline,
    command_names,
    evaluate_quoted,
    evaluate_quoted_list,
    parse,
    parse_expression,
    utf16,
)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("svc@contoso.example", "'svc@contoso.example'"),
        ("", "''"),
        ("o'brien@contoso.example", "'o''brien@contoso.example'"),
        (
            "a\u2019b",
            "'a\u2019\u2019b'",
        ),  # PowerShell ends strings on typographic quotes too
        ("$(Remove-Mailbox x)", "'$(Remove-Mailbox x)'"),
        ("`whoami`", "'`whoami`'"),
        ('say "hi"', "'say \"hi\"'"),
        ("line1\nRemove-Mailbox", "('line1' + [char]10 + 'Remove-Mailbox')"),
        ("a\r\n", "('a' + [char]13 + [char]10)"),
        # A [char] on the left of + would add code points: start with a string.
        ("\u2028x", "('' + [char]8232 + 'x')"),
        ("\n", "('' + [char]10)"),
        ("\n\n", "('' + [char]10 + [char]10)"),
        ("Ana López", "'Ana López'"),
        (
            "\u202eevil",
            "('' + [char]8238 + 'evil')",
        ),  # right-to-left override shown as a code
        # A lone surrogate cannot be written to a UTF-8 file; it is spelled as a code.
        ("a\ud800", "('a' + [char]55296)"),
    ],
)
def test_quote(value, expected):
    assert quote(value) == expected


def test_quoted_values_stay_on_one_line():
    for value in ["a\nb", "a\rb", "a\x0bb", "a\x0cb", "a\x85b", "a\u2029b"]:
        assert "\n" not in quote(value) and "\r" not in quote(value)


def test_quote_list():
    assert quote_list(["a@x", "b'c@x"]) == "@('a@x', 'b''c@x')"
    assert quote_list([]) == "@()"


def test_characters_beyond_the_basic_plane_take_two_char_units():
    # U+E0041 (a tag character, format category): [char] holds one UTF-16 unit.
    assert quote("a\U000e0041b") == "('a' + [char]56128 + [char]56385 + 'b')"


# --- round trips through the parser ---------------------------------------------------

# Characters that end strings, lines, comments or statements somewhere in PowerShell,
# or that show text other than what runs.
NASTY = (
    "'\u2018\u2019\u201a\u201b\"\u201c\u201d\u201e$`(){}[];|&#<>@,.=+-\u2013\u2014"
    "\u2015 \t\u00a0\x00\r\n\x0b\x0c\x85\u2028\u2029\u202e\u202d\u200f\u200d\ufeff"
    "\ud800\udbff\udc00\udfff\U0001f600\U000e0041aZ9_\\/:*?!%é"
)

ADVERSARIAL = [
    "",
    "plain@contoso.example",
    "'",
    "''",
    "\u2018",
    "\u2019",
    "\u201a",
    "\u201b",
    "\u2018\u2019\u201a\u201b'",
    "x\u2019; Stop-Computer; \u2018",
    "x'; Stop-Computer; '",
    "x' + (Stop-Computer) + '",
    '"',
    "\u201c$(Stop-Computer)\u201d",
    "$(Stop-Computer)",
    "${env:Path}",
    "$x",
    "@(Stop-Computer)",
    "@splat",
    "{ Stop-Computer }",
    "& Stop-Computer",
    "; Stop-Computer",
    "| Stop-Computer",
    "&& Stop-Computer",
    "|| Stop-Computer",
    "`",
    "`n",
    "a`",
    "# not a comment",
    "<# x",
    "#>",
    "@'",
    "'@",
    "\x00",
    "\r",
    "\n",
    "\r\n",
    "\n\n",
    "\n5",
    "5\n",
    "a\nStop-Computer",
    "a\r\nStop-Computer",
    "\u2028",
    "\u2029",
    "\u0085",
    "\u0085Stop-Computer",
    "\u202e",
    "\ufeff",
    "\u200d",
    "\ud800",
    "\udfff",
    "a\ud800b",
    "\udc00\ud800",
    "\U0001f600",
    "\U000e0041",
    "Ana \u202eLópez",
    "<script>alert(1)</script>",
    "a" * 10_000,
    "\u2019" * 10_000,
    "'\n" * 5_000,
    NASTY,
    NASTY * 100,
]


def is_code_only(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def assert_round_trip(value: str) -> None:
    quoted = quote(value)
    units = utf16(value)

    # One line, nothing invisible or unencodable: only quote()'s own [char] codes.
    assert not any(is_code_only(c) and c != "\u200d" for c in quoted), quoted[:200]
    quoted.encode("utf-8")

    # As an expression it is a quoted value that evaluates to the value.
    assert evaluate_quoted(parse_expression(quoted)) == units

    # As an argument it is exactly one argument of the intended cmdlet.
    script = parse(f"Set-Mailbox -Identity {quoted} -WhatIf")
    assert command_names(script) == ["Set-Mailbox"]
    (pipeline,) = script.statements
    assert isinstance(pipeline, Pipeline)
    (command,) = pipeline.elements
    assert isinstance(command, Command)
    identity, argument, what_if = command.elements
    assert identity == Parameter("Identity", None, span=(0, 0))
    assert what_if == Parameter("WhatIf", None, span=(0, 0))
    assert evaluate_quoted(argument) == units

    # In a comment it stays in the comment.
    script = parse(f"# {quoted}\nGet-Mailbox")
    assert command_names(script) == ["Get-Mailbox"]
    assert [c.text for c in script.comments] == [f"# {quoted}"]


@pytest.mark.parametrize("value", ADVERSARIAL, ids=[ascii(v)[:40] for v in ADVERSARIAL])
def test_quote_round_trips(value):
    assert_round_trip(value)


def test_quote_round_trips_typographic_quotes_one_by_one():
    for quote_char in "'\u2018\u2019\u201a\u201b":
        for value in (quote_char, f"a{quote_char}b", quote_char * 3 + "x"):
            assert_round_trip(value)


def test_quote_round_trips_values_that_are_not_strings():
    assert evaluate_quoted(parse_expression(quote(443))) == utf16("443")


@pytest.mark.parametrize(
    "values",
    [[], ["one"], ADVERSARIAL[:20], ADVERSARIAL[20:45], ADVERSARIAL[45:]],
    ids=["empty", "one", "first", "middle", "last"],
)
def test_quote_list_round_trips(values):
    quoted = quote_list(values)
    assert evaluate_quoted_list(parse_expression(quoted)) == [utf16(v) for v in values]
    script = parse(f"New-ExchangeCertificate -DomainName {quoted} -KeySize 2048")
    assert command_names(script) == ["New-ExchangeCertificate"]
    (command,) = script.statements[0].elements
    assert len(command.elements) == 4
    assert evaluate_quoted_list(command.elements[1]) == [utf16(v) for v in values]


def test_quote_round_trips_random_unicode():
    """Seeded fuzzing: strings of hostile characters and arbitrary code points
    (lone surrogates and astral characters included) come back exactly."""
    rng = random.Random(20260412)
    for _ in range(3000):
        length = rng.choice((1, 2, 3, 8, 30))
        chars = [
            rng.choice(NASTY) if rng.random() < 0.6 else chr(rng.randrange(0x110000))
            for _ in range(length)
        ]
        assert_round_trip("".join(chars))
    for _ in range(3):
        assert_round_trip("".join(rng.choice(NASTY) for _ in range(10_000)))
