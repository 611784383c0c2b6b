"""What a URL answers without credentials: status, redirect, offered schemes, page kind."""

from __future__ import annotations

import logging
import re
import time

import requests
import urllib3

from ewsready.facts import HttpAnswer
from ewsready.transport import LimitedAdapter, diagnose

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
PASSWORD_INPUT = re.compile(rb"<input[^>]+type=[\"']?password", re.IGNORECASE)


class UnverifiedAdapter(LimitedAdapter):
    """Pinned addresses, no certificate check: only for requests without credentials.
    Answers arrive within the read timeout and are read no further than MAX_BODY.

    A pinned certificate fingerprint is not asserted either: these requests see the
    endpoint as the calendar service does, whatever certificate it presents.
    """

    max_answer = MAX_BODY * 4  # the status line and headers count too

    def send_unlimited(self, request, **kwargs):  # type: ignore[no-untyped-def]
        if "Authorization" in request.headers:
            raise ValueError("credentials must not go over an unverified connection")
        kwargs["verify"] = False
        return requests.adapters.HTTPAdapter.send(self, request, **kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[no-untyped-def]
        return requests.adapters.HTTPAdapter.build_connection_pool_key_attributes(
            self, request, verify, cert
        )


def anonymous_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = UnverifiedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def schemes(header_values: list[str]) -> tuple[str, ...]:
    """Scheme names from WWW-Authenticate values ('Basic realm="x"' -> 'Basic')."""
    found: list[str] = []
    for value in header_values:
        for part in value.split(","):
            token = part.strip().split(" ", 1)[0]
            if token and "=" not in token:
                found.append(token)
    return tuple(dict.fromkeys(found))


def probe(
    url: str, timeout: float, session: requests.Session | None = None
) -> HttpAnswer:
    """GET url without credentials and without following redirects."""
    session = session or anonymous_session()
    started = time.monotonic()
    try:
        with urllib3.warnings.catch_warnings():
            urllib3.warnings.simplefilter(
                "ignore", urllib3.exceptions.InsecureRequestWarning
            )
            response = session.get(
                url, allow_redirects=False, timeout=timeout, stream=True
            )
            try:
                body = response.raw.read(MAX_BODY, decode_content=True) or b""
            finally:
                response.close()
    except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
        log.debug(
            "GET %s failed after %.3f s: %s", url, time.monotonic() - started, exc
        )
        return HttpAnswer(url, "GET", None, error=_reason(exc))

    headers = response.raw.headers
    offered = (
        schemes(headers.getlist("WWW-Authenticate"))
        if hasattr(headers, "getlist")
        else ()
    )
    title = TITLE.search(body)
    content_type = response.headers.get("Content-Type")
    log.debug(
        "GET %s -> %s %s in %.3f s",
        url,
        response.status_code,
        content_type,
        time.monotonic() - started,
    )
    return HttpAnswer(
        url=url,
        method="GET",
        status=response.status_code,
        content_type=content_type,
        location=response.headers.get("Location"),
        auth_schemes=offered,
        html_title=(
            title.group(1).decode("utf-8", "replace").strip()[:200] if title else None
        ),
        has_password_form=bool(PASSWORD_INPUT.search(body)),
    )


def _reason(exc: BaseException) -> str:
    wire = diagnose(exc)
    if wire is not None:
        return wire[1]
    if isinstance(exc, requests.Timeout):
        return "no answer within the timeout"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__
