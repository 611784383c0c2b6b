"""Requirement 7 without impersonation: Editor on each user's calendar."""

import pytest

from ewsready.rules import configuration
from fixtures.expect import expect, under_access_mode

pytestmark = pytest.mark.calendar_permission


def test_service_account_is_editor_on_every_calendar(collector, settings):
    """The calendar is found by FolderType, so Kalender and Calendrier count too."""
    calendars, rights, unread = collector.calendar_permissions()
    expect(
        under_access_mode(
            configuration.calendar_editor_on_every_mailbox(
                settings.access,
                settings.username,
                calendars,
                rights,
                collector.target_mailboxes(),
                unread,
            ),
            settings,
        )
    )
