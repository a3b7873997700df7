"""The figures as people read them: one table of results, one of how the load was spread,
and a one-line verdict. rich prints plain text when the output is not a terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .summary import guarantees_held


def render(figures: dict[str, Any], console: Console) -> None:
    console.print(_results(figures))
    if "peakCopies" in figures:
        console.print(_scaling(figures))
    if "eventsReceived" in figures:
        console.print(_events(figures))
    console.print(_spread(figures))
    if guarantees_held(figures):
        console.print(
            f"[bold green]OK[/]: {figures['distinctKeys']} keys, {figures['ordersAfterwards']} orders, "
            "no key has a second order and every 201 named its key's one order"
            + (", and every order's event reached the sink under its own id." if "eventsReceived" in figures else ".")
        )
    else:
        console.print("[bold red]BROKEN[/]: a key has more than one order, or an answer named another order.")


def _results(f: dict[str, Any]) -> Table:
    outcomes, latency = f["outcomes"], f["latencyMs"]
    successes = outcomes["created"] + outcomes["replayed"]
    table = Table(title=f"Duplicate storm, profile {f['profile']}")
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_column("means", style="dim")
    table.add_row("requests", str(f["requests"]), f"{f['attempts']} attempts with retries")
    table.add_row("distinct keys", str(f["distinctKeys"]), f"{f['requests'] // max(1, f['distinctKeys'])} requests each")
    counted = "counted in PostgreSQL" if f["census"] == "PostgreSQL" else f"counted via {f['census']}"
    table.add_row("orders afterwards", str(f["ordersAfterwards"]), counted)
    table.add_row("duplicates created", _flag(f["duplicatesCreated"]), "must be 0")
    table.add_row("answers with the original order", str(f["answersCarryingOriginal"]),
                  f"{_share(f['answersCarryingOriginal'], f['requests'])} of requests")
    table.add_row("answers with another order", _flag(f["answersCarryingAnotherOrder"]), "must be 0")
    table.add_row("  created / replayed", f"{outcomes['created']} / {outcomes['replayed']}",
                  f"the {successes} answers 201")
    table.add_row("409 in flight", str(outcomes["409"]), "original still running")
    table.add_row("422 body differed", str(outcomes["422"]),
                  "all expected" if not f["unexpected422"] else f"{f['unexpected422']} NOT expected")
    table.add_row("errors", _flag(outcomes["error"]), _errors(f["errors"]))
    table.add_row("client timeouts, retried", str(f["clientTimeoutsRetried"]), "impatient 1st attempts")
    table.add_row("latency p50/p95/p99 ms", f"{latency['p50']} / {latency['p95']} / {latency['p99']}",
                  "answered attempts")
    table.add_row("throughput", f"{f['requestsPerSecond']} req/s", f"over {f['seconds']} s")
    return table


def _scaling(f: dict[str, Any]) -> Table:
    """What the copies did while the storm ran: the case users worry about."""
    knobs = f.get("knobs")
    title = "Copies coming and going" + (
        f" (target {knobs['target']:g} in flight per copy, scale-down delay {knobs['scaleDownDelaySeconds']:g} s, "
        f"scale {knobs['minScale']}-{knobs['maxScale']})" if knobs else "")
    table = Table(title=title)
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_column("means", style="dim")
    table.add_row("copies at peak", str(f["peakCopies"]), "starting or ready at once")
    cold = f.get("coldStartMs") or []
    table.add_row("cold starts", str(f["coldStarts"]),
                  f"Procfile start to ready: {min(cold)}-{max(cold)} ms" if cold else "copies started")
    if "heldRequests" in f:
        table.add_row("requests held for a cold copy", str(f["heldRequests"]),
                      f"longest {f['longestHoldMs']} ms" if f["longestHoldMs"] is not None else "none")
    table.add_row("drains", str(f["drains"]),
                  f"{f.get('drainsWithRequestsInFlight', '?')} with requests in flight at SIGTERM")
    if "scaledToZero" in f:
        table.add_row("scaled to zero", "yes" if f["scaledToZero"] else "[bold red]no[/]", "after each wave")
    if "keysMeetingADrainingCopy" in f:
        table.add_row("keys on several copies", str(f["keysOverSeveralCopies"]), "duplicates answered by 2+ copies")
        table.add_row("keys meeting a draining copy", str(f["keysMeetingADrainingCopy"]),
                      f"{f['keysMeetingNewOldAndDraining']} met new, old and draining copies")
    outcomes = f.get("outcomesReportedByCopies")
    if outcomes:
        table.add_row("outcomes by the copies", "", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return table


def _events(f: dict[str, Any]) -> Table:
    """Order events at the local sink (K_SINK): one id per order, across the outage."""
    outage = f["sinkOutageSeconds"]
    table = Table(title="Order events out" + (f" (sink down from {outage[0]} s to {outage[1]} s)" if outage else ""))
    table.add_column("what")
    table.add_column("figure", justify="right")
    table.add_column("means", style="dim")
    table.add_row("orders", str(f["ordersAfterwards"]), "each must be announced")
    table.add_row("distinct event ids", str(f["distinctEventIds"]), "must equal the orders")
    table.add_row("orders without an event", _flag(f["ordersWithoutEvent"]), "must be 0")
    table.add_row("events for no order", _flag(f["eventsForNoOrder"]), "must be 0")
    table.add_row("duplicate deliveries", str(f["duplicateDeliveries"]),
                  f"of {f['eventsReceived']} received: allowed (at least once), same id and data")
    table.add_row("ping after scale to zero", "yes" if f["pingAfterScaleToZero"] else "no",
                  "needed only if events were still pending")
    return table


def _spread(f: dict[str, Any]) -> Table:
    table = Table(title="How requests were spread over the copies")
    table.add_column("target")
    table.add_column("requests", justify="right")
    for target, count in f["requestsPerTarget"].items():
        table.add_row(target, str(count))
    table.add_section()
    table.add_row("[bold]X-Served-By[/] (host/pid that answered)", "")
    for served_by, count in sorted(f["requestsPerServedBy"].items()):
        table.add_row(served_by, str(count))
    return table


def _flag(count: int) -> str:
    return f"[green]{count}[/]" if count == 0 else f"[bold red]{count}[/]"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def _errors(kinds: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items())) or "none"
