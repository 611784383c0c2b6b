"""The CLIXML reader: real Exchange exports, every type code, references, escaping,
secure strings, and hostile files that must fail clearly without expanding entities or
touching the network."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import socket
import subprocess
import sys
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding
from psrpcore.types import PSObject as CorePSObject
from psrpcore.types import deserialize_clixml

from ewsready import clixml
from ewsready.psobjects import PSObject
from tests.audits import CLIXML_HEADER as HEADER


def objs(body: str) -> str:
    return f"{HEADER}{body}</Objs>"


def one(body: str):
    (value,) = clixml.loads(objs(body))
    return value


# --- real exports -------------------------------------------------------------------


def test_web_services_virtual_directory(real):
    (vdir,) = clixml.read_file(real / "GetWebServicesVirtualDirectory.xml")

    assert vdir.is_a("ADWebServicesVirtualDirectory")
    assert vdir.text == "SOLO-E16A\\EWS (Default Web Site)"
    assert str(vdir["Identity"]) == "SOLO-E16A\\EWS (Default Web Site)"
    assert vdir["BasicAuthentication"] is False
    assert vdir["WindowsAuthentication"] is True
    assert vdir["OAuthAuthentication"] is True
    assert "ExternalUrl" in vdir.properties and vdir["ExternalUrl"] is None
    assert vdir["InternalUrl"] == "https://solo-e16a.solo.local/EWS/Exchange.asmx"
    assert vdir["InternalAuthenticationMethods"] == (
        "Ntlm",
        "WindowsIntegrated",
        "WSSecurity",
        "OAuth",
    )
    assert vdir["ExtendedProtectionTokenChecking"] == "None"
    assert str(vdir["Server"]) == "SOLO-E16A"
    assert vdir["Server"]["Name"] == "SOLO-E16A"
    assert vdir["AdminDisplayVersion"].text == "Version 15.1 (Build 2375.7)"
    assert vdir["WhenCreatedUTC"] == dt.datetime(2018, 11, 24, 0, 47, 2, tzinfo=dt.UTC)
    assert vdir["WhenCreated"].utcoffset() == dt.timedelta(hours=-6)
    assert vdir["WhenCreated"] == vdir["WhenCreatedUTC"]
    # <MS> members sit beside the adapted properties, case-insensitively.
    assert vdir.get("pscomputername") == "solo-e16a.solo.local"
    assert vdir["RunspaceId"] == "46a1b05b-0ed2-4449-a6bb-64ae4f9c1a94"
    assert isinstance(vdir["SerializationData"], bytes)


def test_exchange_server(real):
    (server,) = clixml.read_file(real / "GetExchangeServer.xml")

    assert server.text == "SOLO-E16A"
    assert server["Fqdn"] == "Solo-E16A.Solo.local"
    assert server["ServerRole"] == "Mailbox"
    assert server["Edition"] == "StandardEvaluation"
    assert server["IsEdgeServer"] is False
    version = server["AdminDisplayVersion"]
    assert isinstance(version, PSObject)
    assert version.is_a("Microsoft.Exchange.Data.ServerVersion")
    assert str(version) == "Version 15.1 (Build 2375.7)"
    assert (
        version["Major"],
        version["Minor"],
        version["Build"],
        version["Revision"],
    ) == (
        15,
        1,
        2375,
        7,
    )


def test_accepted_domains_share_objects_across_top_level_ones(real):
    domains = clixml.read_file(real / "GetAcceptedDomain.xml")

    assert [(str(d["DomainName"]), d["DomainType"], d["Default"]) for d in domains] == [
        ("Solo.com", "Authoritative", True),
        ("*.contoso.local", "Authoritative", False),
        ("*.com", "InternalRelay", False),
    ]
    # The later domains' OrganizationId is a <Ref> to the first domain's object.
    assert domains[1]["OrganizationId"] is domains[0]["OrganizationId"]
    assert domains[2]["OrganizationId"] is domains[0]["OrganizationId"]
    assert domains[0]["Id"] is domains[0]["Identity"]


CERTIFICATES = [
    # subject CN, signature hash, DNS names, not after (UTC), thumbprint
    (
        "Microsoft Exchange Server Auth Certificate",
        "sha1",
        None,
        dt.datetime(2023, 10, 29, 0, 34, 3, tzinfo=dt.UTC),
        "92E196F3C8D3D753FCFC5B7690C3173AA1C0ABE3",
    ),
    (
        "Solo-E16A",
        "sha1",
        ["Solo-E16A", "Solo-E16A.Solo.local"],
        dt.datetime(2023, 11, 24, 0, 32, 37, tzinfo=dt.UTC),
        "823884A32609DCDC8C4B5462952586C30D814073",
    ),
    (
        "WMSvc-WIN-9UC94ETVM30",
        "sha256",
        None,
        dt.datetime(2028, 11, 20, 23, 22, 56, tzinfo=dt.UTC),
        "A60C6E62FF85D208DF668D597A1B077E1534147F",
    ),
]


def test_exchange_certificates_hold_real_der(real):
    certificates = clixml.read_file(real / "GetExchangeCertificate.xml")
    assert len(certificates) == len(CERTIFICATES)

    for found, (name, algorithm, dns, not_after, thumbprint) in zip(
        certificates, CERTIFICATES, strict=True
    ):
        cert = x509.load_der_x509_certificate(found["RawData"])
        assert cert.subject.rfc4514_string() == f"CN={name}"
        assert cert.signature_hash_algorithm.name == algorithm
        assert cert.not_valid_after_utc == not_after
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert names.value.get_values_for_type(x509.DNSName) == dns
        except x509.ExtensionNotFound:
            assert dns is None
        # Self-signed: issued by its own subject and signed by its own key.
        assert cert.issuer == cert.subject
        cert.public_key().verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
        assert hashlib.sha1(found["RawData"]).hexdigest().upper() == thumbprint
        assert found.text.startswith(f"[Subject]\r\n  CN={name}\r\n")
        assert found.text.endswith(f"[Thumbprint]\r\n  {thumbprint}\r\n")


def test_raw_certificate_export_keeps_services_only_in_serialization_data(real):
    """A plain Export-Clixml of Get-ExchangeCertificate carries RawData and Exchange's
    binary SerializationData, not Services, Status or RootCAType as properties; the
    collector spells them out, and the audit must not expect them in raw exports."""
    for found in clixml.read_file(real / "GetExchangeCertificate.xml"):
        assert set(found.properties) == {
            "RawData",
            "PSComputerName",
            "RunspaceId",
            "PSShowComputerName",
            "SerializationData",
        }
        assert found.get("Services") is None
        assert b"Services" in found["SerializationData"]


def _core_plain(value):
    """psrpcore's deserialized value in the shape ewsready's reader gives."""
    if isinstance(value, list | tuple):
        return tuple(_core_plain(v) for v in value)
    if isinstance(value, dict):
        return {_core_plain(k): _core_plain(v) for k, v in value.items()}
    type_names = [
        t.removeprefix("Deserialized.") for t in getattr(value, "PSTypeNames", [])
    ]
    if "System.Enum" in type_names:
        return value.PSObject.to_string
    if type(value) is CorePSObject:
        info = value.PSObject
        properties = {
            p.name: _core_plain(p.get_value(value)) for p in info.adapted_properties
        }
        properties.update(
            {p.name: _core_plain(p.get_value(value)) for p in info.extended_properties}
        )
        return ("object", tuple(type_names), info.to_string, properties)
    if isinstance(value, dt.datetime):
        return dt.datetime(*value.timetuple()[:6], value.microsecond, value.tzinfo)
    if isinstance(value, uuid.UUID):
        return str(value)
    for plain in (bool, bytes, str, int, float):
        if isinstance(value, plain):
            return plain(value)
    return value


def _ours_plain(value):
    if isinstance(value, PSObject):
        properties = {k: _ours_plain(v) for k, v in value.properties.items()}
        return ("object", value.type_names, value.text, properties)
    if isinstance(value, tuple):
        return tuple(_ours_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _ours_plain(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    "name",
    [
        "GetWebServicesVirtualDirectory.xml",
        "GetExchangeServer.xml",
        "GetExchangeCertificate.xml",
        "GetAcceptedDomain.xml",
        "GetOwaVirtualDirectory.xml",
    ],
)
def test_agrees_with_psrpcore_on_real_exports(real, name):
    """psrpcore's deserializer, normalised, reads every real file the same way."""
    text = (real / name).read_text(encoding="utf-8-sig")
    theirs = [_core_plain(v) for v in deserialize_clixml(text, None)]
    ours = [_ours_plain(v) for v in clixml.read_file(real / name)]
    assert ours == theirs


