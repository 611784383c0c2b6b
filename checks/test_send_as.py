"""Requirement 7 without impersonation: Send As on each invited mailbox."""

import pytest

from ewsready.rules import configuration
from fixtures.expect import expect, under_access_mode

pytestmark = pytest.mark.send_as


def test_service_account_may_send_as_every_user(collector, settings):
    """Get-ADPermission: the Send-As extended right, and no Deny, on each mailbox."""
    mailboxes, entries, unread = collector.send_as()
    expect(
        under_access_mode(
            configuration.send_as_on_every_mailbox(
                settings.access,
                settings.username,
                mailboxes,
                entries,
                collector.target_mailboxes(),
                unread,
            ),
            settings,
        )
    )
