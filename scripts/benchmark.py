"""Benchmark: how the mailbox checks scale, against the lab on loopback.

Prints, for each access mode and mailbox count, the wall time of address resolution and
calendar reads, the EWS requests the lab received per mailbox, and the process's peak
resident memory so far (lab included, so an upper bound). Figures only; nothing is
asserted. The lab runs in the same process, so the client and the server share a core
budget and the GIL: real servers answer slower, but in parallel.

    python scripts/benchmark.py [--mailboxes 100 1000] [--workers 8]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ewsready.collect import Collector  # noqa: E402
from fixtures.audit import lab_settings  # noqa: E402
from lab import Lab, load_scenario  # noqa: E402
from lab.scenario import Scenario  # noqa: E402


def scenario_for(count: int, access: str) -> Scenario:
    """The healthy scenario with exactly `count` invited mailboxes: its own invited
    mailboxes, then generated users up to the count."""
    base = load_scenario("healthy")
    own = len(base.audit.invited)
    if count < own:
        raise ValueError(
            f"--mailboxes {count}: the healthy scenario alone invites {own} mailboxes"
        )
    scenario = base.with_generated_users(count - own, "contoso.example")
    return replace(scenario, audit=replace(scenario.audit, access=access))


def measure(count: int, access: str, workers: int) -> dict[str, float]:
    scenario = scenario_for(count, access)
    with Lab(scenario) as lab:
        settings = replace(lab_settings(lab), workers=workers)
        collector = Collector(settings, [lab.public_root_bundle], "lab root")
        try:
            collector.logon()
            lab.clear_log()
            started = time.perf_counter()
            collector.addresses()
            resolved = time.perf_counter()
            facts = collector.mailboxes()
            finished = time.perf_counter()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        finally:
            collector.close()
        operations = Counter(entry.operation for entry in lab.log if entry.operation)
    mailboxes = len(scenario.audit.invited)
    return {
        "mailboxes": mailboxes,
        "resolve_s": resolved - started,
        "read_s": finished - resolved,
        "per_mailbox_ms": 1000 * (finished - started) / mailboxes,
        "requests_per_mailbox": sum(operations.values()) / mailboxes,
        "ok": sum(r.ok for r in facts.reads),
        "peak_mib": peak / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    for count in args.mailboxes:
        try:
            scenario_for(count, "impersonation")
        except ValueError as exc:
            parser.error(str(exc))

    header = (
        f"{'access':<14}{'mailboxes':>10}{'resolve s':>11}{'read s':>9}"
        f"{'ms/mailbox':>12}{'req/mailbox':>13}{'ok':>7}{'peak RSS MiB':>14}"
    )
    print(header)
    for access in ("impersonation", "delegate"):
        for count in args.mailboxes:
            r = measure(count, access, args.workers)
            print(
                f"{access:<14}{r['mailboxes']:>10}{r['resolve_s']:>11.2f}"
                f"{r['read_s']:>9.2f}{r['per_mailbox_ms']:>12.2f}"
                f"{r['requests_per_mailbox']:>13.2f}{r['ok']:>7}{r['peak_mib']:>14.1f}"
            )


if __name__ == "__main__":
    main()
