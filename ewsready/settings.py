"""Settings: command line over environment over the tenant file, validated once.

Every mistake a user can make here ends in one SettingsError whose message names the
setting, what was wrong with it and what is expected. The password never comes from the
command line: it comes from EWSREADY_PASSWORD, a password file or AWS Secrets Manager.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ewsready.secret import Secret

log = logging.getLogger(__name__)

ACCESS_MODES = ("impersonation", "delegate")
DEFAULT_RESOLVERS = ("1.1.1.1", "8.8.8.8", "9.9.9.9")
PASSWORD_ENV = "EWSREADY_PASSWORD"
SHELL_PASSWORD_ENV = "EWSREADY_SHELL_PASSWORD"
DIRECTORY_PASSWORD_ENV = "EWSREADY_DIRECTORY_PASSWORD"
REMOTE_PASSWORD_ENV = {"shell": SHELL_PASSWORD_ENV, "directory": DIRECTORY_PASSWORD_ENV}
# Local part and domain without separators or spaces; control characters are refused
# separately (see _clean), so a CSV with ';' or a pasted "Name <a@b>" is caught.
ADDRESS = re.compile(
    r"^[^@\s,;<>()\[\]\\\"]+@[^@\s,;<>()\[\]\\\"]+\.[^@\s,;<>()\[\]\\\"]+$"
)
HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class SettingsError(ValueError):
    """A user mistake in the settings; the message is meant to be shown as it is."""


def _clean(value: str, name: str) -> str:
    """Refuse control characters and undecodable bytes: they end up in reports,
    terminals and PowerShell commands."""
    import unicodedata

    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            raise SettingsError(
                f"{name}: {value.encode('utf-8', 'backslashreplace').decode()!r} "
                f"holds the control character U+{ord(char):04X}"
            )
    return value


def check_host(host: str, name: str) -> str:
    """A DNS name (labels of 1 to 63 letters, digits or hyphens) or an IP address."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise SettingsError(f"{name}: {host!r} is not a valid host name") from None
    labels = ascii_host.rstrip(".").split(".")
    if len(ascii_host) > 253 or not all(HOST_LABEL.match(x.lower()) for x in labels):
        raise SettingsError(f"{name}: {host!r} is not a valid host name")
    return host


