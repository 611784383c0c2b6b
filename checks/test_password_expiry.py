"""Requirement 6, from Active Directory: the service account's password stays valid."""

import datetime as dt

import pytest

from ewsready.rules import password
from fixtures.expect import expect

pytestmark = pytest.mark.password_expiry


def test_service_account_password_is_not_expiring(collector, settings):
    """Get-ADUser: enabled, not locked, and the password not expired nor expiring
    within 14 days."""
    expect(
        password.password_not_expiring(
            settings.username, collector.directory_account(), dt.datetime.now(dt.UTC)
        )
    )
