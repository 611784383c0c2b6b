"""Requirement 1: Exchange 2013 or later, on a supported build."""

import pytest

from ewsready.rules import version as rules
from fixtures.expect import expect

pytestmark = pytest.mark.version


def test_exchange_is_2013_or_later(server_version):
    """The calendar service needs the Exchange 2013 EWS schema."""
    expect(rules.at_least_2013(server_version))


def test_exchange_build_is_supported(server_version):
    """Out-of-support builds get no security fixes: a warning."""
    expect(rules.build_supported(server_version))
