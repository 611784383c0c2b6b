"""Text from servers and tenants, made safe to show.

Server answers (Location headers, page titles) and tenant data (display names) can hold
terminal escape sequences or bidirectional overrides. For a terminal they are spelled
out (\\x1b); in the HTML page the bidi controls, which would reorder the words after
them, are shown as <U+202E>.
"""

from __future__ import annotations

import re
import unicodedata

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# A full stop that ends a sentence: followed by a space or the end, and not the end of
# an abbreviation such as "e.g." or "i.e.".
SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)\.(?=\s|$)")


def printable(text: str, keep: str = "") -> str:
    """For a terminal: control and format characters spelled as escapes (but those in
    `keep`, e.g. the line breaks of a log message)."""
    out = []
    for char in str(text):
        if (
            unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")
            and char != "\u200d"
            and char not in keep
        ):
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def without_bidi_overrides(text: str) -> str:
    """For the page and results.json: bidi controls and control characters (but line
    breaks and tabs, which later steps flatten) shown as code points, not applied."""
    return "".join(
        (
            f"<U+{ord(c):04X}>"
            if c in BIDI_CONTROLS
            or (unicodedata.category(c) == "Cc" and c not in "\r\n\t")
            else c
        )
        for c in str(text)
    )


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring, its lines joined: the name of a check."""
    paragraph = " ".join(doc.strip().split("\n\n", 1)[0].split())
    end = SENTENCE_END.search(paragraph)
    return paragraph[: end.end()] if end else paragraph