@dataclass(frozen=True)
class Resolver:
    address: str
    port: int = 53


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, already checked."""

    organisation: str
    ews_url: str
    username: str
    password: Secret = field(repr=False)
    access: str = "impersonation"
    # An offline audit told no access mode: the report says impersonation was assumed.
    access_assumed: bool = False
    mailboxes: tuple[str, ...] = ()
    resolvers: tuple[Resolver, ...] = tuple(Resolver(a) for a in DEFAULT_RESOLVERS)
    ca_bundle: Path | None = None
    # The SHA-256 of the EWS certificate (64 upper-case hex digits), trusted whatever
    # its issuer: the signed-in checks run against exactly that certificate.
    ews_fingerprint: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    busy_budget: float = 60.0
    workers: int = 8
    # Lab mode only: loopback stands in for public addresses, and no connection may
    # leave loopback whatever a (simulated) DNS answer says.
    lab: bool = False
    # An offline audit (--from-export): Exchange's configuration from files, and no
    # connection to the EWS endpoint, even when its URL is given for comparison.
    offline: bool = False
    # Exchange's own configuration: a remote shell, or nothing (checks say so).
    shell_url: str | None = None
    shell_username: str | None = None
    shell_password: Secret | None = field(default=None, repr=False)
    shell_auth: str = "basic"
    # How long a PowerShell pipeline may go without an answer before the audit gives
    # up on the session for the rest of the run (a cmdlet over many mailboxes keeps
    # answering as it goes; one that stopped answering does not).
    shell_timeout: float = 120.0
    # The service account in Active Directory: a domain controller's PowerShell.
    directory_url: str | None = None
    directory_username: str | None = None
    directory_password: Secret | None = field(default=None, repr=False)
    directory_auth: str = "basic"

    @property
    def ews_host(self) -> str:
        return urlsplit(self.ews_url).hostname or ""

    @property
    def ews_port(self) -> int:
        parts = urlsplit(self.ews_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


# The tenant file: table -> key -> (type, description of what is expected).
SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], str]]] = {
    "": {"organisation": (str, "the organisation's name, as the report shows it")},
    "ews": {
        "url": (
            str,
            "the EWS URL given to the calendar service, https://.../EWS/Exchange.asmx",
        ),
        "access": (str, "'impersonation' or 'delegate'"),
        "fingerprint": (
            str,
            "the SHA-256 fingerprint of the EWS certificate, 'sha256:AB:CD:...'",
        ),
    },
    "service_account": {
        "username": (str, "the service account's user principal name"),
        "password_file": (str, "a file holding only the password"),
        "aws_secret_id": (str, "an AWS Secrets Manager secret holding the password"),
        "aws_region": (str, "the AWS region of that secret"),
    },
    "shell": {
        "url": (
            str,
            "Exchange's remote PowerShell, e.g. https://ex01.contoso.local/PowerShell",
        ),
        "username": (str, "an account in View-Only Organization Management"),
        "auth": (str, "'basic' (https only), 'ntlm' or 'kerberos'"),
        "password_file": (str, "a file holding only the shell account's password"),
        "timeout": (
            (int, float),
            "seconds a PowerShell pipeline may go without an answer, above 0",
        ),
    },
    "directory": {
        "url": (
            str,
            "a domain controller's remote PowerShell, e.g. "
            "https://dc01.contoso.local:5986/wsman",
        ),
        "username": (str, "an account that may read users (default: [shell]'s)"),
        "auth": (str, "'basic' (https only), 'ntlm' or 'kerberos'"),
        "password_file": (str, "a file holding only that account's password"),
    },
    "mailboxes": {
        "invited": (list, "a list of invited e-mail addresses"),
        "csv": (
            str,
            "a CSV file of invited addresses (first column, or a column named "
            "'address')",
        ),
    },
    "network": {
        "resolvers": (list, "a list of public DNS resolvers, each 'IP' or 'IP:port'"),
        "ca_bundle": (
            str,
            "a PEM file of CA certificates to trust besides the public store",
        ),
        "connect_timeout": ((int, float), "seconds, a number above 0"),
        "read_timeout": ((int, float), "seconds, a number above 0"),
        "busy_budget": (
            (int, float),
            "seconds spent waiting on a busy server, above 0",
        ),
        "workers": (int, "concurrent EWS requests, 1 to 64"),
    },
}


def read_tenant_file(path: Path) -> dict[str, Any]:
    """Parse and shape-check the tenant file; returns {'table.key': value}."""
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such tenant file") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise SettingsError(
            f"{path}: not UTF-8 text; save the tenant file as UTF-8"
        ) from None
    except IsADirectoryError:
        raise SettingsError(f"{path}: is a folder, not a tenant file") from None

    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in SCHEMA or key == "":
                known = ", ".join(f"[{t}]" for t in SCHEMA if t)
                raise SettingsError(f"{path}: unknown table [{key}]; known: {known}")
            for sub, subvalue in value.items():
                flat[_checked(path, key, sub, subvalue)] = subvalue
        else:
            flat[_checked(path, "", key, value)] = value
    return flat


def _checked(path: Path, table: str, key: str, value: Any) -> str:
    name = f"{table}.{key}" if table else key
    spec = SCHEMA[table].get(key)
    if spec is None:
        known = ", ".join(SCHEMA[table])
        where = f"[{table}] " if table else ""
        raise SettingsError(f"{path}: unknown setting {where}{key}; known: {known}")
    expected_type, description = spec
    if isinstance(value, bool) or not isinstance(value, expected_type):
        raise SettingsError(f"{path}: {name} = {value!r}; expected {description}")
    return name


def _number(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} = {value!r} is not a number") from None
    if not low < number <= high:
        raise SettingsError(
            f"{name} = {value!r} must be above {low:g} and at most {high:g}"
        )
    return number


# The authority's user information (user:password@), whether or not the URL parses.
_USERINFO = re.compile(r"^(?P<head>[^:/?#]*:)?//(?P<userinfo>[^/?#]*)@")


def check_ews_url(url: str, name: str = "ews.url") -> str:
    """An absolute https URL with a valid host; the path is judged by the ews_url check.

    A URL with a user name or password in it is refused first, so no message ever
    echoes a password written into the URL."""
    url = url.strip()
    # An EWS or PowerShell URL has no '@' anywhere: where one appears, a password may
    # be written into the URL (a '/', '?' or '#' in it hides where the host starts).
    if "@" in url or _USERINFO.match(url):
        table = name.partition(".")[0]
        account, secret = (
            ("service_account.username", PASSWORD_ENV)
            if table == "ews"
            else (f"{table}.username", REMOTE_PASSWORD_ENV.get(table, PASSWORD_ENV))
        )
        raise SettingsError(
            f"{name}: the URL holds a user name or password; give the account in "
            f"{account} and the password through {secret}"
        )
    url = _clean(url, name)
    if "#" in url:
        raise SettingsError(
            f"{name}: the URL holds '#'; an endpoint URL has no fragment, e.g. "
            "https://mail.example.com/EWS/Exchange.asmx"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # urllib raises here for a port out of range
    except ValueError as exc:
        raise SettingsError(f"{name} = {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(
            f"{name} = {url!r} is not an absolute URL; expected "
            "https://mail.example.com/EWS/Exchange.asmx"
        )
    if port == 0:
        raise SettingsError(f"{name} = {url!r} has port 0")
    check_host(parts.hostname, name)
    return url


def check_basic_user(username: str, name: str) -> str:
    """Basic authentication sends "user:password": a user name with a colon in it
    would be cut short by the server."""
    username = _clean(username, name)
    if ":" in username:
        raise SettingsError(
            f"{name} = {username!r} holds ':', which Basic authentication cannot send "
            "in a user name"
        )
    if not _latin1(username):
        raise SettingsError(
            f"{name} = {username!r} holds a character outside Latin-1, which Basic "
            "authentication cannot send; use the account's ASCII logon name"
        )
    return username


def _latin1(text: str) -> bool:
    """Whether Basic authentication can send the text (it travels as Latin-1)."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def check_basic_password(password: Secret, source: str) -> Secret:
    """Basic credentials travel as Latin-1 (requests and IIS agree on nothing else);
    a password with other characters would be refused as if it were wrong."""
    if not _latin1(password.reveal()):
        raise SettingsError(
            f"{source}: the password holds a character outside Latin-1, which Basic "
            "authentication cannot send; choose a password of Latin-1 characters"
        )
    return password


