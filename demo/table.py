"""The figures as people read them: one table of results, one of how the load was spread,
and a one-line verdict. rich prints plain text when the output is not a terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .summary import guarantees_held


def render(figures: dict[str, Any], console: Console) -> None:
    console.print(_results(figures))
    console.print(_spread(figures))
    if guarantees_held(figures):
        console.print(
            f"[bold green]OK[/]: {figures['distinctKeys']} keys, {figures['ordersAfterwards']} orders, "
            "no key has a second order and every 201 named its key's one order."
        )
    else:
        console.print("[bold red]BROKEN[/]: a key has more than one order, or an answer named another order.")


def _results(f: dict[str, Any]) -> Table:
    outcomes, latency = f["outcomes"], f["latencyMs"]
    successes = outcomes["created"] + outcomes["replayed"]
    table = Table(title=f"Duplicate storm: profile {f['profile']}", show_header=True)
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_column("means", style="dim")
    table.add_row("requests", str(f["requests"]), f"{f['attempts']} HTTP attempts with retries")
    table.add_row("distinct keys", str(f["distinctKeys"]), f"{f['requests'] // max(1, f['distinctKeys'])} requests per key")
    table.add_row("orders that exist afterwards", str(f["ordersAfterwards"]), f"counted via {f['census']}")
    table.add_row("duplicates created", _flag(f["duplicatesCreated"]), "orders beyond one per key: must be 0")
    table.add_row(
        "answers carrying the original order", f"{f['answersCarryingOriginal']}",
        f"{_share(f['answersCarryingOriginal'], f['requests'])} of requests; the rest is below",
    )
    table.add_row("answers carrying another order", _flag(f["answersCarryingAnotherOrder"]), "must be 0")
    table.add_row("  of them created / replayed", f"{outcomes['created']} / {outcomes['replayed']}",
                  f"{successes} answers 201; replays carry Idempotent-Replayed: true")
    table.add_row("409 in flight", str(outcomes["409"]), "original still running after the wait")
    table.add_row("422 body differed", str(outcomes["422"]),
                  "all expected" if not f["unexpected422"] else f"{f['unexpected422']} NOT expected")
    table.add_row("errors", _flag(outcomes["error"]), _errors(f["errors"]))
    table.add_row("client timeouts, retried", str(f["clientTimeoutsRetried"]), "impatient first attempts")
    table.add_row("latency p50 / p95 / p99", f"{latency['p50']} / {latency['p95']} / {latency['p99']} ms",
                  "of each request's answered attempt")
    table.add_row("throughput", f"{f['requestsPerSecond']} req/s", f"over {f['seconds']} s")
    return table


def _spread(f: dict[str, Any]) -> Table:
    table = Table(title="How requests were spread over the copies")
    table.add_column("target")
    table.add_column("requests", justify="right")
    for target, count in f["requestsPerTarget"].items():
        table.add_row(target, str(count))
    table.add_section()
    table.add_row("[bold]X-Served-By[/] (host/pid of the worker that answered)", "")
    for served_by, count in sorted(f["requestsPerServedBy"].items()):
        table.add_row(served_by, str(count))
    return table


def _flag(count: int) -> str:
    return f"[green]{count}[/]" if count == 0 else f"[bold red]{count}[/]"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _errors(kinds: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items())) or "none"
