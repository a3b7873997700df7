"""`--plot FILE.png`: the run as a timeline. Copies alive (cold starts and drains marked)
with each copy's requests in flight, answers per second by outcome, and p50/p99 latency;
the verdict in the title.

matplotlib is imported here only, with the Agg backend: no display is needed, and a
demo run without --plot does not pay for the import.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from loadgen.stats import percentile
from loadgen.storm import Run

from .timeline import Timeline

BIN_SECONDS = 0.5
# Beside each panel, not over it: the markers and lines near the top stay visible.
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.005, 1.0), "fontsize": 8, "borderaxespad": 0.0}
# The function's outcome words where the copies' /metrics gave them, else what the client saw.
COLOURS = {
    "created": "tab:green", "replayed": "tab:blue", "replayed-redis": "tab:blue",
    "replayed-postgres": "tab:cyan", "waited": "tab:purple", "409": "tab:orange", "conflict": "tab:orange",
    "422": "tab:brown", "mismatch": "tab:brown", "error": "tab:red",
}


def draw(run: Run, figures: dict[str, Any], path: Path, timeline: Timeline | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    panels = 2 + (1 if timeline else 0) + (1 if timeline and timeline.knows_in_flight else 0)
    figure, axes = plt.subplots(panels, 1, figsize=(14, 2.6 * panels + 0.6), sharex=True)
    end = max((r.answered_at for r in run.results), default=1.0)
    if timeline:
        _copies(axes[0], timeline)
        if timeline.knows_in_flight:
            _per_copy(axes[1], timeline)
    answers_axis, latency_axis = axes[-2], axes[-1]

    bins = int(end / BIN_SECONDS) + 1
    starts = [n * BIN_SECONDS for n in range(bins)]
    for name, (times, rates) in _answers_per_second(run, timeline, bins).items():
        answers_axis.plot(times, rates, label=name, color=COLOURS.get(name), linewidth=1.4)
    answers_axis.set_ylabel("answers / s")
    source = ("outcomes from the copies' /metrics; errors seen by clients"
              if timeline and timeline.outcome_samples else "as clients saw them")
    answers_axis.set_title(f"Answers per second by outcome ({source})", fontsize=10, loc="left")
    answers_axis.legend(**LEGEND)

    latencies: list[list[float]] = [[] for _ in range(bins)]
    for result in run.results:
        if result.final.status is not None:
            latencies[min(bins - 1, int(result.answered_at / BIN_SECONDS))].append(result.final.seconds * 1000)
    for share, style in ((0.50, "-"), (0.99, "--")):
        # NaN where nothing was answered: the line breaks instead of bridging an idle gap.
        points = [(t, percentile(values, share) if values else math.nan) for t, values in zip(starts, latencies)]
        latency_axis.plot([t for t, _ in points], [v for _, v in points], style, color="black",
                          label=f"p{int(share * 100)}", linewidth=1.2)
    latency_axis.set_yscale("log")
    latency_axis.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    latency_axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} ms"))
    latency_axis.yaxis.set_minor_formatter(NullFormatter())
    latency_axis.set_ylabel("latency")
    latency_axis.set_title(f"Latency of answered requests, per {BIN_SECONDS} s", fontsize=10, loc="left")
    latency_axis.legend(**LEGEND)
    latency_axis.set_xlabel("seconds since the demo started")
    for axis in axes:
        axis.grid(True, alpha=0.3)
        if timeline:
            for at in timeline.wave_started_at:
                axis.axvline(at, color="grey", linewidth=0.8, linestyle=":")

    figure.suptitle(_verdict(figures), fontsize=12, fontweight="bold",
                    color="darkgreen" if _held(figures) else "darkred")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _copies(axis: Any, timeline: Timeline) -> None:
    times = [s.seconds for s in timeline.samples]
    axis.stackplot(times, [s.ready for s in timeline.samples], [s.starting for s in timeline.samples],
                   [s.draining for s in timeline.samples], labels=["ready", "starting", "draining (SIGTERM sent)"],
                   colors=["tab:green", "gold", "tab:red"], alpha=0.6, step="post")
    top = max([s.starting + s.ready + s.draining for s in timeline.samples] + [1])
    colds = [e.seconds for e in timeline.events if e.kind == "cold start"]
    drains = [e.seconds for e in timeline.events if e.kind == "drain"]
    axis.plot(colds, [top + 0.4] * len(colds), "^", color="navy", label=f"cold start ({len(colds)})")
    axis.plot(drains, [top + 0.4] * len(drains), "v", color="darkred", label=f"drain ({len(drains)})")
    axis.set_ylim(0, top + 1)
    axis.set_ylabel("copies")
    axis.set_title(f"Copies alive ({timeline.source})", fontsize=10, loc="left")
    axis.legend(**LEGEND)


def _per_copy(axis: Any, timeline: Timeline) -> None:
    names = sorted({name for s in timeline.samples for name in s.per_copy}, key=lambda n: int(n.split("-")[-1]))
    for name in names:
        points = [(s.seconds, s.per_copy[name]) for s in timeline.samples if name in s.per_copy]
        axis.plot([t for t, _ in points], [v for _, v in points], label=name, linewidth=1.0, drawstyle="steps-post")
    held = [(s.seconds, s.held) for s in timeline.samples]
    axis.plot([t for t, _ in held], [v for _, v in held], color="black", linestyle=":", label="held (no ready copy)")
    axis.axhline(timeline.target, color="grey", linestyle="--", linewidth=0.8, label=f"target {timeline.target:g}")
    axis.set_ylabel("in flight")
    axis.set_title("Requests in flight per copy", fontsize=10, loc="left")
    axis.legend(**LEGEND)


def _answers_per_second(run: Run, timeline: Timeline | None, bins: int) -> dict[str, tuple[list[float], list[float]]]:
    """name -> (times, answers per second). The copies' counters at each scrape, divided
    by the time since the one before (binning them would alias against the scrape rate);
    what the clients saw in bins of BIN_SECONDS."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    if timeline and timeline.outcome_samples:
        names = sorted({name for _, _, counts in timeline.outcome_samples for name in counts if counts[name]})
        for name in names:
            series[name] = ([at for at, _, _ in timeline.outcome_samples],
                            [counts[name] / over if over else 0.0 for _, over, counts in timeline.outcome_samples])
        client_side: tuple[str, ...] = ("error",)
    else:
        client_side = ("created", "replayed", "409", "422", "error")
    per_bin: dict[str, Counter[int]] = {}
    for result in run.results:
        if result.outcome in client_side:
            per_bin.setdefault(result.outcome, Counter())[min(bins - 1, int(result.answered_at / BIN_SECONDS))] += 1
    for name, counts in sorted(per_bin.items()):
        series[name] = ([n * BIN_SECONDS for n in range(bins)], [counts[n] / BIN_SECONDS for n in range(bins)])
    return series


def _held(figures: dict[str, Any]) -> bool:
    return figures["duplicatesCreated"] == 0 and figures["answersCarryingAnotherOrder"] == 0


def _verdict(f: dict[str, Any]) -> str:
    word = "OK" if _held(f) else "BROKEN"
    scaling = ""
    if "peakCopies" in f:
        scaling = f"; peak {f['peakCopies']} copies, {f['coldStarts']} cold starts, {f['drains']} drains"
    return (f"{word}: {f['distinctKeys']} keys, {f['ordersAfterwards']} orders, "
            f"{f['duplicatesCreated']} duplicates{scaling}")
