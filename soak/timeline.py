"""One soak run: the stack, the traffic, the faults at fixed points of the run, samples
along the way, then the audit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

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
SAMPLE_EVERY_SECONDS = 5.0  # and the first sample after this much traffic, once pools have filled


@dataclass(frozen=True)
class SoakPlan:
    seconds: float
    copies: int = 3
    clients: int = 4
    # Short, so the audit's wait for the killed copy's claims is short too.
    lease_seconds: int = 3
    seed: int = 1
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
        workload.start()
        next_sample = SAMPLE_EVERY_SECONDS  # the first once the pools have filled: a baseline
        while (elapsed := time.monotonic() - started) < plan.seconds:
            if faults and elapsed >= faults[0][0] * plan.seconds:
                _, name, fault = faults.pop(0)
                say(f"  {elapsed:5.1f} s  {name}")
                events.append(f"{elapsed:.1f} s: {name}: {fault()}")
            if elapsed >= next_sample:
                samples.append(take_sample(elapsed, {name: copies[name] for name in live}, stack))
                next_sample += SAMPLE_EVERY_SECONDS
            time.sleep(0.1)
        workload.stop()
        samples.append(take_sample(time.monotonic() - started, {name: copies[name] for name in live}, stack))
        say("  traffic stopped; auditing")
        result = audit(stack, ledger, [copies[name].url for name in live], plan.lease_seconds)
        return SoakReport(plan, ledger, result, samples, events)


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
