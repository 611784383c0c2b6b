"""Bodies for the lab's hostile EWS answers (the scenario's `hostile` knob).

Each takes the answer the lab would have sent and spoils it the way a broken or
hostile front end would: an IIS error page or 503 page instead of SOAP, the envelope
cut off mid-element, padded to tens of megabytes, or carrying a DTD whose entities
nest ("billion laughs") or name a file and a URL. The padded body is a `LargeBody`
written in chunks, so the lab never holds the whole of it in memory.

The transport behaviours (black hole, slow drip, reset) need no body of their own;
lab/ews.py applies them where it writes the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lab import ews_pages
from lab.scenario import TRANSPORT_HOSTILITY

TRANSPORT_BEHAVIOURS = frozenset(TRANSPORT_HOSTILITY)
LAUGHS_DEPTH = 10  # entity levels; expanded, the innermost text appears 10**9 times
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class LargeBody:
    """head, then filler bytes up to `size` with the tail, made on the way out."""

    head: bytes
    tail: bytes
    size: int
    filler: bytes = b"x"

    def __len__(self) -> int:
        return self.size

    def chunks(self) -> Iterator[bytes]:
        yield self.head
        left = self.size - len(self.head) - len(self.tail)
        block = self.filler * _CHUNK
        while left > 0:
            piece = block[: min(left, len(block))]
            left -= len(piece)
            yield piece
        yield self.tail


def error_page() -> bytes:
    """What IIS sends when the EWS application itself crashed."""
    return ews_pages.html_page(
        "Runtime Error",
        "Server Error in '/EWS' Application.",
        "An application error occurred on the server.",
    )


def unavailable_page() -> bytes:
    """What IIS (or a load balancer) sends with 503."""
    return ews_pages.html_page(
        "Service Unavailable", "HTTP Error 503. The service is unavailable."
    )


def cut_off(envelope: bytes) -> bytes:
    """The answer stopped halfway, inside an element."""
    body = envelope.index(b"<s:Body>")
    return envelope[: body + (len(envelope) - body) // 2]


def padded(envelope: bytes, size: int) -> LargeBody:
    """The answer with a comment inside its body that makes it `size` bytes long."""
    body = envelope.index(b"<s:Body>") + len(b"<s:Body>")
    head = envelope[:body] + b"<!-- "
    tail = b" -->" + envelope[body:]
    return LargeBody(head, tail, max(size, len(head) + len(tail)))


def _with_doctype(envelope: bytes, declarations: str, reference: str) -> bytes:
    """The answer with a DTD after its XML declaration and `reference` (entity
    references) as the text of a note in its SOAP header."""
    declaration_end = envelope.index(b"?>") + 2 if envelope.startswith(b"<?") else 0
    header = envelope.index(b"<s:Header>") + len(b"<s:Header>")
    note = ('<Note xmlns="urn:ewsready:lab">' + reference + "</Note>").encode()
    return (
        envelope[:declaration_end]
        + f"\n<!DOCTYPE s:Envelope {declarations}>\n".encode()
        + envelope[declaration_end:header]
        + note
        + envelope[header:]
    )


def with_entity_bomb(envelope: bytes) -> bytes:
    """A DTD of nested entities: each level ten references to the one below."""
    levels = ['<!ENTITY lol0 "lol">']
    for level in range(1, LAUGHS_DEPTH):
        levels.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return _with_doctype(
        envelope, "[" + "".join(levels) + "]", f"&lol{LAUGHS_DEPTH - 1};"
    )


def with_external_entities(envelope: bytes, url: str = "") -> bytes:
    """A DTD whose entities are a local file and, when given, a URL (which is also
    named as an external DTD subset)."""
    declarations = ['<!ENTITY leak SYSTEM "file:///etc/passwd">']
    references = "&leak;"
    subset = ""
    if url:
        quoted = url.replace('"', "%22")  # a system literal cannot hold its quote
        declarations.append(f'<!ENTITY fetch SYSTEM "{quoted}">')
        references += "&fetch;"
        subset = f'SYSTEM "{quoted}" '
    return _with_doctype(
        envelope, subset + "[" + "".join(declarations) + "]", references
    )