# --- type codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "element, expected",
    [
        ("<S>plain</S>", "plain"),
        ("<S></S>", ""),
        ("<S>  spaced  </S>", "  spaced  "),
        ("<S>a_x000D__x000A_b_x0009_c</S>", "a\r\nb\tc"),
        ("<S>snake_x005F_x000A_case</S>", "snake_x000A_case"),
        ("<S>_x005F_</S>", "_"),
        ("<S>not_an_escape_x12_</S>", "not_an_escape_x12_"),
        ("<S>smile _xD83D__xDE00_</S>", "smile \U0001f600"),
        ("<S>half _xD83D_ only</S>", "half \ufffd only"),
        ("<S>&lt;b&gt; &amp; &#233;</S>", "<b> & \u00e9"),
        ("<C>65</C>", "A"),
        ("<C>55357</C>", "\ufffd"),
        ("<B>true</B>", True),
        ("<B>false</B>", False),
        ("<By>255</By>", 255),
        ("<SB>-128</SB>", -128),
        ("<I16>-32768</I16>", -32768),
        ("<U16>65535</U16>", 65535),
        ("<I32>-7</I32>", -7),
        ("<U32>4294967295</U32>", 4294967295),
        ("<I64>-9223372036854775808</I64>", -(2**63)),
        ("<U64>18446744073709551615</U64>", 2**64 - 1),
        ("<Sg>1.5</Sg>", 1.5),
        ("<Db>-2.25E+300</Db>", -2.25e300),
        ("<Db>INF</Db>", float("inf")),
        ("<D>79228162514264337593543950335</D>", decimal.Decimal(2**96 - 1)),
        ("<D>0.1</D>", decimal.Decimal("0.1")),
        (
            "<DT>2021-10-06T15:24:05-04:00</DT>",
            dt.datetime(2021, 10, 6, 19, 24, 5, tzinfo=dt.UTC),
        ),
        (
            "<DT>2021-12-03T17:15:47Z</DT>",
            dt.datetime(2021, 12, 3, 17, 15, 47, tzinfo=dt.UTC),
        ),
        (
            "<DT>2024-02-29T23:59:59.9999999+05:30</DT>",
            dt.datetime(
                2024,
                2,
                29,
                23,
                59,
                59,
                999999,
                tzinfo=dt.timezone(dt.timedelta(hours=5.5)),
            ),
        ),
        ("<DT>2020-01-02T03:04:05.5</DT>", dt.datetime(2020, 1, 2, 3, 4, 5, 500000)),
        ("<DT>0001-01-01T00:00:00</DT>", dt.datetime(1, 1, 1)),
        ("<TS>PT0S</TS>", dt.timedelta(0)),
        (
            "<TS>P1DT2H3M4.5S</TS>",
            dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5),
        ),
        ("<TS>-PT30M</TS>", dt.timedelta(minutes=-30)),
        (
            "<TS>P10675199DT2H48M5.4775807S</TS>",
            dt.timedelta(
                days=10675199, hours=2, minutes=48, seconds=5, microseconds=477580
            ),
        ),
        (
            "<G>46A1B05B-0ED2-4449-A6BB-64AE4F9C1A94</G>",
            "46a1b05b-0ed2-4449-a6bb-64ae4f9c1a94",
        ),
        (
            "<URI>https://mail.contoso.example/EWS/Exchange.asmx</URI>",
            "https://mail.contoso.example/EWS/Exchange.asmx",
        ),
        ("<Version>15.1.2375.7</Version>", "15.1.2375.7"),
        ("<BA>AAEC/w==</BA>", b"\x00\x01\x02\xff"),
        ("<BA>AAEC\n  /w==</BA>", b"\x00\x01\x02\xff"),
        ("<BA></BA>", b""),
        ("<Nil />", None),
        ("<XD>&lt;a&gt;1&lt;/a&gt;</XD>", "<a>1</a>"),
        ("<SBK>Get-Date_x000A_</SBK>", "Get-Date\n"),
    ],
)
def test_primitive(element, expected):
    assert one(element) == expected


