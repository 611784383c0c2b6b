"""Requirement 4: the URL is the EWS endpoint, not OWA or anything else."""

import pytest

from ewsready.rules import configuration
from ewsready.rules import ews_url as rules
from fixtures.expect import expect

pytestmark = pytest.mark.ews_url
endpoint = pytest.mark.endpoint


@endpoint
def test_url_is_the_ews_endpoint(ews_url):
    """https://HOST/EWS/Exchange.asmx, the path the calendar service posts SOAP to."""
    expect(rules.is_ews_path(ews_url))


@endpoint
def test_url_answers_like_ews(ews_url_answer):
    """Without credentials EWS asks for them; OWA redirects to a sign-in page."""
    expect(rules.answers_like_ews(ews_url_answer))


def test_exchange_publishes_the_ews_url(ews_directories, given_ews_url, stand_in_port):
    """ExternalUrl set, https, /EWS/Exchange.asmx, and the URL the service is given."""
    expect(
        configuration.external_url_published(
            ews_directories, given_ews_url, stand_in_port
        )
    )
