"""Scenario files: what the lab refuses to pretend it can serve."""

import re

import pytest

from lab import ScenarioError
from lab.scenario import parse_scenario


@pytest.mark.parametrize(
    "mailbox, message",
    [
        (
            {"primary": "b@contoso.example", "display_name": "B\x1b[41mX"},
            "'b@contoso.example' display_name: U+001B cannot travel in XML",
        ),
        (
            {"primary": "b@contoso.example", "aliases": ["x\x00@contoso.example"]},
            "'b@contoso.example' aliases: U+0000 cannot travel in XML",
        ),
        (
            {"primary": "b@contoso.example", "folder_permission_error": "boom\x07"},
            "'b@contoso.example' folder_permission_error: U+0007",
        ),
    ],
)
def test_text_xml_cannot_carry_is_refused(mailbox, message):
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario({"mailboxes": [mailbox]}, "x")


def test_newlines_tabs_and_unicode_are_fine():
    scenario = parse_scenario(
        {
            "mailboxes": [
                {"primary": "b@contoso.example", "display_name": "Ben\n\t\u202eRTL"}
            ]
        },
        "x",
    )
    assert scenario.mailboxes[0].display_name == "Ben\n\t\u202eRTL"