def test_escaped_property_names_and_type_names():
    found = one(
        "<Obj><TN><T>My_x002E_Type</T></TN>"
        '<Props><S N="Display_x0020_Name">Ann</S></Props></Obj>'
    )
    assert found.type_names == ("My.Type",)
    assert found["display name"] == "Ann"


def test_secure_string_is_never_read():
    ciphertext = "01000000d08c9ddf0115d1118c7a00c04fc297eb"
    found = one(
        "<Obj><TN><T>System.Management.Automation.PSCredential</T></TN><Props>"
        '<S N="UserName">contoso\\svc</S>'
        f'<SS N="Password">{ciphertext}</SS></Props></Obj>'
    )
    assert found["Password"] is clixml.SECURE_STRING
    assert ciphertext not in repr(found) and ciphertext not in str(found["Password"])
    assert one(f"<SS>{ciphertext}</SS>") is clixml.SECURE_STRING


@pytest.mark.parametrize("tag", ["LST", "IE", "STK", "QUE"])
def test_collections_become_tuples(tag):
    found = one(
        f'<Obj RefId="0"><TN RefId="0"><T>System.Collections.ArrayList</T></TN>'
        f'<{tag}><S>a</S><I32>2</I32><Nil /><Obj RefId="1"><{tag} /></Obj></{tag}></Obj>'
    )
    assert found == ("a", 2, None, ())


