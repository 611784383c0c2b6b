"""Bodies of the lab's non-SOAP answers: OWA pages, the EWS service page, the WSDL,
POX autodiscover and the plain error pages IIS would send.

The wording is the lab's own. Every value that comes from a scenario or a request
is escaped: html.escape for pages, lxml element building for XML.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from lxml import etree

from lab.scenario import LabMailbox

_WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
_WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
_MESSAGES_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
_AUTODISCOVER_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
)
_OUTLOOK_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)


def html_page(title: str, *paragraphs: str, extra: str = "") -> bytes:
    """A small HTML document; title and paragraphs are escaped, `extra` is not."""
    body = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>"
        f"<body><h1>{escape(title)}</h1>{body}{extra}</body></html>\n"
    ).encode()


def owa_logon_page(destination: str) -> bytes:
    """The forms-based sign-in page OWA and ECP redirect to."""
    form = (
        '<form action="/owa/auth.owa" method="post" name="logonForm">'
        f'<input type="hidden" name="destination" value="{escape(destination)}">'
        '<label for="username">Domain\\user name:</label>'
        '<input id="username" name="username" type="text" autocomplete="off">'
        '<label for="password">Password:</label>'
        '<input id="password" name="password" type="password" autocomplete="off">'
        '<input type="submit" value="Sign in"></form>'
    )
    return html_page("Outlook", "Sign in to read your mail.", extra=form)


def ews_service_page(wsdl_url: str) -> bytes:
    """What a browser sees at /EWS/Exchange.asmx once signed in."""
    return html_page(
        "Exchange Web Services",
        "This is the Exchange Web Services endpoint. It answers SOAP requests "
        "sent with POST; a browser only gets this page.",
        f"The service description is at {wsdl_url}.",
    )


def unauthorized_page() -> bytes:
    return html_page(
        "401 - Unauthorized",
        "The credentials sent with this request were missing or not accepted.",
    )


def bad_request_page() -> bytes:
    return html_page("400 - Bad Request", "The request could not be read.")


def not_found_page() -> bytes:
    return html_page("404 - Not Found", "Nothing is published at this address.")


def method_not_allowed_page() -> bytes:
    return html_page("405 - Method Not Allowed", "This address does not accept that.")


def too_large_page() -> bytes:
    return html_page("413 - Request Entity Too Large", "The request body is too big.")


def wsdl(endpoint: str, operations: Iterable[str]) -> bytes:
    """A WSDL-shaped description naming the operations the lab answers."""
    nsmap = {"wsdl": _WSDL_NS, "soap": _WSDL_SOAP_NS, "tns": _MESSAGES_NS}
    root = etree.Element(
        f"{{{_WSDL_NS}}}definitions", nsmap=nsmap, targetNamespace=_MESSAGES_NS
    )
    port_type = etree.SubElement(
        root, f"{{{_WSDL_NS}}}portType", name="ExchangeServicePortType"
    )
    for operation in operations:
        etree.SubElement(port_type, f"{{{_WSDL_NS}}}operation", name=operation)
    service = etree.SubElement(root, f"{{{_WSDL_NS}}}service", name="ExchangeServices")
    port = etree.SubElement(
        service,
        f"{{{_WSDL_NS}}}port",
        name="ExchangeServicePort",
        binding="tns:ExchangeServiceBinding",
    )
    etree.SubElement(port, f"{{{_WSDL_SOAP_NS}}}address", location=endpoint)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def autodiscover_settings(mailbox: LabMailbox, ews_url: str) -> bytes:
    """A POX autodiscover answer pointing a known mailbox at the EWS URL."""
    root = etree.Element(
        f"{{{_AUTODISCOVER_NS}}}Autodiscover", nsmap={None: _AUTODISCOVER_NS}
    )
    response = etree.SubElement(
        root, f"{{{_OUTLOOK_NS}}}Response", nsmap={None: _OUTLOOK_NS}
    )
    user = _sub(response, "User")
    _sub(user, "DisplayName", mailbox.display_name or mailbox.primary)
    _sub(user, "AutoDiscoverSMTPAddress", mailbox.primary)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    for kind in ("EXCH", "EXPR"):
        protocol = _sub(account, "Protocol")
        _sub(protocol, "Type", kind)
        _sub(protocol, "EwsUrl", ews_url)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def autodiscover_error(code: str, message: str) -> bytes:
    """A POX autodiscover Error: 500 for an unknown address, 600 for a bad request."""
    root = etree.Element(
        f"{{{_AUTODISCOVER_NS}}}Autodiscover", nsmap={None: _AUTODISCOVER_NS}
    )
    response = etree.SubElement(root, f"{{{_AUTODISCOVER_NS}}}Response")
    error = etree.SubElement(response, f"{{{_AUTODISCOVER_NS}}}Error")
    etree.SubElement(error, f"{{{_AUTODISCOVER_NS}}}ErrorCode").text = code
    etree.SubElement(error, f"{{{_AUTODISCOVER_NS}}}Message").text = message
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    child = etree.SubElement(parent, f"{{{_OUTLOOK_NS}}}{name}")
    if text is not None:
        child.text = text
    return child
