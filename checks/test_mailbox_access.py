"""Requirement 7 as EWS sees it: the service account can use every invited calendar."""

import pytest

from ewsready.rules import mailboxes as rules
from fixtures.expect import expect

pytestmark = pytest.mark.mailbox_access
endpoint = pytest.mark.endpoint


@endpoint
def test_service_account_reads_every_calendar(mailbox_access, settings):
    """Impersonating each user, or as a delegate with Editor, read-only."""
    expect(rules.every_calendar_readable(mailbox_access, settings.username))