def test_dictionary_keys_and_values_are_converted():
    found = one(
        '<Obj RefId="0"><TN RefId="0"><T>System.Collections.Hashtable</T></TN><DCT>'
        '<En><S N="Key">name</S><S N="Value">EX01</S></En>'
        '<En><I32 N="Key">3</I32><Obj N="Value" RefId="2"><LST><B>true</B></LST></Obj></En>'
        '<En><Obj N="Key" RefId="1"><ToString>an object</ToString><Props>'
        '<S N="A">b</S></Props></Obj><Nil N="Value" /></En>'
        "</DCT></Obj>"
    )
    assert found == {"name": "EX01", 3: (True,), "an object": None}


def test_enum_becomes_its_text_and_flags_read_as_written():
    found = one(
        '<Obj RefId="0"><TN RefId="0"><T>Cert</T></TN><Props>'
        '<Obj N="Services" RefId="1"><TN RefId="1">'
        "<T>Microsoft.Exchange.Management.SystemConfigurationTasks.AllowedServices</T>"
        "<T>System.Enum</T><T>System.ValueType</T><T>System.Object</T></TN>"
        "<ToString>IMAP, POP, IIS, SMTP</ToString><I32>27</I32></Obj>"
        '<Obj N="Status" RefId="2"><TN RefId="2"><T>Status</T>'
        "<T>Deserialized.System.Enum</T></TN><ToString>Valid</ToString><I32>1</I32></Obj>"
        '<Obj N="Bare" RefId="3"><TNRef RefId="1" /><I32>8</I32></Obj>'
        "</Props></Obj>"
    )
    assert found["Services"] == "IMAP, POP, IIS, SMTP"
    assert found["Status"] == "Valid"
    assert found["Bare"] == 8  # an enum without its text keeps its number


