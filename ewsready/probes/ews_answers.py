"""What the audit accepts as an EWS answer, and how it words an answer it could not use.

exchangelib reads SOAP with a forgiving lxml parser (recover=True, huge_tree=True;
entities stay unresolved and nothing is fetched). Before it gets there, every answer
to an EWS request passes `EwsAdapter`: read whole within the request's deadline and
size cap (ewsready.transport.LimitedAdapter), and, when its status is one that
carries SOAP (200 or 500), screened by `screen_soap`: not empty, XML rather than an
HTML page, no document type declaration (SOAP forbids one, and it is where entity
bombs and external entities live), well-formed under a strict parser that resolves
no entity, loads no DTD, opens no connection and keeps libxml2's size limits, and a
SOAP envelope at the root. An answer that fails is refused with an `AnswerFault`
naming what the server sent.

exchangelib folds these faults, timeouts and resets into its own errors, sometimes
relabelled as ErrorServerBusy; `busy_signal` (and ewsready.transport.diagnose) look
through that chain so that only a real busy answer (an ErrorServerBusy fault, or HTTP
503) is waited out, and everything else is reported as what happened on the wire.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import re
import time

import urllib3
from exchangelib import FailFast
from exchangelib.errors import ErrorServerBusy, ErrorTimeoutExpired
from lxml import etree

from ewsready.transport import AnswerFault, LimitedAdapter, causes

log = logging.getLogger(__name__)

SOAP_ENVELOPE = "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
SOAP_STATUSES = (200, 500)  # the statuses Exchange sends SOAP with
TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


class UnusableAnswer(AnswerFault):
    """An answer that arrived whole but is not SOAP the audit will parse."""

    def __init__(self, url: str, code: str, what: str) -> None:
        super().__init__(url, what)
        self.code = code


class ServiceUnavailable(ErrorServerBusy):
    """HTTP 503: the server, or a load balancer in front of it, is unavailable."""


# --- the screen -----------------------------------------------------------------------


def _text(body: bytes) -> str:
    """The body as text, by its byte-order mark (UTF-8 without one)."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, "replace")
    return body.decode("utf-8", "replace")


def declares_doctype(body: bytes) -> bool:
    """Whether the prolog (before the root element) holds a <!DOCTYPE ...>."""
    text = _text(body)
    position = 0
    while True:
        start = text.find("<", position)
        if start < 0:
            return False
        if text.startswith("<?", start):
            position = text.find("?>", start)
        elif text.startswith("<!--", start):
            position = text.find("-->", start)
        else:
            return text[start : start + 9].upper() == "<!DOCTYPE"
        if position < 0:
            return False


def _looks_like_html(body: bytes) -> bool:
    head = _text(body[:1024]).lstrip().casefold()
    return head.startswith(("<!doctype html", "<html"))


def strict_parser() -> etree.XMLParser:
    """lxml for untrusted XML: no entities, no DTD, no network, no huge trees."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
    )


def screen_soap(
    status: int, content_type: str | None, body: bytes
) -> tuple[str, str] | None:
    """(code, what the server did) when this answer is not SOAP to parse; else None."""
    kind = (content_type or "").split(";")[0].strip().casefold()
    if not body.strip():
        return (
            "EmptyAnswer",
            f"answered HTTP {status} with an empty body instead of SOAP",
        )
    if "html" in kind or _looks_like_html(body):
        title = TITLE.search(body[:65536])
        named = (
            f" titled {title.group(1).decode('utf-8', 'replace').strip()[:100]!r}"
            if title
            else ""
        )
        return (
            "NotSoap",
            f"answered HTTP {status} with an HTML page{named} instead of SOAP",
        )
    if "xml" not in kind:
        return (
            "NotSoap",
            f"answered HTTP {status} with {content_type or 'no content type'} instead "
            "of SOAP XML",
        )
    if declares_doctype(body):
        return (
            "DocumentType",
            "answered with a document type declaration (DTD), which SOAP does not "
            "allow; the answer was not parsed, so no entity in it was expanded or "
            "fetched",
        )
    parser = strict_parser()
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        # The parser's own log: the exception's may hold older errors of this thread,
        # and its message names only libxml2's last complaint.
        first = next(iter(parser.error_log), None)
        message = first.message if first is not None else str(exc)
        return "MalformedXml", f"answered with XML that is not well-formed ({message})"
    if root.getroottree().docinfo.internalDTD is not None:
        return "DocumentType", "answered with a document type declaration (DTD)"
    if root.tag != SOAP_ENVELOPE:
        name = etree.QName(root).localname if isinstance(root.tag, str) else "?"
        return (
            "NotSoap",
            f"answered with XML whose root element is <{name}>, not a SOAP envelope",
        )
    return None


class EwsAdapter(LimitedAdapter):
    """The adapter exchangelib's sessions use: limited answers, SOAP screened."""

    def screen(self, request, response) -> None:  # type: ignore[no-untyped-def]
        if request.method != "POST" or response.status_code not in SOAP_STATUSES:
            return
        refused = screen_soap(
            response.status_code, response.headers.get("Content-Type"), response.content
        )
        if refused is None:
            return
        code, what = refused
        log.debug("EWS answer from %s refused: %s", request.url, what)
        response.close()
        raise UnusableAnswer(request.url or "", code, what)


# --- busy servers ---------------------------------------------------------------------


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class AuditRetryPolicy(FailFast):
    """exchangelib's FailFast, but HTTP 503 comes back as a busy answer with the
    server's Retry-After, so that the audit can wait it out within its budget."""

    def raise_response_errors(self, response):  # type: ignore[no-untyped-def]
        if response.status_code == 503:
            raise ServiceUnavailable(
                f"HTTP 503 {response.reason or 'Service Unavailable'}",
                back_off=retry_after(response.headers.get("Retry-After")),
            )
        return super().raise_response_errors(response)


# --- reading exchangelib's errors -----------------------------------------------------


def _is_transport(exc: BaseException) -> bool:
    return isinstance(
        exc,
        OSError
        | ErrorTimeoutExpired
        | http.client.HTTPException
        | urllib3.exceptions.HTTPError,
    )


def busy_signal(exc: BaseException) -> ErrorServerBusy | None:
    """The server's own busy answer behind exc, or None.

    exchangelib relabels timeouts and broken connections as ErrorServerBusy; those
    are not busy answers, and waiting would only repeat them."""
    chain = list(causes(exc))
    if any(_is_transport(e) for e in chain):
        return None
    return next((e for e in chain if isinstance(e, ErrorServerBusy)), None)
