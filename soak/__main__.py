"""`python -m soak --minutes N --copies 3`: exits 1 when the audit finds a problem."""

from __future__ import annotations

import argparse
import sys

from .report import summary, verdict
from .timeline import SoakPlan, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0, help="how long traffic runs (default 3)")
    parser.add_argument("--copies", type=int, default=3, help="function copies (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="client threads besides the storms (default 4)")
    parser.add_argument("--lease-seconds", type=int, default=3, help="IDEMPOTENCY_LEASE_SECONDS of the copies")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-partitions", action="store_true",
                        help="leave out the partitions and resets (nftables rules on loopback; root)")
    parser.add_argument("--redis", choices=("node", "cluster"), default="node",
                        help="one Redis restarted mid-run (default), or a Redis Cluster whose primary is killed")
    options = parser.parse_args(argv)
    if options.minutes <= 0 or options.copies < 2:
        parser.error("--minutes must be positive and --copies at least 2 (one is killed)")
    report = run_soak(SoakPlan(
        seconds=options.minutes * 60, copies=options.copies, clients=options.clients,
        lease_seconds=options.lease_seconds, seed=options.seed, partitions=not options.no_partitions,
        redis=options.redis,
    ), say=lambda line: print(line, flush=True))
    print(summary(report))
    problems, _ = verdict(report)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
