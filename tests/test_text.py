import pytest

from ewsready.text import first_sentence, printable, without_bidi_overrides


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


@pytest.mark.parametrize(
    "doc, name",
    [
        ("TLS 1.2 or later is negotiated.", "TLS 1.2 or later is negotiated."),
        (
            "A 401 while Basic is offered means a wrong, expired or locked password;"
            " Active\n    Directory, when it can be read, says which.",
            "A 401 while Basic is offered means a wrong, expired or locked password;"
            " Active Directory, when it can be read, says which.",
        ),
        (
            "https://HOST/EWS/Exchange.asmx, the path SOAP goes to. More detail.",
            "https://HOST/EWS/Exchange.asmx, the path SOAP goes to.",
        ),
        ("Names, e.g. rooms. Then more.", "Names, e.g. rooms."),
        ("No full stop\n\nA second paragraph.", "No full stop"),
        ("  One line.\n\n  Details.", "One line."),
    ],
)
def test_first_sentence_of_a_docstring(doc, name):
    assert first_sentence(doc) == name


def test_control_characters_are_shown_as_code_points_in_the_page():
    from ewsready.text import without_bidi_overrides

    assert without_bidi_overrides("svc\x1b]0;PWNED\x07@x\n\tend") == (
        "svc<U+001B>]0;PWNED<U+0007>@x\n\tend"
    )
