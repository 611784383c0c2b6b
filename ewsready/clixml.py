"""Read Export-Clixml files into PSObject trees, one top-level object at a time.

CLIXML is the XML that PowerShell's Export-Clixml writes: a root <Objs> in the
PowerShell namespace holding one element per pipeline output object. The reader turns
each into the values described in ewsready.psobjects:

- <Obj> with properties becomes a PSObject: type names from <TN> (or <TNRef>, a
  reference to a chain seen earlier), text from <ToString>, properties from <Props>
  (adapted) and <MS> (extended: note properties, PSComputerName, SerializationData).
  Both kinds land in one mapping. When a name occurs in both, the <MS> value wins,
  because PowerShell looks up instance members before adapted ones.
- an enum (an <Obj> whose type chain holds System.Enum) becomes its ToString text,
  e.g. "Ntlm" or "IIS, SMTP" for flags;
- <LST>, <IE>, <STK>, <QUE> become tuples (type names such as
  MultiValuedProperty`1 are dropped); <DCT> becomes a dict;
- any other <Obj> wrapping a primitive becomes that primitive;
- <Ref> is the value of the <Obj> with that RefId, defined earlier in the file;
- primitives: S, URI, XD, SBK -> str; Version -> str; G -> str (canonical lowercase);
  B -> bool; integers -> int; Sg, Db -> float; D -> Decimal; C -> one-char str;
  DT -> datetime (aware when the file gives an offset or Z, naive otherwise; 100 ns
  ticks are truncated to microseconds); TS -> timedelta (same truncation);
  BA -> bytes; Nil -> None; SS -> SECURE_STRING, a marker: the ciphertext is never
  read, let alone decrypted.

Strings are unescaped from PowerShell's _xHHHH_ form (_x000D__x000A_ is CR LF,
_x005F_ a literal underscore); escaped surrogate pairs are joined, a lone surrogate
becomes U+FFFD.

Files are untrusted input. The XML parser resolves no entities, loads no DTD, opens no
network connection and keeps libxml2's size and depth limits (no huge_tree); a document
type declaration of any kind is refused before the first element is read. Every error,
from malformed XML to an unknown element, is a ClixmlError naming the file and line.

Large exports (Get-Mailbox over a whole organisation) are read with iterparse and each
top-level object is dropped from the tree once converted. Because a <Ref> may point
back to any earlier object, a first pass notes which RefIds are referenced at all; the
second pass keeps only those, so memory follows one top-level object plus the shared
ones, not the file. The first pass also means a malformed file fails before any of its
objects is handed out.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import io
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lxml import etree

from ewsready.psobjects import PSObject

log = logging.getLogger(__name__)

NAMESPACE = "http://schemas.microsoft.com/powershell/2004/04"
_PREFIX = "{" + NAMESPACE + "}"


class ClixmlError(ValueError):
    """A file that is not CLIXML, or not well-formed, or holds an unexpected element."""

    def __init__(self, source: str, line: int | None, message: str) -> None:
        where = f"{source}, line {line}" if line else source
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.reason = message


class SecureStringValue:
    """Stands for a SecureString in an export; its ciphertext is never kept."""

    __slots__ = ()
    _instance: SecureStringValue | None = None

    def __new__(cls) -> SecureStringValue:
        # One marker, so `value is SECURE_STRING` works after copying and pickling.
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SECURE_STRING"

    def __str__(self) -> str:
        return "<secure string, not read>"

    def __reduce__(self) -> str:
        return "SECURE_STRING"


SECURE_STRING = SecureStringValue()

# --- primitives -------------------------------------------------------------------

_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_string(text: str) -> str:
    """Undo PowerShell's _xHHHH_ escaping of characters XML cannot carry."""
    if "_x" not in text:
        return text
    decoded = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    # Characters beyond U+FFFF are escaped as two UTF-16 halves; a round trip through
    # UTF-16 joins them, and a half without its partner becomes U+FFFD instead of
    # a lone surrogate that would break encoding the text later (JSON, HTML, logs).
    return decoded.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|[+-]\d{2}:\d{2})?"
)


def _microseconds(fraction: str | None) -> int:
    # .NET keeps 100 ns ticks (seven digits); Python keeps microseconds, so cut.
    return int((fraction or "")[:6].ljust(6, "0"))


def parse_datetime(text: str) -> dt.datetime:
    """A CLIXML <DT>: ISO 8601 with up to seven fraction digits and Z, an offset or
    nothing (DateTimeKind.Unspecified, returned naive)."""
    match = _DATETIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 date and time")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    zone = match.group(8)
    tzinfo: dt.tzinfo | None = None
    if zone == "Z":
        tzinfo = dt.UTC
    elif zone:
        sign = -1 if zone[0] == "-" else 1
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        tzinfo = dt.timezone(sign * offset)
    return dt.datetime(
        year, month, day, hour, minute, second, _microseconds(match.group(7)), tzinfo
    )


