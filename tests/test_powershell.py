import pytest

from ewsready.powershell import quote, quote_list


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
        ("\u2028x", "([char]8232 + 'x')"),
        ("Ana López", "'Ana López'"),
        (
            "\u202eevil",
            "([char]8238 + 'evil')",
        ),  # right-to-left override shown as a code
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
