"""What the plot draws besides the answers: copies over time and their events, from the
local autoscaler or from the real pods (`--watch-pods`), in one shape."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .autoscaler import Event, Sample


@dataclass(frozen=True)
class Timeline:
    samples: list[Sample]
    events: list[Event]
    target: float
    wave_started_at: tuple[float, ...] = ()
    outcome_samples: list[tuple[float, float, Counter[str]]] = field(default_factory=list)  # (at, over, counts)
    # The local autoscaler counts each copy's requests in flight; the Kubernetes API does not.
    knows_in_flight: bool = True
    source: str = "the local autoscaler's decisions"
