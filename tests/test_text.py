import pytest

from ewsready.text import printable, without_bidi_overrides


@pytest.mark.parametrize(
    "text, shown",
    [
        ("plain", "plain"),
        ("\x1b[2A\x1b[32mREADY", "\\x1b[2A\\x1b[32mREADY"),
        ("a\x00b", "a\\x00b"),
        ("rtl\u202eevil", "rtl\\u202eevil"),
        ("Chloé", "Chloé"),
    ],
)
def test_printable(text, shown):
    assert printable(text) == shown


def test_bidi_overrides_are_shown_not_applied():
    assert without_bidi_overrides("Ana\u202eevil") == "Ana<U+202E>evil"
