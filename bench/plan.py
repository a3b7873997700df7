"""How long and how much: the full run (under ten minutes on 2 cores) and `--quick`."""

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
    settings_tried: tuple[tuple[int, int], ...]  # (WORKERS, THREADS)
    settings_seconds: float


FULL = Plan(
    seconds=5.0, warmup_seconds=1.0, concurrencies=(1, 4, 16), rounds=2, storm_duplicates=8,
    replay_keys=2000, seed_keys=40_000, cold_starts=5, big_profile_orders=100_000,
    settings_tried=((1, 8), (1, 4), (1, 16), (2, 4), (2, 8)), settings_seconds=3.0,
)
QUICK = Plan(
    seconds=2.0, warmup_seconds=0.5, concurrencies=(1, 16), rounds=1, storm_duplicates=8,
    replay_keys=1000, seed_keys=15_000, cold_starts=3, big_profile_orders=100_000,
    settings_tried=((1, 8), (2, 8)), settings_seconds=2.0,
)
