"""Many mailboxes: the number of EWS requests per mailbox, counted by the lab."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import pytest

from ewsready.collect import Collector
from fixtures.audit import lab_settings
from lab import Lab, load_scenario
from tests.audits import lab_collector

MAILBOXES = 500


@pytest.fixture
def many(request):
    access = request.param
    base = load_scenario("healthy")
    scenario = base.with_generated_users(MAILBOXES, "contoso.example")
    scenario = replace(scenario, audit=replace(scenario.audit, access=access))
    with Lab(scenario) as lab:
        collector = Collector(lab_settings(lab), [lab.public_root_bundle], "lab root")
        try:
            yield lab, collector
        finally:
            collector.close()


@pytest.mark.parametrize("many", ["impersonation", "delegate"], indirect=True)
def test_calendar_reads_do_not_multiply_per_mailbox(many):
    lab, collector = many
    invited = len(lab.scenario.audit.invited)

    facts = collector.mailboxes()

    assert len(facts.reads) == invited
    assert all(read.ok for read in facts.reads), [r for r in facts.reads if not r.ok][
        :3
    ]
    operations = Counter(entry.operation for entry in lab.log if entry.operation)
    assert operations["ResolveNames"] == invited
    assert operations["ConvertId"] == 1  # the sign-in; the version is pinned after it
    if facts.access == "impersonation":
        assert operations["FindItem"] == invited
        assert operations["GetFolder"] == 0
    else:
        assert operations["GetFolder"] == math.ceil(invited / 100)
        assert operations["FindItem"] == 0
    assert operations["GetItem"] == 0
    assert set(operations) <= {"ConvertId", "ResolveNames", "FindItem", "GetFolder"}


def shell_pipelines_for(count: int) -> int:
    scenario = load_scenario("healthy").with_generated_users(count, "contoso.example")
    with Lab(scenario) as lab:
        collector = lab_collector(lab)
        try:
            collector.addresses()
            account, assignments, scopes = collector.impersonation()
            targets = collector.target_mailboxes()
        finally:
            collector.close()
        assert len(targets) == len(scenario.audit.invited)
        assert all(len(s.members) >= len(targets) for s in scopes)
        return len(lab.shell_log)


def test_impersonation_pipelines_do_not_grow_with_mailboxes():
    assert shell_pipelines_for(0) == shell_pipelines_for(1000)