_DURATION = re.compile(
    r"(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d+))?S)?)?"
)


def parse_duration(text: str) -> dt.timedelta:
    """A CLIXML <TS>: an xs:duration in days, hours, minutes and seconds, as .NET's
    XmlConvert writes a TimeSpan (never years or months)."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match is None or value in ("P", "-P") or value.endswith("T"):
        raise ValueError(f"{text!r} is not a duration")
    negative, days, hours, minutes, seconds, fraction = match.groups()
    span = dt.timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=int(seconds or 0),
        microseconds=_microseconds(fraction),
    )
    return -span if negative else span


def _integer(low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        value = int(text.strip())
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return convert


def _boolean(text: str) -> bool:
    # XmlConvert writes true/false; it also reads 1/0, so accept both.
    value = text.strip()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _bytes(text: str) -> bytes:
    return base64.b64decode("".join(text.split()), validate=True)


def _guid(text: str) -> str:
    return str(uuid.UUID(text.strip()))


def _char(text: str) -> str:
    # A System.Char is written as its UTF-16 code unit number; half a surrogate pair
    # is no character on its own.
    unit = _integer(0, 0xFFFF)(text)
    return "\ufffd" if 0xD800 <= unit <= 0xDFFF else chr(unit)


def _secure_string(text: str) -> SecureStringValue:
    return SECURE_STRING


_PRIMITIVES: dict[str, Callable[[str], Any]] = {
    "S": decode_string,
    "URI": decode_string,
    "XD": decode_string,
    "SBK": decode_string,
    "Version": str.strip,
    "G": _guid,
    "B": _boolean,
    "C": _char,
    "SB": _integer(-(2**7), 2**7 - 1),
    "By": _integer(0, 2**8 - 1),
    "I16": _integer(-(2**15), 2**15 - 1),
    "U16": _integer(0, 2**16 - 1),
    "I32": _integer(-(2**31), 2**31 - 1),
    "U32": _integer(0, 2**32 - 1),
    "I64": _integer(-(2**63), 2**63 - 1),
    "U64": _integer(0, 2**64 - 1),
    "Sg": float,
    "Db": float,
    "D": decimal.Decimal,
    "DT": parse_datetime,
    "TS": parse_duration,
    "BA": _bytes,
    "SS": _secure_string,
}
_COLLECTIONS = frozenset({"LST", "IE", "STK", "QUE"})

# --- reading ----------------------------------------------------------------------


def _local(element: etree._Element) -> str | None:
    """The element's name without the PowerShell namespace; None for other nodes."""
    tag = element.tag
    if not isinstance(tag, str):
        return None
    if tag.startswith(_PREFIX):
        return tag[len(_PREFIX) :]
    return tag


Opener = Callable[[], IO[bytes]]

_DOCTYPE_REFUSED = (
    "the file declares a document type; Export-Clixml never does, and entities in "
    "untrusted files are refused"
)
# Enough of the file's start to hold any prolog Export-Clixml could write.
_HEAD_BYTES = 64 * 1024
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


# The most values a file's references may stand for, all <Ref>s together; a real
# export's shared objects (server versions, identities) stand for a few per object.
MAX_EXPANDED_VALUES = 2_000_000


