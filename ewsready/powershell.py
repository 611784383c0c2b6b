"""Values into PowerShell commands: one quoting function, safe for any string.

A value becomes a single-quoted literal, so `$(...)`, backticks and double quotes are
inert. PowerShell also closes a single-quoted string on the typographic quotes
U+2018..U+201B, so those are doubled like the ASCII one. Control and line-separator
characters are spelled as `[char]N` outside the quotes, so a value can never end a
line (and with it a comment) and start a command of its own; so are lone surrogates,
which a UTF-8 file cannot hold. A value with such characters becomes a parenthesised
concatenation that starts with a string, since PowerShell's + concatenates only when
its left operand is a string ([char] + [char] adds the code points).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

SINGLE_QUOTES = frozenset("'\u2018\u2019\u201a\u201b")


def _spelled_as_code(char: str) -> bool:
    """Characters kept out of the literal: line breaks, controls, format characters
    (bidi overrides) and lone surrogates. The zero-width joiner stays, for emoji."""
    category = unicodedata.category(char)
    return category in ("Cc", "Zl", "Zp", "Cf", "Cs") and char != "\u200d"


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def quote(value: object) -> str:
    """A PowerShell expression that evaluates to exactly `str(value)`, on one line."""
    text = str(value)
    parts: list[str] = []
    literal: list[str] = []

    def close_literal() -> None:
        if literal:
            parts.append("'" + "".join(literal) + "'")
            literal.clear()

    for char in text:
        if _spelled_as_code(char):
            close_literal()
            # [char] is one UTF-16 unit: characters beyond U+FFFF take two.
            for unit in _utf16_units(char):
                parts.append(f"[char]{unit}")
        elif char in SINGLE_QUOTES:
            literal.append(char * 2)
        else:
            literal.append(char)
    close_literal()

    if not parts:
        return "''"
    if not parts[0].startswith("'"):
        parts.insert(0, "''")
    if len(parts) == 1:
        return parts[0]
    return "(" + " + ".join(parts) + ")"


def quote_list(values: Iterable[object]) -> str:
    """A PowerShell array literal of quoted values: @('a', 'b')."""
    return "@(" + ", ".join(quote(v) for v in values) + ")"


def comment_text(value: object) -> str:
    """A value as plain text inside a '#' comment: a list becomes 'a, b', and every
    character that could end the line (or is not printable) becomes a space, so the
    comment stays one comment."""
    if isinstance(value, Iterable) and not isinstance(value, str):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    return "".join(c if c.isprintable() else " " for c in text)
