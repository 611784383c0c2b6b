import base64
import logging

import pytest

from ewsready import logs
from ewsready.secret import Secret

CANARY = "canary-Pw-123"


@pytest.fixture(autouse=True)
def installed():
    logs.install()
    logs.register(Secret(CANARY), "svc@contoso.example")


@pytest.mark.parametrize(
    "message",
    [
        f"password is {CANARY}",
        "headers {'Authorization': 'Basic "
        + base64.b64encode(f"svc@contoso.example:{CANARY}".encode()).decode()
        + "'}",
        "Authorization: NTLM TlRMTVNTUAABAAAAB4IIog==",
        "Authorization: Basic " + base64.b64encode(b"other:thing").decode(),
    ],
)
def test_records_are_redacted(caplog, message):
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("ewsready.test").debug("%s", message)
    assert CANARY not in caplog.text
    assert "TlRMTVNTUA" not in caplog.text and "b3RoZXI6dGhpbmc=" not in caplog.text
    assert "********" in caplog.text


def test_exchangelib_debug_is_held_back():
    assert logging.getLogger("exchangelib").getEffectiveLevel() >= logging.INFO


def test_secret_never_shows_itself():
    secret = Secret(CANARY)
    assert CANARY not in f"{secret} {secret!r} {secret:>20}"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


def test_a_shell_session_masks_its_own_password(caplog):
    from ewsready.probes.shell import LiveShell, ShellTarget

    LiveShell(
        ShellTarget(
            "https://ex01.contoso.local/PowerShell",
            "reader@contoso.example",
            Secret("shell-canary-9d1"),
        )
    )
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("pypsrp.test").debug("sent password shell-canary-9d1")
    assert "shell-canary-9d1" not in caplog.text


def test_escape_sequences_in_log_lines_are_spelled_out(caplog):
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("pypsrp.test").warning(
            "name %s\nnext line", "B\x1b[41mX\x1b[2K"
        )
    assert "\x1b" not in caplog.text
    assert "B\\x1b[41mX\\x1b[2K\nnext line" in caplog.text
