"""Requirement 5: the EWS endpoint is reachable from the internet."""

import pytest

from ewsready.rules import reachability as rules
from fixtures.expect import expect

pytestmark = pytest.mark.reachability
endpoint = pytest.mark.endpoint


@endpoint
def test_host_name_resolves_in_public_dns(reachability):
    """The calendar service finds the server through public DNS."""
    expect(rules.host_resolves(reachability))


@endpoint
def test_every_address_is_globally_routable(reachability):
    """Every published address must be reachable from the internet."""
    expect(rules.addresses_are_global(reachability))


@endpoint
def test_endpoint_accepts_tcp_and_tls(reachability):
    """TCP and a TLS handshake to the EWS port succeed within the timeout."""
    expect(rules.endpoint_accepts_connections(reachability))
