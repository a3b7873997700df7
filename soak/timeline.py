"""One soak run: the stack, the traffic, the faults at fixed points of the run, samples
along the way, then the audit.

The nemesis: Redis restarted empty, a copy killed, and where nftables can be used
(devserver/netfaults.py) partitions and resets between the copies and their stores:
PostgreSQL black-holed and reset, Redis reset and black-holed. The audit is the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from devserver import netfaults
from devserver.cluster import RedisCluster, local_cluster
from devserver.stack import LocalStack
from devserver.copies import FunctionCopy

from .audit import Audit, audit
from .ledger import Ledger
from .resources import Sample, take_sample
from .workload import Workload

# Where in the run each fault falls: late enough that there is state to lose, early
# enough that the run goes on long after it.
REDIS_RESTART_AT, COPY_KILL_AT = 0.35, 0.55
# The partitions, between and after those, each held for a few seconds: long enough that
# requests under way wait out their timeouts, short enough that the clients' retries
# outlast it (workload.RETRY_GIVE_UP_SECONDS).
POSTGRES_BLACK_HOLE_AT, REDIS_RESET_AT, POSTGRES_RESET_AT, REDIS_BLACK_HOLE_AT = 0.15, 0.25, 0.45, 0.7
POSTGRES_BLACK_HOLE_SECONDS, REDIS_BLACK_HOLE_SECONDS, RESET_SECONDS = 3.0, 2.0, 1.0
# PostgreSQL's own TCP keepalive in the soak: a backend whose client connection a reset
# or partition tore down on the client's side only is ended within idle + interval x count
# (8 s), longer than any black hole here (a live connection is never cut for silence).
SERVER_KEEPALIVE = {"tcp_keepalives_idle": 5, "tcp_keepalives_interval": 1, "tcp_keepalives_count": 3}
# Connection samples wait this long after a PostgreSQL partition or reset: until then the
# server may still count backends whose clients are gone.
SETTLE_SECONDS = 10.0
SAMPLE_EVERY_SECONDS = 5.0  # and the first sample after this much traffic, once pools have filled


@dataclass(frozen=True)
class SoakPlan:
    seconds: float
    copies: int = 3
    clients: int = 4
    # Short, so the audit's wait for the killed copy's claims is short too.
    lease_seconds: int = 3
    seed: int = 1
    # Partitions and resets in the nemesis (skipped, and said so, where nft or root is missing).
    partitions: bool = True
    # "node": one Redis, restarted empty mid-run; "cluster": a Redis Cluster (three
    # primaries, a replica each) whose primary is killed mid-run, failed over to its
    # replica and brought back as a replica.
    redis: str = "node"


@dataclass
class SoakReport:
    plan: SoakPlan
    ledger: Ledger
    audit: Audit
    samples: list[Sample] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    logged_errors: list[str] = field(default_factory=list)  # the copies' error lines, tracebacks included


def run_soak(plan: SoakPlan, say: Callable[[str], None] = print) -> SoakReport:
    if plan.redis == "cluster":
        with local_cluster() as cluster:
            return _run_soak(plan, say, cluster)
    return _run_soak(plan, say, None)


def _run_soak(plan: SoakPlan, say: Callable[[str], None], cluster: RedisCluster | None) -> SoakReport:
    env = {"IDEMPOTENCY_LEASE_SECONDS": str(plan.lease_seconds)}
    with LocalStack(plan.copies, env=env, redis_url=cluster.url if cluster else None) as stack:
        copies = {f"copy-{n}": copy for n, copy in enumerate(stack.copies)}
        live = list(copies)
        ledger, samples, events = Ledger(), [], []
        workload = Workload(lambda: [copies[name].url for name in list(live)], ledger,
                            clients=plan.clients, seed=plan.seed)
        say(f"soak: {plan.copies} copies, {plan.clients} clients and a storm, {plan.seconds:.0f} s")
        started = time.monotonic()
        faults = [(REDIS_RESTART_AT, "restart Redis", lambda: _restart_redis(stack)),
                  (COPY_KILL_AT, "kill a copy and start another", lambda: _replace_a_copy(stack, copies, live))]
        if cluster is not None:  # Redis's fault on a cluster: a primary killed, not a restart
            faults = [(at, "kill a cluster primary", lambda: _fail_over_a_primary(cluster)) if name == "restart Redis"
                      else (at, name, fault) for at, name, fault in faults]
        network = _network_faults(stack, say) if plan.partitions else None
        if network is not None:
            faults = sorted(faults + _partitions(stack, network, cluster))
        workload.start()
        next_sample = SAMPLE_EVERY_SECONDS  # the first once the pools have filled: a baseline
        settled_at = 0.0  # the last sample, taken after the traffic stops, waits for this too
        try:
            # Until the planned length has passed, every fault has run and PostgreSQL has
            # settled after the last of its faults: a slow fault (a cluster's failover takes
            # seconds) must neither crowd the last ones out of the run nor leave the last
            # sample counting the backends of connections a late reset tore down.
            while (elapsed := time.monotonic() - started) < max(plan.seconds, settled_at) or faults:
                if faults and elapsed >= faults[0][0] * plan.seconds:
                    _, name, fault = faults.pop(0)
                    say(f"  {elapsed:5.1f} s  {name}")
                    events.append(f"{elapsed:.1f} s: {name}: {fault()}")
                    if "PostgreSQL" in name:
                        settled_at = time.monotonic() - started + SETTLE_SECONDS
                        next_sample = max(next_sample, settled_at)
                if elapsed >= next_sample:
                    samples.append(take_sample(elapsed, {name: copies[name] for name in live}, stack))
                    next_sample += SAMPLE_EVERY_SECONDS
                time.sleep(0.1)
        finally:
            if network is not None:
                network.close()  # no rule outlives the run, whatever failed
        workload.stop()
        samples.append(take_sample(time.monotonic() - started, {name: copies[name] for name in live}, stack))
        say("  traffic stopped; auditing")
        result = audit(stack, ledger, [copies[name].url for name in live], plan.lease_seconds)
        return SoakReport(plan, ledger, result, samples, events, _logged_errors(copies.values()))


def _logged_errors(copies: Iterable[FunctionCopy], most: int = 10) -> list[str]:
    """The copies' error lines (with their tracebacks), read before the stack's folder
    goes: what a failed audit needs to be understood after the run."""
    found: list[str] = []
    for copy in copies:
        if copy.log is None or not copy.log.exists():
            continue
        found += [line.strip() for line in copy.log.read_text(errors="replace").splitlines()
                  if '"level":"error"' in line]
    return found[:most]


def _restart_redis(stack: LocalStack) -> str:
    assert stack.redis is not None
    stack.redis.restart()  # not durable: every claim and stored answer is gone
    return "Redis emptied and back"


def _fail_over_a_primary(cluster: RedisCluster) -> str:
    old = cluster.kill_primary()
    new = cluster.wait_for_failover(old)
    cluster.bring_back(old)
    return f"primary :{old.port} killed with SIGKILL, its replica :{new.port} promoted, :{old.port} back as a replica"


def _replace_a_copy(stack: LocalStack, copies: dict[str, FunctionCopy], live: list[str]) -> str:
    doomed = live[0]
    live.remove(doomed)  # clients stop picking it; requests already sent are cut by the kill
    copies[doomed].kill()
    replacement = stack.start_copy()
    name = f"copy-{len(copies)}"
    copies[name] = replacement
    live.append(name)
    return f"{doomed} killed with SIGKILL, {name} serving"


def _network_faults(stack: LocalStack, say: Callable[[str], None]) -> netfaults.NetworkFaults | None:
    reason = netfaults.unavailable_reason()
    if reason is not None:
        say(f"  no partitions in this run: {reason}")
        return None
    with stack.connect() as connection:  # before the copies' pools connect: see SERVER_KEEPALIVE
        for name, value in SERVER_KEEPALIVE.items():
            connection.native.run(f"ALTER SYSTEM SET {name} = {int(value)}")
        connection.native.run("SELECT pg_reload_conf()")
    return netfaults.NetworkFaults()


def _partitions(
    stack: LocalStack, network: netfaults.NetworkFaults, cluster: RedisCluster | None,
) -> list[tuple[float, str, Callable[[], str]]]:
    """On a cluster, Redis's partitions cut the copies off one primary (whichever is one
    when the fault starts); its cluster bus stays up, so it is not failed over."""
    assert stack.postgres is not None
    postgres_port = stack.postgres.port

    def postgres() -> int:
        return postgres_port

    def redis() -> int:
        if cluster is not None:
            return cluster.primaries()[0].port
        assert stack.redis is not None
        return stack.redis.port

    def held(fault: Callable[[int], None], port_of: Callable[[], int], seconds: float, what: str) -> Callable[[], str]:
        def run() -> str:
            port = port_of()
            fault(port)
            try:
                time.sleep(seconds)  # the partition's length is the fault itself, not a wait for something
            finally:
                network.heal(port)
            return f"{what} for {seconds:.0f} s, healed"
        return run

    return [
        (POSTGRES_BLACK_HOLE_AT, "black-hole PostgreSQL",
         held(network.black_hole, postgres, POSTGRES_BLACK_HOLE_SECONDS, "every packet dropped")),
        (REDIS_RESET_AT, "reset Redis", held(network.reset, redis, RESET_SECONDS, "every connection reset")),
        (POSTGRES_RESET_AT, "reset PostgreSQL", held(network.reset, postgres, RESET_SECONDS, "every connection reset")),
        (REDIS_BLACK_HOLE_AT, "black-hole Redis",
         held(network.black_hole, redis, REDIS_BLACK_HOLE_SECONDS, "every packet dropped")),
    ]
