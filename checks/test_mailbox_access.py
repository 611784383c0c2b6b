"""Requirement 7 as EWS sees it: the service account can use every invited calendar."""

import pytest

from ewsready.rules import agreement
from ewsready.rules import mailboxes as rules
from fixtures.expect import expect

pytestmark = pytest.mark.mailbox_access
endpoint = pytest.mark.endpoint


def configured_access(collector, settings):  # type: ignore[no-untyped-def]
    """What Exchange's configuration grants per target mailbox, or why it is unknown."""
    targets = collector.target_mailboxes()
    if settings.access == "impersonation":
        return agreement.impersonation_configured(collector.impersonation(), targets)
    return agreement.delegation_configured(collector.calendar_permissions(), targets)


@endpoint
def test_service_account_reads_every_calendar(mailbox_access, collector, settings):
    """Impersonating each user, or as a delegate with Editor, read-only."""
    expect(
        rules.every_calendar_readable(
            mailbox_access, settings.username, configured_access(collector, settings)
        )
    )


@endpoint
def test_configuration_agrees_with_what_ews_allows(mailbox_access, collector, settings):
    """Per mailbox: the grant Exchange's configuration shows and what EWS did agree."""
    expect(
        agreement.configuration_matches_ews(
            settings.username, mailbox_access, configured_access(collector, settings)
        )
    )
