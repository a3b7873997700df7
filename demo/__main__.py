"""`python -m demo`: fire duplicate bursts at the function and show nothing was duplicated.

    python -m demo --autoscale                                  # from zero copies, up, down, zero, again
    python -m demo --spawn 3                                    # 3 fixed local copies, own servers
    python -m demo http://127.0.0.1:8080 http://127.0.0.1:8081  # copies already running
    python -m demo http://127.0.0.1:8080 --host "$ORDERS_HOST" --watch-pods orders/orders

Exit status: 0 when every key has one order and every 201 named it, 1 when not, 2 when
the demo could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from devserver.copies import PROJECT_ROOT
from devserver.cluster import local_cluster
from devserver.stack import LocalStack
from loadgen.storm import LoadShape, Run, fire

from . import census, plot, table
from .autoscaled import Waves, run_autoscaled, scaling_figures
from .autoscaler import Knobs
from .summary import guarantees_held, summarise
from .timeline import Timeline

# Out of the way of `git status`: .local/ is ignored, like make run's data.
DEFAULT_PLOT = PROJECT_ROOT / ".local" / "demo" / "storm.png"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    modes = sum([bool(options.targets), bool(options.spawn), options.autoscale])
    if modes != 1:
        parser.error("give target URLs, --spawn N or --autoscale: exactly one of them")
    if options.watch_pods and not options.targets:
        parser.error("--watch-pods watches a cluster's pods: give the route's URL (and --host) too")
    if options.redis == "cluster" and (options.targets or options.redis_url):
        parser.error("--redis cluster starts a local Redis Cluster: with --spawn or --autoscale, without --redis-url")
    errors = Console(stderr=True)
    try:
        with contextlib.ExitStack() as servers:
            if options.redis == "cluster":
                with errors.status("starting a local Redis Cluster (3 primaries, a replica each) ..."):
                    options.redis_url = servers.enter_context(local_cluster()).url
            run, figures, timeline = _run(options, errors)
    except Exception as exc:  # a server that did not start, a target that does not answer
        errors.print(f"[bold red]the demo could not run:[/] {type(exc).__name__}: {exc}")
        return 2
    _report(options, run, figures, timeline)
    return 0 if guarantees_held(figures) else 1


def _run(options: argparse.Namespace, errors: Console) -> tuple[Run, dict[str, Any], Timeline | None]:
    if options.autoscale:
        return _autoscaled(options, errors)
    if options.spawn:
        return (*_on_spawned_copies(options, _shape(options), errors), None)
    return _on_targets(options, _shape(options), errors)


def _shape(options: argparse.Namespace) -> LoadShape:
    return LoadShape(
        keys=options.keys, repeats=options.repeats, clients=max(options.clients or 40, options.repeats),
        retry_share=options.retry_share, mismatch_share=options.mismatch_share, seed=options.seed,
    )


def _autoscaled(options: argparse.Namespace, console: Console) -> tuple[Run, dict[str, Any], Timeline]:
    knobs = Knobs(target=options.target, scale_down_delay_seconds=options.scale_down_delay,
                  min_scale=options.min_scale, max_scale=options.max_scale)
    waves = Waves(peak_clients=options.clients or Waves.peak_clients, repeats=options.repeats,
                  retry_share=options.retry_share, mismatch_share=options.mismatch_share, seed=options.seed)
    with console.status("autoscaled storm: starting PostgreSQL and Redis ...") as status:
        autoscaled = run_autoscaled(waves, knobs, database_url=options.database_url, redis_url=options.redis_url,
                                    say=lambda message: status.update(f"autoscaled storm: {message}"))
    scaler = autoscaled.scaler
    figures = summarise(autoscaled.run, autoscaled.census, [c.name for c in scaler.copies])
    figures.update(scaling_figures(autoscaled))
    timeline = Timeline(scaler.samples, scaler.events, knobs.target, autoscaled.wave_started_at,
                        scaler.outcome_samples)
    return autoscaled.run, figures, timeline


def _on_spawned_copies(
    options: argparse.Namespace, shape: LoadShape, console: Console
) -> tuple[Run, dict[str, Any]]:
    """Start the stack, fire, count in PostgreSQL, and stop everything, also on failure."""
    stack = LocalStack(options.spawn, database_url=options.database_url, redis_url=options.redis_url)
    try:
        with console.status(f"starting PostgreSQL, Redis and {options.spawn} copies ..."):
            stack.start()
        run = _fire(shape, stack.urls, console)
        with stack.connect() as connection:
            counted = census.from_postgres(connection.native, run.profile, run.key_names)
        return run, summarise(run, counted, stack.urls)
    finally:
        stack.stop()


def _on_targets(
    options: argparse.Namespace, shape: LoadShape, console: Console
) -> tuple[Run, dict[str, Any], Timeline | None]:
    targets = [url.rstrip("/") for url in options.targets]
    headers = {"Host": options.host} if options.host else {}
    _check_answering(targets, headers)
    watcher = None
    if options.watch_pods:
        from .pods import PodWatcher

        watcher = PodWatcher.for_service(options.watch_pods).start()
    try:
        run = _fire(shape, targets, console, headers)
    finally:
        if watcher:
            watcher.stop()
    counted = census.from_api(targets[0], run.profile, shape.keys, headers)
    figures = summarise(run, counted, targets)
    timeline = None
    if watcher:
        timeline = watcher.timeline()
        figures.update(watcher.figures())
    return run, figures, timeline


def _check_answering(targets: list[str], headers: dict[str, str]) -> None:
    """Fail before the burst, naming the target, rather than after it with 2000 errors."""
    for target in targets:
        try:
            requests.get(target + "/healthz", headers=headers, timeout=10)
        except requests.RequestException as exc:
            raise RuntimeError(f"{target} does not answer ({type(exc).__name__})") from None


def _fire(shape: LoadShape, targets: list[str], console: Console, headers: dict[str, str] | None = None) -> Run:
    with Progress(
        TextColumn("duplicate bursts"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("requests", total=shape.total_requests)
        return fire(shape, targets, headers=headers, on_answer=lambda: progress.advance(task))


def _report(options: argparse.Namespace, run: Run, figures: dict[str, Any], timeline: Timeline | None) -> None:
    if options.plot:
        plot.draw(run, figures, options.plot, timeline)
        figures["plot"] = str(options.plot)
    if options.json:
        print(json.dumps(figures, indent=2))
    else:
        # Piped (a log, a file), rich would wrap at 80 columns; the table needs about 90.
        table.render(figures, Console() if sys.stdout.isatty() else Console(width=100))
        if options.plot:
            print(f"plot: {options.plot}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description="Duplicate bursts against the orders function.",
    )
    parser.add_argument("targets", nargs="*", metavar="URL", help="base URLs of running copies or a route")
    parser.add_argument("--autoscale", action="store_true",
                        help="a local stand-in for Knative's autoscaler: from zero copies, up, down to zero, again")
    parser.add_argument("--spawn", type=int, default=0, metavar="N",
                        help="start N fixed local copies (Procfile) on embedded PostgreSQL and Redis")
    parser.add_argument("--host", metavar="HOST",
                        help="Host header for every request: a Knative route through a port-forward")
    parser.add_argument("--watch-pods", metavar="NAMESPACE/SERVICE",
                        help="with a route's URL: read the Knative Service's pods from the Kubernetes API "
                             "(kubeconfig or in-cluster) and draw them in the timeline")
    parser.add_argument("--database-url", help="use this PostgreSQL instead of starting one")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--redis", choices=("node", "cluster"), default="node",
                        help="with --spawn or --autoscale: one Redis (default) or a local Redis Cluster")
    scaling = parser.add_argument_group("--autoscale knobs (named after Knative's autoscaling annotations)")
    scaling.add_argument("--target", type=float, default=Knobs.target,
                         help=f"in-flight requests per copy before one is added ({Knobs.target:g})")
    scaling.add_argument("--scale-down-delay", type=float, default=Knobs.scale_down_delay_seconds, metavar="SECONDS",
                         help=f"less demand for this long removes a copy ({Knobs.scale_down_delay_seconds:g})")
    scaling.add_argument("--min-scale", type=int, default=Knobs.min_scale, help="fewest copies (0: scale to zero)")
    scaling.add_argument("--max-scale", type=int, default=Knobs.max_scale, help=f"most copies ({Knobs.max_scale})")
    parser.add_argument("--keys", type=int, default=200, metavar="K",
                        help="distinct idempotency keys (200; --autoscale sends keys until its waves end)")
    parser.add_argument("--repeats", type=int, default=10, metavar="R", help="times each key is sent (10)")
    parser.add_argument("--clients", type=int, default=None,
                        help="concurrent clients, rounded down to whole keys' duplicates (40; "
                             "--autoscale: the peak of its first wave, 16)")
    parser.add_argument("--retry-share", type=_share, default=0.0, metavar="P",
                        help="share of requests whose first attempt times out after 1-20 ms and is retried")
    parser.add_argument("--mismatch-share", type=_share, default=0.0, metavar="P",
                        help="share of duplicates sent with a different body (expect 422s)")
    parser.add_argument("--seed", type=int, help="repeatable choice of retries and mismatches")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument("--plot", type=Path, nargs="?", const=DEFAULT_PLOT, metavar="FILE.png",
                        help=f"draw the timeline (default file: {DEFAULT_PLOT.relative_to(PROJECT_ROOT)})")
    return parser


def _share(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share is a number from 0 to 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
