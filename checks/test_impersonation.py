"""Requirement 7 as Exchange is configured: ApplicationImpersonation over the mailboxes."""

import pytest

from ewsready.rules import configuration
from fixtures.expect import expect, under_access_mode

pytestmark = pytest.mark.impersonation


def test_impersonation_reaches_every_target_mailbox(collector, settings):
    """An enabled assignment reaches the service account; its scope covers the targets."""
    account, assignments, scopes = collector.impersonation()
    expect(
        under_access_mode(
            configuration.impersonation_reaches_every_mailbox(
                settings.access,
                settings.username,
                account,
                assignments,
                scopes,
                collector.target_mailboxes(),
            ),
            settings,
        )
    )
