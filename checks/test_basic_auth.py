"""Requirement 2: EWS offers Basic authentication on the wire."""

import pytest

from ewsready.rules import basic_auth as rules
from fixtures.expect import expect

pytestmark = pytest.mark.basic_auth


def test_ews_offers_basic_authentication(ews_offer):
    """The calendar service signs in with Basic; EWS must offer it."""
    expect(rules.basic_offered(ews_offer))
