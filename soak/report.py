"""The soak's summary, as printed at the end of `python -m soak`."""

from __future__ import annotations

from collections import defaultdict

from .resources import judge
from .timeline import SoakReport


def verdict(report: SoakReport) -> tuple[list[str], list[str]]:
    """(problems, flags) of the whole run: any problem fails it."""
    resource_problems, flags = judge(report.samples)
    return report.audit.problems + resource_problems, flags


def summary(report: SoakReport) -> str:
    problems, flags = verdict(report)
    audit = report.audit
    by_operation: dict[str, dict[int, int]] = defaultdict(dict)
    for (operation, status), count in sorted(report.ledger.answers.items()):
        by_operation[operation][status] = count
    lines = [f"soak: {report.plan.seconds:.0f} s, {report.plan.copies} copies, {report.plan.clients} clients + storms"]
    lines += [f"  {event}" for event in report.events]
    lines.append("answers (status: count; 0 = connection cut):")
    lines += [f"  {operation:7} " + ", ".join(f"{status}: {count}" for status, count in statuses.items())
              for operation, statuses in by_operation.items()]
    lines += [
        f"orders: {audit.acknowledged} acknowledged, {audit.stored} in PostgreSQL; "
        f"{audit.cut} creates cut by the kill ({audit.made_by_cut_requests} had made their order), "
        f"{audit.recovered} answered by a retry after the lease",
        "resources (first -> last sample):",
    ]
    first, last = report.samples[0], report.samples[-1]
    for name in sorted(set(first.rss_bytes) | set(last.rss_bytes)):
        before, after = first.rss_bytes.get(name), last.rss_bytes.get(name)
        lines.append(f"  {name}: RSS {_mib(before)} -> {_mib(after)}")
    peak = max(sample.postgres_connections for sample in report.samples)
    lines.append(f"  PostgreSQL connections: {first.postgres_connections} -> {last.postgres_connections} (peak {peak})")
    if report.logged_errors:
        lines.append("errors the copies logged:")
        lines += [f"  {line[:2000]}" for line in report.logged_errors]
    lines += [f"FLAG {flag}" for flag in flags]
    lines += [f"FAIL {problem}" for problem in problems[:50]]
    if len(problems) > 50:
        lines.append(f"FAIL ... and {len(problems) - 50} more")
    lines.append("audit: " + ("FAILED" if problems else "passed"))
    return "\n".join(lines)


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"
