"""`--plot FILE.png`: latency by outcome, and requests per copy, side by side.

matplotlib is imported here only, with the Agg backend: no display is needed, and a
demo run without --plot does not pay for the import.
"""

from __future__ import annotations

from pathlib import Path

from .load import Run
from .summary import OUTCOMES


def draw(run: Run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency_axis, spread_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    latencies = {
        name: [r.final.seconds * 1000 for r in run.results if r.outcome == name and r.final.status is not None]
        for name in OUTCOMES
    }
    shown = [name for name in OUTCOMES if latencies[name]]
    latency_axis.boxplot([latencies[name] for name in shown], whis=(1, 99), showfliers=True)
    latency_axis.set_xticks(range(1, len(shown) + 1), [f"{n}\n({len(latencies[n])})" for n in shown])
    latency_axis.set_yscale("log")
    latency_axis.set_ylabel("latency, ms (log)")
    latency_axis.set_title("Latency by outcome (whiskers p1-p99)")

    served = sorted({r.served_by or "(no answer)" for r in run.results})
    counts = [sum(1 for r in run.results if (r.served_by or "(no answer)") == s) for s in served]
    bars = spread_axis.barh(range(len(served)), counts)
    spread_axis.bar_label(bars, padding=3)
    spread_axis.set_yticks(range(len(served)), served)
    spread_axis.set_xlabel("requests answered")
    spread_axis.set_title("Requests per copy (X-Served-By)")

    figure.suptitle(f"Duplicate storm, profile {run.profile}: {len(run.results)} requests, "
                    f"{len(run.key_names)} keys")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
