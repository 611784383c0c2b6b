"""Requirement 7 as Exchange is configured: ApplicationImpersonation over the mailboxes."""

import pytest

from ewsready.rules import configuration
from fixtures.expect import expect

pytestmark = pytest.mark.impersonation


def test_impersonation_reaches_every_target_mailbox(collector, settings):
    """An enabled assignment reaches the service account; its scope covers the targets."""
    account, assignments, scopes = collector.impersonation()
    expect(
        configuration.impersonation_reaches_every_mailbox(
            settings.access,
            settings.username,
            account,
            assignments,
            scopes,
            collector.target_mailboxes(),
        )
    )
