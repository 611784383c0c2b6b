"""Requirement 6: the service account signs in."""

import pytest

from ewsready.rules import logon as rules
from fixtures.expect import expect

pytestmark = pytest.mark.logon
endpoint = pytest.mark.endpoint


@endpoint
def test_service_account_signs_in_with_basic(logon, collector):
    """A 401 while Basic is offered means a wrong, expired or locked password; Active
    Directory, when it can be read, says which."""
    expect(rules.service_account_logs_on(logon, collector.directory_account()))
