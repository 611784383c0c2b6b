"""Every place the audit parses XML it did not write, against entity attacks.

The sites, and where each is tested:
- EWS answers, screened first (ewsready.probes.ews_answers.screen_soap and its strict
  parser), then read by exchangelib's own parser (exchangelib.util.to_xml): here, and
  end to end in test_hostile_ews.py and test_hostile_transport.py;
- Export-Clixml files (ewsready.clixml): tests/test_clixml.py refuses every document
  type declaration and proves that external references are never fetched;
- multi-valued properties pypsrp leaves as raw <LST> XML (ewsready.probes.shell
  ._list_items): here;
- WinRM answers, parsed by pypsrp with xml.etree.ElementTree (expat): here, as pypsrp
  calls it. This is the one site that expands internal entities (bounded by expat's
  amplification limit, so a bomb costs tens of megabytes before it is refused);
  refusing DTDs in WinRM answers before pypsrp sees them belongs in the shell probe's
  transport, which this suite leaves to the WinRM work;
- the lab's own parsing of requests (lab/ews_soap.py): tests/test_lab_ews.py.

For each: a "billion laughs" DTD is never expanded, and a SYSTEM entity or external
DTD naming a local file or a URL on a loopback listener the test watches is never
read or fetched.
"""

from __future__ import annotations

import socket
import time
import tracemalloc
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator

import pytest
from exchangelib.util import to_xml
from lxml import etree

from ewsready.probes.ews_answers import screen_soap, strict_parser
from ewsready.probes.shell import _list_items

with open("/etc/passwd", encoding="utf-8") as _passwd:
    SECRET_LINE = _passwd.readline().strip()  # "root:x:0:0:..." on any Linux


def laughs(root: str, body: str = "") -> str:
    """Ten levels of ten references each: 10**9 'lol's when expanded."""
    levels = ['<!ENTITY l0 "lol">'] + [
        f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10)
    ]
    body = body or f"<{root}>&l9;</{root}>"
    return f'<?xml version="1.0"?><!DOCTYPE {root} [{"".join(levels)}]>{body}'


def external(root: str, url: str, kind: str, inner: str = "&x;") -> str:
    """A document whose DTD names a file or a URL; `inner` is the root's content."""
    if kind == "file":
        return (
            f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            f"<{root}>{inner}</{root}>"
        )
    if kind == "entity":
        return f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "{url}">]><{root}>{inner}</{root}>'
    if kind == "parameter":
        return f'<!DOCTYPE {root} [<!ENTITY % p SYSTEM "{url}"> %p;]><{root}/>'
    return f'<!DOCTYPE {root} SYSTEM "{url}"><{root}>a</{root}>'  # external subset


@pytest.fixture
def watched() -> Iterator[tuple[str, Callable[[], None]]]:
    """A URL on loopback and a function asserting nobody ever connected to it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)

        def never_called() -> None:
            with pytest.raises(BlockingIOError):
                listener.accept()

        yield f"http://127.0.0.1:{listener.getsockname()[1]}/evil", never_called


def cheap(parse: Callable[[], object], memory: int = 20 * 1024 * 1024) -> object:
    """parse() within seconds and `memory` bytes, whatever it returns or raises."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        try:
            result: object = parse()
        except Exception as exc:  # noqa: BLE001 - refusing is one good outcome
            result = exc
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Generous for a loaded machine (tracemalloc slows expat down too); expanded, a
    # billion laughs takes minutes and gigabytes.
    assert elapsed < 5.0
    assert peak < memory, peak
    return result


def text_of(result: object) -> str:
    if isinstance(result, Exception):
        return str(result)
    if isinstance(result, etree._ElementTree):
        result = result.getroot()
    if isinstance(result, etree._Element | ElementTree.Element):
        return "".join(result.itertext())
    return repr(result)


KINDS = ["file", "entity", "parameter", "subset"]


# --- EWS answers: the screen, then exchangelib ---------------------------------------


def test_screen_refuses_entity_bombs_before_parsing():
    envelope = '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"/>'
    body = laughs("s:Envelope", envelope).encode()
    code, _ = cheap(lambda: screen_soap(200, "text/xml", body))
    assert code == "DocumentType"


@pytest.mark.parametrize("kind", KINDS)
def test_screen_refuses_external_entities(kind, watched):
    url, never_called = watched
    code, _ = screen_soap(200, "text/xml", external("s", url, kind).encode())
    assert code == "DocumentType"
    never_called()


def test_strict_parser_does_not_expand_on_its_own():
    """Behind the prolog check, the strict parser itself expands nothing."""
    result = cheap(lambda: etree.fromstring(laughs("s").encode(), strict_parser()))
    assert "lollol" not in text_of(result)


@pytest.mark.parametrize("kind", KINDS)
def test_strict_parser_fetches_nothing(kind, watched):
    url, never_called = watched
    result = cheap(
        lambda: etree.fromstring(external("s", url, kind).encode(), strict_parser())
    )
    assert SECRET_LINE not in text_of(result)
    never_called()


def test_exchangelib_parser_does_not_expand():
    """exchangelib parses with huge_tree=True but resolve_entities=False."""
    result = cheap(lambda: to_xml(laughs("s").encode()))
    assert "lollol" not in text_of(result)


@pytest.mark.parametrize("kind", KINDS)
def test_exchangelib_parser_fetches_nothing(kind, watched):
    url, never_called = watched
    result = cheap(lambda: to_xml(external("s", url, kind).encode()))
    assert SECRET_LINE not in text_of(result)
    never_called()


# --- raw <LST> fragments from pypsrp --------------------------------------------------


def test_list_items_do_not_expand():
    fragment = laughs("LST", "<LST><S>&l9;</S></LST>")
    items = cheap(lambda: _list_items(fragment))
    assert "lollol" not in "".join(items)


@pytest.mark.parametrize("kind", KINDS)
def test_list_items_fetch_nothing(kind, watched):
    url, never_called = watched
    # An item's text is where the entity would land: <LST><S>&x;</S></LST>.
    items = cheap(lambda: _list_items(external("LST", url, kind, "<S>&x;</S>")))
    assert SECRET_LINE not in "".join(items)
    never_called()


# --- WinRM answers in pypsrp (ElementTree over expat) ---------------------------------


def test_pypsrp_parser_stops_entity_bombs():
    """ElementTree expands internal entities, and pypsrp offers no switch; expat (2.4
    and later) stops the amplification once it passes its limit (a factor of 100
    beyond the first 8 MiB), so pypsrp gets a ParseError after tens of megabytes, not
    gigabytes. The WinRM side does not screen DTDs out before this parser; see the
    module docstring."""
    result = cheap(lambda: ElementTree.fromstring(laughs("s")), 128 * 1024 * 1024)
    assert isinstance(result, ElementTree.ParseError)
    assert "amplification" in str(result)


@pytest.mark.parametrize("kind", KINDS)
def test_pypsrp_parser_fetches_nothing(kind, watched):
    url, never_called = watched
    result = cheap(lambda: ElementTree.fromstring(external("s", url, kind)))
    assert SECRET_LINE not in text_of(result)
    never_called()
