"""Requirement 3: a publicly trusted, complete, correctly named, current, strong certificate."""

import pytest

from ewsready.rules import certificate as rules
from fixtures.expect import expect

pytestmark = pytest.mark.certificate


def test_certificate_chains_to_a_public_root(certificate):
    """The calendar service trusts only public certificate authorities."""
    expect(rules.chains_to_public_root(certificate))


def test_server_sends_the_whole_chain(certificate):
    """Intermediates must be sent: the calendar service does not fetch them."""
    expect(rules.sends_whole_chain(certificate))


def test_certificate_names_the_ews_host(certificate):
    """The certificate must name the host in the EWS URL."""
    expect(rules.names_the_host(certificate))


def test_certificate_is_within_its_validity(certificate):
    """Not expired; a warning when fewer than 30 days remain."""
    expect(rules.within_validity(certificate))


def test_certificate_key_and_signature_are_strong(certificate):
    """RSA 2048 or EC 256 at least, signed with SHA-256 or better."""
    expect(rules.strong_key_and_signature(certificate))


def test_tls_version_is_current(certificate):
    """TLS 1.2 or later is negotiated."""
    expect(rules.current_tls(certificate))