def check_address(address: str, name: str) -> str:
    address = _clean(address.strip(), name)
    if not ADDRESS.match(address):
        raise SettingsError(f"{name}: {address!r} is not an e-mail address")
    return address


def parse_resolver(text: str, name: str = "network.resolvers") -> Resolver:
    """'1.1.1.1', '1.1.1.1:5353', '2606:4700::1111' or '[2606:4700::1111]:53'."""
    text = text.strip()
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
        number = int(port) if port else 53
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"{name}: {text!r} is not an IP address or IP:port"
        ) from None
    return Resolver(host, number)


def read_small_file(path: Path, setting: str, limit: int) -> bytes:
    """A regular file's bytes, at most `limit` of them: a FIFO, a device or a folder
    named by mistake is refused instead of waited on or read without end."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SettingsError(
            f"{setting} {path}: cannot be read ({exc.strerror})"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise SettingsError(f"{setting} {path}: not a regular file")
    if info.st_size > limit:
        raise SettingsError(
            f"{setting} {path}: {info.st_size:,} bytes, more than the {limit:,} "
            "expected"
        )
    try:
        with path.open("rb") as handle:
            return handle.read(limit + 1)[:limit]
    except OSError as exc:
        raise SettingsError(
            f"{setting} {path}: cannot be read ({exc.strerror})"
        ) from None


def read_mailbox_csv(path: Path) -> tuple[str, ...]:
    """Invited addresses from a CSV: the 'address' column if there is one, else the first."""
    data = read_small_file(path, "mailboxes.csv", 64 * 1024 * 1024)
    try:
        text = data.decode("utf-8-sig")
        rows = [
            row
            for row in csv.reader(io.StringIO(text, newline=""))
            if row and any(c.strip() for c in row)
        ]
    except OSError as exc:
        raise SettingsError(
            f"mailboxes.csv {path}: cannot be read ({exc.strerror})"
        ) from None
    except UnicodeDecodeError:
        raise SettingsError(f"mailboxes.csv {path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise SettingsError(
            f"mailboxes.csv {path}: not a readable CSV ({exc})"
        ) from None
    if not rows:
        return ()
    header = [cell.strip().casefold() for cell in rows[0]]
    column = 0
    if "address" in header:
        column, rows = header.index("address"), rows[1:]
    elif not ADDRESS.match(rows[0][0].strip()):
        rows = rows[1:]
    return tuple(
        check_address(row[column], f"mailboxes.csv {path} line {n}")
        for n, row in enumerate(rows, start=2)
        if len(row) > column
    )


def read_password_file(
    path: Path, setting: str = "service_account.password_file"
) -> Secret:
    data = read_small_file(path, setting, 64 * 1024)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"{setting} {path}: not UTF-8 text") from None
    password = text.rstrip("\r\n")
    if not password:
        raise SettingsError(f"{setting} {path}: the file is empty")
    return Secret(password)


def read_aws_secret(secret_id: str, region: str | None) -> Secret:
    """The password from AWS Secrets Manager: a plain string or JSON with 'password'."""
    import json

    import boto3
    import botocore.exceptions

    try:
        client = boto3.client("secretsmanager", region_name=region)
        log.debug("reading AWS secret %s in %s", secret_id, region or "default region")
        value = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise SettingsError(
            f"service_account.aws_secret_id {secret_id!r}: cannot be read "
            f"({type(exc).__name__})"
        ) from None
    if value.lstrip().startswith("{"):
        try:
            value = json.loads(value)["password"]
        except (ValueError, KeyError, TypeError):
            raise SettingsError(
                f"service_account.aws_secret_id {secret_id!r}: JSON without a "
                "'password' key"
            ) from None
    return Secret(value)


def build_settings(
    file_values: Mapping[str, Any],
    env: Mapping[str, str],
    cli: Mapping[str, Any],
    base_dir: Path,
    aws_reader: Callable[[str, str | None], Secret] = read_aws_secret,
) -> Settings:
    """Merge the three sources (command line wins, then environment, then file)."""

    def pick(key: str, env_name: str | None = None) -> Any:
        if cli.get(key) not in (None, (), []):
            return cli[key]
        if env_name and env.get(env_name):
            return env[env_name]
        return file_values.get(key)

    def path(value: str) -> Path:
        try:
            candidate = Path(value).expanduser()
        except RuntimeError:
            raise SettingsError(
                f"{value!r}: the home folder in this path is unknown"
            ) from None
        return candidate if candidate.is_absolute() else base_dir / candidate

    url = pick("ews.url", "EWSREADY_URL")
    if not url:
        raise SettingsError(
            "ews.url is not set; expected the EWS URL, e.g. "
            "https://mail.example.com/EWS/Exchange.asmx"
        )
    url = check_ews_url(str(url))

    username = pick("service_account.username", "EWSREADY_USERNAME")
    if username:
        username = check_basic_user(str(username), "service_account.username")
    if not username:
        raise SettingsError(
            "service_account.username is not set; expected the service account's UPN"
        )

    access = pick("ews.access", "EWSREADY_ACCESS") or "impersonation"
    if access not in ACCESS_MODES:
        raise SettingsError(
            f"ews.access = {access!r} is not 'impersonation' or 'delegate'"
        )

    if env.get(PASSWORD_ENV):
        try:
            env[PASSWORD_ENV].encode("utf-8")
        except UnicodeEncodeError:
            raise SettingsError(
                f"{PASSWORD_ENV} holds bytes that are not UTF-8"
            ) from None
        password = Secret(env[PASSWORD_ENV])
    elif file_values.get("service_account.password_file"):
        password = read_password_file(
            path(file_values["service_account.password_file"])
        )
    elif file_values.get("service_account.aws_secret_id"):
        password = aws_reader(
            file_values["service_account.aws_secret_id"],
            file_values.get("service_account.aws_region"),
        )
    else:
        raise SettingsError(
            f"no password: set {PASSWORD_ENV}, or service_account.password_file, "
            "or service_account.aws_secret_id in the tenant file"
        )
    check_basic_password(password, "the service account's password")

    mailboxes: list[str] = []
    for n, address in enumerate(
        cli.get("mailboxes") or file_values.get("mailboxes.invited") or []
    ):
        if not isinstance(address, str):
            raise SettingsError(
                f"mailboxes.invited[{n}] = {address!r} is not an e-mail address"
            )
        mailboxes.append(check_address(address, f"mailboxes.invited[{n}]"))
    if file_values.get("mailboxes.csv") and not cli.get("mailboxes"):
        mailboxes.extend(read_mailbox_csv(path(file_values["mailboxes.csv"])))
    mailboxes = list(dict.fromkeys(mailboxes))
    no_mailbox = None if mailboxes else _no_mailbox_message(file_values, path)

    resolvers = file_values.get("network.resolvers")
    resolver_tuple = (
        tuple(parse_resolver(str(r)) for r in resolvers)
        if resolvers is not None
        else Settings.__dataclass_fields__["resolvers"].default
    )
    if not resolver_tuple:
        raise SettingsError(
            "network.resolvers is empty; expected at least one resolver IP"
        )

    ca_bundle = file_values.get("network.ca_bundle")
    ca_path = check_ca_bundle(path(ca_bundle)) if ca_bundle else None
    fingerprint = file_values.get("ews.fingerprint")
    pinned = check_fingerprint(fingerprint) if fingerprint is not None else None

    shell = _shell_settings(file_values, env, path)

    workers = file_values.get("network.workers", 8)
    if not 1 <= workers <= 64:
        raise SettingsError(f"network.workers = {workers!r} must be from 1 to 64")

    # Last, so that a mistake elsewhere in the file is named first.
    if no_mailbox:
        raise SettingsError(no_mailbox)

    return Settings(
        organisation=_clean(
            str(pick("organisation") or urlsplit(url).hostname or "organisation"),
            "organisation",
        ),
        ews_url=url,
        username=str(username),
        password=password,
        access=access,
        mailboxes=tuple(mailboxes),
        resolvers=resolver_tuple,
        ca_bundle=ca_path,
        ews_fingerprint=pinned,
        connect_timeout=_number(
            "network.connect_timeout",
            file_values.get("network.connect_timeout", 10),
            0,
            600,
        ),
        read_timeout=_number(
            "network.read_timeout", file_values.get("network.read_timeout", 30), 0, 3600
        ),
        busy_budget=_number(
            "network.busy_budget", file_values.get("network.busy_budget", 60), 0, 3600
        ),
        workers=int(workers),
        **shell,
    )


def _no_mailbox_message(
    file_values: Mapping[str, Any], path: Callable[[str], Path]
) -> str:
    """Why the settings name no invited mailbox: without one, the mailbox checks
    (calendar access, addresses, impersonation scope, permissions) have nothing to
    judge and would pass over an empty list."""
    expected = (
        "expected at least one invited address (mailboxes.invited, mailboxes.csv or "
        "--mailbox=ADDRESS)"
    )
    if file_values.get("mailboxes.csv"):
        return (
            f"mailboxes.csv {path(file_values['mailboxes.csv'])} names no address; "
            f"{expected}"
        )
    if "mailboxes.invited" in file_values:
        return f"mailboxes.invited is empty; {expected}"
    return f"no invited mailbox: mailboxes.invited is not set; {expected}"


def _shell_settings(
    file_values: Mapping[str, Any], env: Mapping[str, str], path: Callable[[str], Path]
) -> dict[str, Any]:
    """The [shell] table and the [directory] table, which borrows the shell's account
    when it names none of its own."""
    shell = _remote("shell", file_values, env, path, {}, "a read-only admin account")
    if shell:
        shell["shell_timeout"] = _number(
            "shell.timeout", file_values.get("shell.timeout", 120), 0, 3600
        )
    inherited = {
        key.removeprefix("shell_"): value
        for key, value in shell.items()
        if key in ("shell_username", "shell_password", "shell_auth")
    }
    directory = _remote(
        "directory",
        file_values,
        env,
        path,
        inherited,
        "an account that may read the service account in Active Directory",
    )
    return {**shell, **directory}


def _remote(
    table: str,
    file_values: Mapping[str, Any],
    env: Mapping[str, str],
    path: Callable[[str], Path],
    inherited: Mapping[str, Any],
    account: str,
) -> dict[str, Any]:
    """A remote PowerShell endpoint's table: all or nothing, Basic only over https,
    the password from the environment or a file (or `inherited` from another table).
    """
    url = file_values.get(f"{table}.url")
    if not url:
        extra = [k for k in file_values if k.startswith(f"{table}.")]
        if extra:
            raise SettingsError(f"[{table}] needs url as well as {', '.join(extra)}")
        return {}
    url = check_ews_url(str(url), f"{table}.url")
    auth = file_values.get(f"{table}.auth", inherited.get("auth", "basic"))
    if auth not in ("basic", "ntlm", "kerberos"):
        raise SettingsError(
            f"{table}.auth = {auth!r} is not 'basic', 'ntlm' or 'kerberos'"
        )
    if auth == "basic" and not url.startswith("https:"):
        raise SettingsError(f"{table}.url: Basic authentication needs an https URL")
    username = file_values.get(f"{table}.username") or inherited.get("username")
    if not username:
        raise SettingsError(f"{table}.username is not set; expected {account}")
    env_name = REMOTE_PASSWORD_ENV[table]
    if env.get(env_name):
        password = Secret(env[env_name])
    elif file_values.get(f"{table}.password_file"):
        password = read_password_file(
            path(file_values[f"{table}.password_file"]), f"{table}.password_file"
        )
    elif inherited.get("password") and not file_values.get(f"{table}.username"):
        password = inherited["password"]
    else:
        raise SettingsError(
            f"no {table} password: set {env_name} or {table}.password_file"
        )
    if auth == "basic":
        check_basic_password(password, f"the [{table}] account's password")
    return {
        f"{table}_url": url,
        f"{table}_username": (
            check_basic_user(str(username), f"{table}.username")
            if auth == "basic"
            else _clean(str(username), f"{table}.username")
        ),
        f"{table}_password": password,
        f"{table}_auth": auth,
    }


def check_fingerprint(value: str, name: str = "ews.fingerprint") -> str:
    """'sha256:AB:CD:...' (32 hex pairs, with or without colons or the prefix) as 64
    upper-case hex digits."""
    text = _clean(value.strip(), name)
    algorithm, digits = "", text
    prefix, separator, rest = text.partition(":")
    if separator and prefix.casefold().replace("-", "") in ("sha256", "sha1", "md5"):
        algorithm, digits = prefix.casefold().replace("-", ""), rest
    hex_digits = digits.replace(":", "").replace(" ", "").upper()
    expected = "expected 'sha256:' and 32 hex pairs, e.g. 'sha256:AB:CD:...:EF'"
    if algorithm in ("sha1", "md5"):
        label = {"sha1": "SHA-1", "md5": "MD5"}[algorithm]
        raise SettingsError(
            f"{name} = {value!r}: {label} fingerprints are not accepted, only SHA-256; "
            f"{expected}"
        )
    if not algorithm and len(hex_digits) == 40 and _is_hex(hex_digits):
        raise SettingsError(
            f"{name} = {value!r} looks like the SHA-1 thumbprint Get-ExchangeCertificate "
            f"shows; the pin is the certificate's SHA-256: {expected}"
        )
    if len(hex_digits) != 64 or not _is_hex(hex_digits):
        raise SettingsError(
            f"{name} = {value!r} is not a SHA-256 fingerprint; {expected}"
        )
    return hex_digits


def _is_hex(text: str) -> bool:
    return all(c in "0123456789ABCDEF" for c in text)


def check_ca_bundle(path: Path) -> Path:
    """The file must exist and hold at least one PEM certificate."""
    from cryptography import x509

    data = read_small_file(path, "network.ca_bundle", 16 * 1024 * 1024)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise SettingsError(
            f"network.ca_bundle {path}: holds no PEM certificate; expected "
            "'-----BEGIN CERTIFICATE-----' blocks"
        )
    return path


def export_settings(
    folder: Path,
    manifest: Mapping[str, Any],
    cli: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The settings of an offline audit. The export holds Exchange's configuration;
    the service account comes from its manifest (collect.ps1 -ServiceAccount) unless
    --service-account or EWSREADY_USERNAME names it, and the access mode and target
    mailboxes, which an export cannot know, from --access / EWSREADY_ACCESS and
    --mailbox (else the mailboxes collect.ps1 was limited to). A value that
    contradicts the manifest is a mistake naming both."""
    env = os.environ if env is None else env
    url = cli.get("ews.url") or ""
    if url:
        url = check_ews_url(str(url), "--ews-url")

    recorded = manifest.get("service_account")
    recorded = recorded.strip() if isinstance(recorded, str) else ""
    username = recorded
    for given, source in (
        (cli.get("service_account.username"), "--service-account"),
        (env.get("EWSREADY_USERNAME"), "EWSREADY_USERNAME"),
    ):
        if not given:
            continue
        username = check_address(str(given), source)
        if recorded and username.casefold() != recorded.casefold():
            raise SettingsError(
                f"{source}={username} contradicts the export: its manifest.json names "
                f"the service account {recorded} (collect.ps1 -ServiceAccount)"
            )
        break

    access = cli.get("ews.access") or env.get("EWSREADY_ACCESS") or ""
    if access and access not in ACCESS_MODES:
        raise SettingsError(
            f"EWSREADY_ACCESS = {access!r} is not 'impersonation' or 'delegate'"
        )

    limited = manifest.get("mailbox_filter") or []
    limited = [str(a) for a in limited] if isinstance(limited, list) else []
    mailboxes = [check_address(str(a), "--mailbox") for a in cli.get("mailboxes", ())]
    known = {a.casefold() for a in limited}
    for address in mailboxes:
        if known and address.casefold() not in known:
            shown = ", ".join(limited[:3]) + (", ..." if len(limited) > 3 else "")
            raise SettingsError(
                f"--mailbox={address} contradicts the export: collect.ps1 read only "
                f"the {len(limited)} mailbox(es) given to -Mailbox ({shown})"
            )
    return Settings(
        organisation=f"export in {folder}",
        ews_url=url,
        username=username,
        password=Secret(""),
        access=access or "impersonation",
        access_assumed=not access,
        mailboxes=tuple(dict.fromkeys(mailboxes or limited)),
        offline=True,
    )


def settings_from_sources(
    tenant_file: Path | None,
    cli: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    values = read_tenant_file(tenant_file) if tenant_file else {}
    base = tenant_file.parent if tenant_file else Path.cwd()
    try:
        return build_settings(values, env, cli, base)
    except SettingsError as exc:
        if tenant_file and not str(exc).startswith(str(tenant_file)):
            raise SettingsError(f"{tenant_file}: {exc}") from None
        raise
