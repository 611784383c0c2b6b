"""Requirement 1: Exchange 2013 or later, on a supported build."""

import pytest

from ewsready.rules import configuration
from ewsready.rules import version as rules
from fixtures.expect import expect

pytestmark = pytest.mark.version
endpoint = pytest.mark.endpoint


@endpoint
def test_exchange_is_2013_or_later(server_version):
    """The calendar service needs the Exchange 2013 EWS schema."""
    expect(rules.at_least_2013(server_version))


@endpoint
def test_exchange_build_is_supported(server_version):
    """Out-of-support builds get no security fixes: a warning."""
    expect(rules.build_supported(server_version))


def test_every_exchange_server_is_2013_or_later(exchange_servers):
    """Every server in the organisation, as Get-ExchangeServer lists them."""
    expect(configuration.servers_at_least_2013(exchange_servers))


def test_every_exchange_server_build_is_supported(exchange_servers):
    """Product, update and support end per server: a warning when out of support."""
    expect(configuration.servers_supported(exchange_servers))
