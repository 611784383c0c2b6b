"""Requirement 8: each invited address is the mailbox's primary SMTP address."""

import pytest

from ewsready.rules import mailboxes as rules
from fixtures.expect import expect

pytestmark = pytest.mark.invited_address
endpoint = pytest.mark.endpoint


@endpoint
def test_invited_addresses_are_primary_smtp_addresses(invited_addresses):
    """Linking matches users by primary SMTP address; an alias fails."""
    expect(rules.invited_addresses_are_primary(invited_addresses))
