"""Requirement 2: EWS offers Basic authentication on the wire."""

import pytest

from ewsready.rules import basic_auth as rules
from ewsready.rules import configuration
from fixtures.expect import expect

pytestmark = pytest.mark.basic_auth
endpoint = pytest.mark.endpoint


@endpoint
def test_ews_offers_basic_authentication(ews_offer, ews_directories):
    """The calendar service signs in with Basic; EWS must offer it. The shell's view
    of the virtual directories decides which fix applies."""
    expect(rules.basic_offered(ews_offer, ews_directories))


def test_basic_is_on_in_every_ews_virtual_directory(ews_directories):
    """BasicAuthentication True on each server's EWS virtual directory."""
    expect(configuration.basic_configured(ews_directories))


@endpoint
def test_configured_basic_reaches_the_wire(ews_directories, ews_offer):
    """Configured but not offered: something in front changes the sign-in methods."""
    expect(configuration.basic_configured_and_offered(ews_directories, ews_offer))
