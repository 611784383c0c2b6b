"""Requirement 3: a publicly trusted, complete, correctly named, current, strong certificate."""

import pytest

from ewsready.rules import certificate as rules
from ewsready.rules import configuration
from fixtures.expect import expect, for_each

pytestmark = pytest.mark.certificate
endpoint = pytest.mark.endpoint


@endpoint
def test_certificate_chains_to_a_public_root(certificates):
    """The calendar service trusts only public certificate authorities."""
    expect(for_each(rules.chains_to_public_root, certificates))


@endpoint
def test_server_sends_the_whole_chain(certificates):
    """Intermediates must be sent: the calendar service does not fetch them."""
    expect(for_each(rules.sends_whole_chain, certificates))


@endpoint
def test_certificate_names_the_ews_host(certificates):
    """The certificate must name the host in the EWS URL."""
    expect(for_each(rules.names_the_host, certificates))


@endpoint
def test_certificate_is_within_its_validity(certificates):
    """Not expired; a warning when fewer than 30 days remain."""
    expect(for_each(rules.within_validity, certificates))


@endpoint
def test_certificate_key_and_signature_are_strong(certificates):
    """RSA 2048 or EC 256 at least, signed with SHA-256 or better."""
    expect(for_each(rules.strong_key_and_signature, certificates))


@endpoint
def test_tls_version_is_current(certificates):
    """TLS 1.2 or later is negotiated."""
    expect(for_each(rules.current_tls, certificates))


def test_exchange_serves_a_fit_certificate(exchange_certificates, collector):
    """The certificate bound to IIS: public CA, the EWS host's name, current."""
    expect(
        configuration.iis_certificate(
            exchange_certificates,
            collector.host or None,
            collector.presented_thumbprints(),
        )
    )