def test_wrapped_primitive_is_the_primitive():
    found = one(
        '<Obj RefId="0"><TN RefId="0"><T>System.String</T><T>System.Object</T></TN>'
        '<ToString>hello</ToString><S>hello</S><MS><S N="PSPath">C:\\x</S></MS></Obj>'
    )
    assert found == "hello"


def test_server_version_keeps_text_and_parts():
    found = one(
        '<Obj RefId="0"><TN RefId="0"><T>Microsoft.Exchange.Data.ServerVersion</T>'
        "<T>System.Object</T></TN><ToString>Version 15.1 (Build 2507.6)</ToString>"
        '<Props><I32 N="Major">15</I32><I32 N="Minor">1</I32><I32 N="Build">2507</I32>'
        '<I32 N="Revision">6</I32></Props></Obj>'
    )
    assert str(found) == "Version 15.1 (Build 2507.6)"
    assert found["build"] == 2507


def test_extended_members_win_over_adapted_ones():
    found = one(
        "<Obj><Props>"
        '<S N="Name">adapted</S><S N="Other">kept</S>'
        '</Props><MS><S N="name">extended</S><B N="Note">true</B></MS></Obj>'
    )
    assert found.properties == {"Other": "kept", "name": "extended", "Note": True}
    assert found["NAME"] == "extended"


def test_type_names_by_reference_and_objects_by_reference():
    first, second, third = clixml.loads(
        objs(
            '<Obj RefId="0"><TN RefId="0"><T>A.Type</T><T>System.Object</T></TN>'
            '<ToString>first</ToString><Props><Obj N="Shared" RefId="1">'
            '<TN RefId="1"><T>B.Type</T></TN><ToString>shared</ToString>'
            '<Props><S N="X">y</S></Props></Obj></Props></Obj>'
            '<Obj RefId="2"><TNRef RefId="0" /><ToString>second</ToString>'
            '<Props><Ref N="Shared" RefId="1" /></Props></Obj>'
            '<Ref RefId="2" />'
        )
    )
    assert second.type_names == ("A.Type", "System.Object")
    assert second["Shared"] is first["Shared"]
    assert str(second["Shared"]) == "shared"
    assert third is second


def test_empty_export_has_no_objects():
    assert clixml.loads(f"{HEADER[:-1]} />") == []
    assert clixml.loads(objs("")) == []


def test_utf16_file_with_byte_order_mark(tmp_path):
    path = tmp_path / "GetMailbox.xml"
    path.write_bytes(("\ufeff" + objs("<S>K\u00e4lender</S>")).encode("utf-16-le"))
    assert clixml.read_file(path) == ["K\u00e4lender"]


def test_iter_file_is_lazy_and_streams(tmp_path):
    path = tmp_path / "GetMailbox.xml"
    body = "".join(
        f'<Obj RefId="{n}"><ToString>m{n}</ToString><Props><S N="Name">m{n}</S>'
        "</Props></Obj>"
        for n in range(2000)
    )
    path.write_text(objs(body), encoding="utf-8")

    values = clixml.iter_file(path)
    assert not isinstance(values, list)
    assert next(values)["Name"] == "m0"
    assert sum(1 for _ in values) == 1999


STREAM_SCRIPT = """
import resource, sys
from ewsready import clixml
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = sum(1 for _ in clixml.iter_file(sys.argv[1]))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, (after - before) * 1024)
"""