class _Reader:
    """One file: its name for messages, how to open it, and the reference tables."""

    def __init__(self, source: str, opener: Opener) -> None:
        self.source = source
        self.opener = opener
        self.type_chains: dict[str, tuple[str, ...]] = {}
        self.objects: dict[str, Any] = {}
        self.wanted: frozenset[str] = frozenset()
        # Values the file's <Ref>s stand for, counted as if copied out: references to
        # references can stand for far more than the file holds (a "reference bomb").
        self.expanded = 0
        self._sizes: dict[int, int] = {}

    def error(self, element: etree._Element | None, message: str) -> ClixmlError:
        line = element.sourceline if element is not None else None
        return ClixmlError(self.source, line, message)

    # The two passes share the walk: safe parser, root checks, top-level elements
    # handed over complete and then dropped.
    def _top_level(self) -> Iterator[etree._Element]:
        with self.opener() as handle:
            self._refuse_doctype(handle)
            # lxml keeps a per-thread log of parser errors; start from an empty one
            # so the cause reported is this file's.
            etree.clear_error_log()
            events = etree.iterparse(
                handle,
                events=("start", "end"),
                resolve_entities=False,
                no_network=True,
                load_dtd=False,
                dtd_validation=False,
                huge_tree=False,
                remove_comments=True,
                remove_pis=True,
            )
            depth = 0
            root: etree._Element | None = None
            try:
                for event, element in events:
                    if event == "start":
                        if root is None:
                            root = element
                            self._check_root(element)
                        depth += 1
                        continue
                    depth -= 1
                    if depth == 1:
                        yield element
                        element.clear(keep_tail=False)
                        while element.getprevious() is not None:
                            del root[0]
            except etree.XMLSyntaxError as exc:
                raise self._syntax_error(exc, events.error_log) from None

    def _syntax_error(
        self, exc: etree.XMLSyntaxError, error_log: etree._ListErrorLog
    ) -> ClixmlError:
        # The exception names the last of libxml2's complaints, sometimes only "no
        # element found"; the first one in the parser's log is the cause.
        first = next((e for e in error_log if e.level >= etree.ErrorLevels.ERROR), None)
        if first is not None:
            return ClixmlError(
                self.source, first.line or None, f"not well-formed XML: {first.message}"
            )
        if not exc.lineno:
            return ClixmlError(self.source, None, "empty: no XML element in the file")
        return ClixmlError(self.source, exc.lineno, f"not well-formed XML: {exc.msg}")

    def _refuse_doctype(self, handle: IO[bytes]) -> None:
        """Refuse a document type declaration before libxml2 reads it, so that every
        such file gets the same answer (libxml2 itself stops some entity bombs with an
        error of its own). The check of the parsed root below catches the rest."""
        head = handle.read(_HEAD_BYTES)
        handle.seek(0)
        for bom, encoding in _BOMS:
            if head.startswith(bom):
                text = head[len(bom) :].decode(encoding, "replace")
                break
        else:
            text = head.decode("utf-8", "replace")
        root = text.find("<Objs")
        prolog = text if root < 0 else text[:root]
        if "<!DOCTYPE" in prolog:
            line = prolog.count("\n", 0, prolog.index("<!DOCTYPE")) + 1
            raise ClixmlError(self.source, line, _DOCTYPE_REFUSED)

    def _check_root(self, root: etree._Element) -> None:
        info = root.getroottree().docinfo
        if info.doctype or info.internalDTD is not None or info.system_url:
            raise self.error(root, _DOCTYPE_REFUSED)
        tag = root.tag if isinstance(root.tag, str) else ""
        if _local(root) != "Objs" or (tag.startswith("{") and tag != _PREFIX + "Objs"):
            raise self.error(
                root,
                f"not a CLIXML file: the root element is <{tag}>, "
                f"expected <Objs> in {NAMESPACE}",
            )
        version = root.get("Version")
        if version != "1.1.0.1":
            log.debug("%s: CLIXML version %r, reading as 1.1.0.1", self.source, version)

    def referenced_ids(self) -> frozenset[str]:
        ids: set[str] = set()
        for top in self._top_level():
            for element in top.iter():
                if _local(element) == "Ref":
                    ids.add(self._ref_id(element))
        return frozenset(ids)

    def values(self) -> Iterator[Any]:
        self.wanted = self.referenced_ids()
        log.debug("%s: %d shared objects referenced", self.source, len(self.wanted))
        count = 0
        for top in self._top_level():
            yield self.value(top)
            count += 1
        log.debug("%s: read %d objects", self.source, count)

    # --- conversion ---------------------------------------------------------------

    def _ref_id(self, element: etree._Element) -> str:
        ref_id = element.get("RefId")
        if ref_id is None:
            raise self.error(element, f"<{_local(element)}> without a RefId")
        return ref_id

    def value(self, element: etree._Element) -> Any:
        name = _local(element)
        if name == "Obj":
            return self._object(element)
        if name == "Ref":
            ref_id = self._ref_id(element)
            if ref_id not in self.objects:
                raise self.error(
                    element, f"<Ref RefId={ref_id!r}> names no complete earlier object"
                )
            found = self.objects[ref_id]
            self.expanded += self._size(found)
            if self.expanded > MAX_EXPANDED_VALUES:
                raise self.error(
                    element,
                    f"its references stand for more than {MAX_EXPANDED_VALUES:,} "
                    "values; refusing to expand them",
                )
            return found
        if name == "Nil":
            return None
        convert = _PRIMITIVES.get(name or "")
        if convert is None:
            raise self.error(element, f"unexpected element <{name}>")
        if len(element):
            raise self.error(element, f"<{name}> holds elements, expected text")
        text = element.text or ""
        try:
            return convert(text)
        except (ValueError, ArithmeticError, binascii.Error) as exc:
            shown = text if len(text) <= 60 else text[:57] + "..."
            raise self.error(element, f"<{name}> holds {shown!r}: {exc}") from None

    def _size(self, value: Any) -> int:
        """How many values `value` holds when every shared part is counted each time
        it appears; remembered per object, so shared parts are walked once."""
        key = id(value)
        if key in self._sizes:
            return self._sizes[key]
        if isinstance(value, PSObject):
            size = 1 + sum(self._size(v) for v in value.properties.values())
        elif isinstance(value, tuple | list):
            size = 1 + sum(self._size(v) for v in value)
        elif isinstance(value, dict):
            size = 1 + sum(self._size(k) + self._size(v) for k, v in value.items())
        else:
            return 1
        self._sizes[key] = size
        return size

    def _type_names(self, element: etree._Element) -> tuple[str, ...]:
        if _local(element) == "TNRef":
            ref_id = self._ref_id(element)
            if ref_id not in self.type_chains:
                raise self.error(element, f"<TNRef RefId={ref_id!r}> names no <TN>")
            return self.type_chains[ref_id]
        names = []
        for child in element:
            if _local(child) != "T":
                raise self.error(child, f"<{_local(child)}> inside <TN>, expected <T>")
            names.append(decode_string(child.text or ""))
        chain = tuple(names)
        ref_id = element.get("RefId")
        if ref_id is not None:
            self.type_chains[ref_id] = chain
        return chain

    def _properties(self, element: etree._Element) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for child in element:
            if _local(child) is None:
                continue
            name = child.get("N")
            if name is None:
                raise self.error(child, f"<{_local(child)}> property without a name")
            found[decode_string(name)] = self.value(child)
        return found

    def _dictionary(self, element: etree._Element) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for entry in element:
            if _local(entry) is None:
                continue
            if _local(entry) != "En":
                raise self.error(
                    entry, f"<{_local(entry)}> inside <DCT>, expected <En>"
                )
            parts = {child.get("N"): child for child in entry if _local(child)}
            if set(parts) != {"Key", "Value"}:
                raise self.error(entry, "<En> needs exactly a Key and a Value")
            key = self.value(parts["Key"])
            try:
                hash(key)
            except TypeError:
                # Keys are strings in practice; an object key is keyed by its text.
                key = str(key)
            result[key] = self.value(parts["Value"])
        return result

    def _object(self, element: etree._Element) -> Any:
        type_names: tuple[str, ...] = ()
        text: str | None = None
        adapted: dict[str, Any] = {}
        extended: dict[str, Any] = {}
        content: list[Any] = []

        for child in element:
            name = _local(child)
            if name is None:
                continue
            if name in ("TN", "TNRef"):
                type_names = self._type_names(child)
            elif name == "ToString":
                text = decode_string(child.text or "")
            elif name == "Props":
                adapted.update(self._properties(child))
            elif name == "MS":
                extended.update(self._properties(child))
            elif name in _COLLECTIONS:
                content.append(tuple(self.value(c) for c in child if _local(c)))
            elif name == "DCT":
                content.append(self._dictionary(child))
            else:
                content.append(self.value(child))

        if len(content) > 1:
            raise self.error(element, "<Obj> holds more than one value")
        if content:
            is_enum = "System.Enum" in type_names or "Deserialized.System.Enum" in (
                type_names
            )
            result = text if is_enum and text is not None else content[0]
        else:
            result = PSObject(type_names, _merge(adapted, extended), text)

        ref_id = element.get("RefId")
        if ref_id is not None and ref_id in self.wanted:
            self.objects[ref_id] = result
        return result


def _merge(adapted: dict[str, Any], extended: dict[str, Any]) -> dict[str, Any]:
    """Adapted and extended properties in one mapping; extended wins on a name
    that differs only in case too, as PowerShell's lookup is case-insensitive."""
    merged = dict(adapted)
    folded = {key.casefold(): key for key in merged}
    for key, value in extended.items():
        earlier = folded.get(key.casefold())
        if earlier is not None:
            del merged[earlier]
        merged[key] = value
        folded[key.casefold()] = key
    return merged


# --- public API -------------------------------------------------------------------


def iter_file(path: str | Path) -> Iterator[Any]:
    """The file's top-level objects one at a time (normally PSObjects)."""
    path = Path(path)
    log.debug("reading %s", path)
    return _Reader(str(path), lambda: path.open("rb")).values()


def read_file(path: str | Path) -> list[Any]:
    """Every top-level object in the file."""
    return list(iter_file(path))


def loads(data: bytes | str, source: str = "<CLIXML text>") -> list[Any]:
    """Every top-level object in CLIXML held in memory (tests, small snippets)."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return list(_Reader(source, lambda: io.BytesIO(raw)).values())
