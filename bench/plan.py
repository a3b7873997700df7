"""How long and how much: the full run (`make bench`) and `--quick` (the one `make test`
runs, to prove the suite works; its figures are too short to quote)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    seconds: float  # measured time per point
    warmup_seconds: float  # sent first and thrown away: pools, caches, branch predictors
    concurrencies: tuple[int, ...]
    # The matrix is run this many times and each point keeps its best round: load from
    # other work on a shared machine only ever slows a point down, floor and function alike.
    rounds: int
    storm_duplicates: int  # each storm key is sent this many times at once
    replay_keys: int  # finished keys the Redis-path replay cycles over
    seed_keys: int  # orders seeded for replays after a flush, each replayed once
    cold_starts: int
    big_profile_orders: int
    profile_seconds: float  # py-spy over replay, create and storm; 0: no profiles
    pgbouncer_copies: tuple[int, ...]  # copies sharing one PgBouncer, for the scale-out point


FULL = Plan(
    seconds=5.0, warmup_seconds=1.0, concurrencies=(1, 4, 16), rounds=2, storm_duplicates=8,
    replay_keys=2000, seed_keys=60_000, cold_starts=5, big_profile_orders=100_000,
    profile_seconds=5.0, pgbouncer_copies=(1, 2, 4, 8),
)
QUICK = Plan(
    seconds=0.6, warmup_seconds=0.2, concurrencies=(16,), rounds=1, storm_duplicates=8,
    replay_keys=300, seed_keys=8_000, cold_starts=1, big_profile_orders=5_000,
    profile_seconds=0.0, pgbouncer_copies=(1, 2),
)