def test_large_export_is_read_in_bounded_memory(tmp_path, real):
    """Each top-level object is dropped once read: a 60 MB export of 400 real virtual
    directories (cross-referencing a shared object) needs a fraction of its size."""
    text = (real / "GetOwaVirtualDirectory.xml").read_text(encoding="utf-8-sig")
    start = text.index("<Obj RefId")
    body = text[start : text.rindex("</Objs>")]
    shared = '<Obj N="Shared" RefId="S0"><ToString>shared</ToString></Obj>'
    copies = [body.replace("<Props>", "<Props>" + shared, 1)]
    for n in range(1, 400):
        copy = body.replace('RefId="', f'RefId="{n}-')
        copies.append(
            copy.replace("<Props>", '<Props><Ref N="Shared" RefId="S0" />', 1)
        )
    path = tmp_path / "GetOwaVirtualDirectory.xml"
    path.write_text(text[:start] + "".join(copies) + "</Objs>", encoding="utf-8")
    size = path.stat().st_size

    result = subprocess.run(
        [sys.executable, "-c", STREAM_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    count, grown = (int(x) for x in result.stdout.split())
    assert count == 400
    assert grown < size / 4, f"reading {size} bytes grew the process by {grown}"


# --- errors and hostile input -------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty: no XML element"),
        ("just some text", "not well-formed XML: Start tag expected"),
        ('{"json": true}', "not well-formed XML"),
        (
            "<html><body>login</body></html>",
            "not a CLIXML file: the root element is <html>",
        ),
        ('<Objs xmlns="urn:other"><S>a</S></Objs>', "not a CLIXML file"),
        (objs("<Obj><Props><S>no name</S></Props></Obj>"), "property without a name"),
        (objs("<Bogus>1</Bogus>"), "unexpected element <Bogus>"),
        (objs("<I32>12x</I32>"), "<I32> holds '12x'"),
        (objs("<By>256</By>"), "<By> holds '256'"),
        (objs("<B>yes</B>"), "<B> holds 'yes'"),
        (objs("<DT>yesterday</DT>"), "<DT> holds 'yesterday'"),
        (objs("<TS>P1Y</TS>"), "<TS> holds 'P1Y'"),
        (objs("<G>not-a-guid</G>"), "<G> holds 'not-a-guid'"),
        (objs("<BA>!!!!</BA>"), "<BA> holds '!!!!'"),
        (objs('<Ref RefId="9" />'), "<Ref RefId='9'> names no complete earlier object"),
        (
            objs('<Obj RefId="0"><TNRef RefId="4" /></Obj>'),
            "<TNRef RefId='4'> names no <TN>",
        ),
        (objs("<Obj><S>a</S><S>b</S></Obj>"), "more than one value"),
        (objs("<S><S>nested</S></S>"), "<S> holds elements"),
        (
            objs('<Obj RefId="0"><Props><Ref N="Me" RefId="0" /></Props></Obj>'),
            "no complete",
        ),
    ],
)
def test_malformed_input_is_a_clear_error(text, message):
    with pytest.raises(clixml.ClixmlError) as caught:
        clixml.loads(text, source="GetMailbox.xml")
    assert str(caught.value).startswith("GetMailbox.xml")
    assert message in str(caught.value)


def test_error_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "GetExchangeServer.xml"
    path.write_text(
        HEADER + '\n  <Obj RefId="0">\n    <Props>\n      <I32 N="Build">x</I32>\n'
        "    </Props>\n  </Obj>\n</Objs>\n",
        encoding="utf-8",
    )
    with pytest.raises(clixml.ClixmlError) as caught:
        clixml.read_file(path)
    assert str(caught.value).startswith(f"{path}, line 4: <I32> holds 'x'")
    assert caught.value.line == 4


def test_truncated_file_fails_before_any_object_is_handed_out(tmp_path):
    path = tmp_path / "GetMailbox.xml"
    path.write_text(
        HEADER + '\n<S>first</S>\n<S>second</S>\n<Obj RefId="0"><Props>\n', "utf-8"
    )
    values = clixml.iter_file(path)
    with pytest.raises(clixml.ClixmlError) as caught:
        next(values)
    assert "Premature end of data" in str(caught.value)
    assert caught.value.line == 5  # where the file ends


