"""`python -m demo`: fire duplicate bursts at the function and show nothing was duplicated.

    python -m demo http://127.0.0.1:8080 http://127.0.0.1:8081   # copies already running
    python -m demo http://127.0.0.1:8080 --host "$HOST"           # a Knative route (port-forward)
    python -m demo --spawn 3                                      # 3 local copies, own servers

Exit status: 0 when every key has one order and every 201 named it, 1 when not, 2 when
the demo could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import census, plot, table
from .load import LoadShape, Run, fire
from .stack import LocalStack
from .summary import guarantees_held, summarise


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    if bool(options.targets) == bool(options.spawn):
        _parser().error("give target URLs or --spawn N, not both and not neither")
    shape = LoadShape(
        keys=options.keys, repeats=options.repeats, clients=max(options.clients, options.repeats),
        retry_share=options.retry_share, mismatch_share=options.mismatch_share, seed=options.seed,
    )
    errors = Console(stderr=True)
    try:
        if options.spawn:
            run, figures = _on_spawned_copies(options, shape, errors)
        else:
            targets = [url.rstrip("/") for url in options.targets]
            headers = {"Host": options.host} if options.host else {}
            _check_answering(targets, headers)
            run = _fire(shape, targets, errors, headers)
            counted = census.from_api(targets[0], run.profile, shape.keys, headers)
            figures = summarise(run, counted, targets)
    except Exception as exc:  # a server that did not start, a target that does not answer
        errors.print(f"[bold red]the demo could not run:[/] {type(exc).__name__}: {exc}")
        return 2
    _report(options, run, figures)
    return 0 if guarantees_held(figures) else 1


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
            counted = census.from_postgres(connection, run.profile, run.key_names)
        return run, summarise(run, counted, stack.urls)
    finally:
        stack.stop()


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


def _report(options: argparse.Namespace, run: Run, figures: dict[str, Any]) -> None:
    if options.plot:
        plot.draw(run, options.plot)
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
    parser.add_argument("--spawn", type=int, default=0, metavar="N",
                        help="start N local copies (Procfile) on embedded PostgreSQL and Redis")
    parser.add_argument("--host", metavar="HOST",
                        help="Host header for every request: a Knative route through a port-forward")
    parser.add_argument("--database-url", help="with --spawn: use this PostgreSQL instead of starting one")
    parser.add_argument("--redis-url", help="with --spawn: use this Redis instead of starting one")
    parser.add_argument("--keys", type=int, default=200, metavar="K", help="distinct idempotency keys (200)")
    parser.add_argument("--repeats", type=int, default=10, metavar="R", help="times each key is sent (10)")
    parser.add_argument("--clients", type=int, default=40,
                        help="concurrent clients, rounded down to whole keys' duplicates (40)")
    parser.add_argument("--retry-share", type=_share, default=0.0, metavar="P",
                        help="share of requests whose first attempt times out after 1-20 ms and is retried")
    parser.add_argument("--mismatch-share", type=_share, default=0.0, metavar="P",
                        help="share of duplicates sent with a different body (expect 422s)")
    parser.add_argument("--seed", type=int, help="repeatable choice of retries and mismatches")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="draw latency by outcome and spread")
    return parser


def _share(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a share is a number from 0 to 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
