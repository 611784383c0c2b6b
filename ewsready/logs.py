"""Logging that cannot leak the password.

exchangelib logs request headers at DEBUG, Authorization included (the base64 of
user:password), so its loggers are held at INFO. Beyond that, every log record made in
the process passes through a redactor: registered secrets, their Basic-auth encodings
and any Authorization header value are replaced before a handler sees the message.
"""

from __future__ import annotations

import base64
import logging
import re
import threading

from ewsready.secret import MASK, Secret
from ewsready.text import printable

AUTH_HEADER = re.compile(
    r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)"
    r"((?:basic|bearer|ntlm|negotiate)\s+)?"
    r"[A-Za-z0-9+/=._~-]{4,}"
)
NOISY = ("exchangelib", "urllib3.connectionpool", "requests_ntlm", "spnego")

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def register(secret: Secret, username: str | None = None) -> None:
    """Mask this secret (and its Basic encodings with username) in every log record."""
    value = secret.reveal()
    if not value:
        return
    forms = {value}
    if username:
        for user in {username, username.split("@")[0]}:
            forms.add(base64.b64encode(f"{user}:{value}".encode()).decode())
    with _lock:
        _secrets.update(f for f in forms if len(f) >= 3)


def redact(text: str) -> str:
    text = AUTH_HEADER.sub(lambda m: m.group(1) + (m.group(2) or "") + MASK, text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def install() -> None:
    """Hold noisy loggers at INFO and wrap the record factory once per process."""
    global _installed
    for name in NOISY:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):  # type: ignore[no-untyped-def]
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except (
            Exception
        ):  # noqa: BLE001 - a broken format is the caller's bug, not ours
            return record
        # Server and tenant text reaches the terminal through log lines too: an
        # escape sequence in a display name must not repaint the screen.
        clean = printable(redact(message), keep="\n\t")
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
