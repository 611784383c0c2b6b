"""SOAP envelopes for the lab's EWS: reading requests safely and building responses.

Requests are parsed with entity expansion, DTD loading and network access switched off,
and a document that declares a DTD is refused, as EWS itself refuses one. Responses are
built as lxml elements, so every value taken from a scenario (addresses, display names,
folder names) is escaped by the serializer, never pasted into markup by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lxml import etree

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
MESSAGES_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
TYPES_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
ERRORS_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"

_RESPONSE_NSMAP = {"s": SOAP_NS, "m": MESSAGES_NS, "t": TYPES_NS}

# Largest request body the lab parses; real EWS refuses far smaller ones anyway.
MAX_REQUEST_BYTES = 8 * 1024 * 1024


class SoapParseError(ValueError):
    """The request body is not a SOAP envelope the lab is willing to read."""


def s(tag: str) -> str:
    return f"{{{SOAP_NS}}}{tag}"


def m(tag: str) -> str:
    return f"{{{MESSAGES_NS}}}{tag}"


def t(tag: str) -> str:
    return f"{{{TYPES_NS}}}{tag}"


def add(
    parent: etree._Element, tag: str, text: object = None, **attrs: object
) -> etree._Element:
    """Append a child element; text and attribute values are escaped on output."""
    child = etree.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        child.text = str(text)
    return child


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname


@dataclass(frozen=True)
class Impersonation:
    """The ExchangeImpersonation header: which address, and in which element."""

    address: str
    kind: str  # PrimarySmtpAddress, SmtpAddress, PrincipalName or SID


@dataclass(frozen=True)
class SoapRequest:
    operation: str
    payload: etree._Element  # the operation element, e.g. m:GetFolder
    requested_version: str | None
    impersonation: Impersonation | None


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML: no entities, no DTD, no network, no huge trees."""
    if len(data) > MAX_REQUEST_BYTES:
        raise SoapParseError("the request body is larger than the lab accepts")
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        raise SoapParseError(f"the request is not well-formed XML ({error})") from None
    if root.getroottree().docinfo.doctype:
        raise SoapParseError("the request declares a DTD, which EWS does not allow")
    return root


def parse_request(data: bytes) -> SoapRequest:
    """Read a SOAP request without expanding entities or touching the network."""
    root = parse_xml(data)
    if root.tag != s("Envelope"):
        raise SoapParseError("the request is not a SOAP 1.1 envelope")

    body = root.find(s("Body"))
    payload = None if body is None else next(iter(body), None)
    if payload is None or not isinstance(payload.tag, str):
        raise SoapParseError("the SOAP body holds no operation")
    if etree.QName(payload).namespace != MESSAGES_NS:
        raise SoapParseError("the operation is not in the EWS messages namespace")

    header = root.find(s("Header"))
    version = None
    impersonation = None
    if header is not None:
        requested = header.find(t("RequestServerVersion"))
        if requested is not None:
            version = requested.get("Version")
        impersonation = _impersonation(header)
    return SoapRequest(
        operation=local_name(payload),
        payload=payload,
        requested_version=version,
        impersonation=impersonation,
    )


def _impersonation(header: etree._Element) -> Impersonation | None:
    sid = header.find(f"{t('ExchangeImpersonation')}/{t('ConnectingSID')}")
    if sid is None:
        return None
    for kind in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName", "SID"):
        value = sid.findtext(t(kind))
        if value and value.strip():
            return Impersonation(address=value.strip(), kind=kind)
    return Impersonation(address="", kind="")


@dataclass(frozen=True)
class ServerVersion:
    major: int
    minor: int
    major_build: int
    minor_build: int
    schema: str

    @classmethod
    def parse(cls, build: str, schema: str) -> ServerVersion:
        """From a build such as "15.1.2507.39" and a schema such as "V2017_07_11"."""
        parts = [int(p) for p in build.split(".")]
        parts += [0] * (4 - len(parts))
        return cls(parts[0], parts[1], parts[2], parts[3], schema)


def envelope(version: ServerVersion, content: etree._Element) -> bytes:
    """A complete response: ServerVersionInfo in the header, `content` in the body."""
    root = etree.Element(s("Envelope"), nsmap=_RESPONSE_NSMAP)
    header = add(root, s("Header"))
    info = add(
        header,
        t("ServerVersionInfo"),
        MajorVersion=version.major,
        MinorVersion=version.minor,
        MajorBuildNumber=version.major_build,
        MinorBuildNumber=version.minor_build,
    )
    if version.schema:
        info.set("Version", version.schema)
    body = add(root, s("Body"))
    body.append(content)
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def fault(
    code: str, message: str, values: Mapping[str, str] | None = None
) -> etree._Element:
    """A SOAP Fault as EWS sends it: the code again in detail, values in MessageXml."""
    element = etree.Element(s("Fault"))
    faultcode = etree.SubElement(element, "faultcode", nsmap={"a": TYPES_NS})
    faultcode.text = f"a:{code}"
    add(element, "faultstring", message)
    detail = add(element, "detail")
    add(detail, f"{{{ERRORS_NS}}}ResponseCode", code)
    add(detail, f"{{{ERRORS_NS}}}Message", message)
    if values:
        message_xml = add(detail, t("MessageXml"))
        for name, value in values.items():
            add(message_xml, t("Value"), value, Name=name)
    return element


def operation_response(
    operation: str, messages: Iterable[etree._Element]
) -> etree._Element:
    """m:<Operation>Response holding one response message per requested object."""
    response = etree.Element(m(f"{operation}Response"))
    container = add(response, m("ResponseMessages"))
    container.extend(messages)
    return response


def success_message(operation: str) -> etree._Element:
    message = etree.Element(m(f"{operation}ResponseMessage"), ResponseClass="Success")
    add(message, m("ResponseCode"), "NoError")
    return message


def error_message(
    operation: str, code: str, text: str, values: Mapping[str, str] | None = None
) -> etree._Element:
    message = etree.Element(m(f"{operation}ResponseMessage"), ResponseClass="Error")
    add(message, m("MessageText"), text)
    add(message, m("ResponseCode"), code)
    add(message, m("DescriptiveLinkKey"), 0)
    if values:
        message_xml = add(message, m("MessageXml"))
        for name, value in values.items():
            add(message_xml, t("Value"), value, Name=name)
    return message


def response_code(message: etree._Element) -> str:
    return message.findtext(m("ResponseCode")) or ""
