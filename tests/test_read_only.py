"""The audit only reads: every request the lab received during a full audit."""

from collections import Counter

import pytest

from ewsready.collect import Collector
from fixtures.audit import lab_settings
from lab import Lab, load_scenario

READ_OPERATIONS = {"ConvertId", "ResolveNames", "GetFolder", "FindItem", "GetItem"}


@pytest.mark.parametrize("name", ["contoso", "delegate_reviewer", "owa_url"])
def test_a_full_audit_sends_only_read_operations(name):
    with Lab(load_scenario(name)) as lab:
        collector = Collector(lab_settings(lab), [lab.public_root_bundle], "lab root")
        try:
            collector.reachability()
            collector.certificates()
            collector.url()
            collector.logon()
            collector.addresses()
            collector.mailboxes()
        finally:
            collector.close()
        log = list(lab.log)

    operations = Counter(entry.operation for entry in log if entry.operation)
    assert operations, "the audit reached EWS"
    assert set(operations) <= READ_OPERATIONS
    assert {entry.method for entry in log} <= {"GET", "POST"}
