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


@pytest.mark.parametrize(
    "data, message",
    [
        ({"generated_users": "many"}, "generated_users: 'many' is not a whole number"),
        ({"mailboxes": [{"primary": 5}]}, "primary: 5 is not text"),
        ({"auth_schemes": "Basic"}, "auth_schemes: 'Basic' is not a list of text"),
        ({"busy_first_calls": True}, "busy_first_calls: True is not a whole number"),
        ({"account": {"password_expires_in_days": "soon"}}, "is not a number"),
    ],
)
def test_values_of_the_wrong_kind_are_one_clear_error(data, message):
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario(data, "x")


def test_a_scenario_file_that_is_not_toml_is_one_clear_error(tmp_path, monkeypatch):
    from lab import scenario

    (tmp_path / "broken.toml").write_text("name = [unclosed\n")
    monkeypatch.setattr(scenario, "SCENARIO_DIR", tmp_path)
    with pytest.raises(ScenarioError, match="scenario broken: not valid TOML"):
        scenario.load_scenario("broken")