def test_too_deep_nesting_is_refused():
    deep = "<Obj><Props>" * 300 + "</Props></Obj>" * 300
    with pytest.raises(clixml.ClixmlError, match="not well-formed XML"):
        clixml.loads(objs(deep))


LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE Objs [\n <!ENTITY a "ha">\n'
    + "".join(
        f' <!ENTITY {chr(98 + n)} "{("&" + chr(97 + n) + ";") * 10}">\n'
        for n in range(9)
    )
    + "]>\n"
    + objs("<S>&j;</S>")
)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            '<!DOCTYPE Objs [<!ENTITY who "Ann">]>' + objs("<S>&who;</S>"),
            id="internal",
        ),
        pytest.param(LAUGHS, id="billion-laughs"),
        pytest.param(
            '<!DOCTYPE Objs [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + objs("<S>&x;</S>"),
            id="external-file",
        ),
        pytest.param(
            '<!DOCTYPE Objs [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
            + objs("<S/>"),
            id="parameter-entity",
        ),
        pytest.param("<!DOCTYPE Objs>" + objs("<S>a</S>"), id="bare-doctype"),
    ],
)
def test_document_types_and_entities_are_refused(text):
    with pytest.raises(clixml.ClixmlError, match="declares a document type") as caught:
        clixml.loads(text)
    assert "root:" not in str(caught.value)
    assert "haha" not in str(caught.value)


def test_undeclared_entity_is_not_well_formed():
    with pytest.raises(clixml.ClixmlError, match="Entity 'x' not defined"):
        clixml.loads(objs("<S>&x;</S>"))


@pytest.mark.parametrize("kind", ["dtd", "entity"])
def test_external_references_are_never_fetched(kind):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/evil.dtd"
        if kind == "dtd":
            text = f'<!DOCTYPE Objs SYSTEM "{url}">' + objs("<S>a</S>")
        else:
            text = f'<!DOCTYPE Objs [<!ENTITY x SYSTEM "{url}">]>' + objs("<S>&x;</S>")

        with pytest.raises(clixml.ClixmlError, match="declares a document type"):
            clixml.loads(text)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_document_type_in_a_utf16_file_is_refused(tmp_path):
    path = tmp_path / "GetMailbox.xml"
    text = '\ufeff<!DOCTYPE Objs [<!ENTITY a "b">]>\n' + objs("<S>&a;</S>")
    path.write_bytes(text.encode("utf-16-le"))
    with pytest.raises(clixml.ClixmlError, match="declares a document type"):
        clixml.read_file(path)


def reference_bomb(levels: int) -> str:
    """A list of ten strings, then lists of ten references to the list before: the
    last stands for 10**levels strings, in a file of a few kilobytes."""
    parts = [
        '<Obj N="J0" RefId="900"><TN RefId="900"><T>System.Collections.ArrayList</T>'
        "</TN><LST>" + "<S>abcdefghij</S>" * 10 + "</LST></Obj>"
    ]
    for level in range(1, levels + 1):
        refs = f'<Ref RefId="{900 + level - 1}"/>' * 10
        parts.append(
            f'<Obj N="J{level}" RefId="{900 + level}"><TNRef RefId="900"/>'
            f"<LST>{refs}</LST></Obj>"
        )
    props = "".join(parts) + f'<Ref N="Name" RefId="{900 + levels}"/>'
    return f'<Obj RefId="0"><TN RefId="1"><T>X</T></TN><Props>{props}</Props></Obj>'


def test_a_reference_bomb_is_refused_before_it_is_expanded():
    started = time.monotonic()
    with pytest.raises(clixml.ClixmlError, match="refusing to expand them"):
        clixml.loads(objs(reference_bomb(11)))
    assert time.monotonic() - started < 5


def test_shared_references_within_reason_are_read():
    (value,) = clixml.loads(objs(reference_bomb(3)))
    assert len(value["Name"]) == 10 and len(value["Name"][0][0]) == 10
