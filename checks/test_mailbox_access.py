"""Requirement 7 as EWS sees it: the service account can use every invited calendar."""

import pytest

from ewsready.rules import agreement
from ewsready.rules import mailboxes as rules
from fixtures.expect import expect

pytestmark = pytest.mark.mailbox_access
endpoint = pytest.mark.endpoint


@endpoint
def test_service_account_reads_every_calendar(mailbox_access, settings):
    """Impersonating each user, or as a delegate with Editor, read-only."""
    expect(rules.every_calendar_readable(mailbox_access, settings.username))


@endpoint
def test_configuration_agrees_with_what_ews_allows(mailbox_access, collector, settings):
    """Per mailbox: the grant Exchange's configuration shows and what EWS did agree."""
    targets = collector.target_mailboxes()
    if settings.access == "impersonation":
        configured = agreement.impersonation_configured(
            collector.impersonation(), targets
        )
    else:
        configured = agreement.delegation_configured(
            collector.calendar_permissions(), targets
        )
    expect(
        agreement.configuration_matches_ews(
            settings.username, mailbox_access, configured
        )
    )
