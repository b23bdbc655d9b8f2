"""The autoscaling policy, driven by a fake clock (plain floats)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

import pytest

from shipyard.autoscaler import ContainerView, Decision, Sample, decide
from shipyard.exceptions import InvalidError
from shipyard.spec import AutoscalerSettings

State = Literal["starting", "ready", "draining"]
NOW = 1000.0
STEP = 0.5


def load(demand: int, start: float, end: float, *, queued: int = 0) -> list[Sample]:
    """Samples every STEP seconds in [start, end): `demand` requests being served plus `queued` waiting."""
    count = round((end - start) / STEP)
    return [Sample(at=start + i * STEP, in_flight=demand, queued=queued) for i in range(count)]


def ready(cid: str, *, idle_since: float | None = 0.0, in_flight: int = 0,
          started_at: float = 0.0) -> ContainerView:
    return ContainerView(cid, "ready", in_flight, idle_since if in_flight == 0 else None, started_at)


def busy(cid: str, in_flight: int = 1, *, started_at: float = 0.0) -> ContainerView:
    return ready(cid, in_flight=in_flight, started_at=started_at)


def starting(cid: str, started_at: float = NOW - 1) -> ContainerView:
    return ContainerView(cid, "starting", 0, None, started_at)


def draining(cid: str) -> ContainerView:
    return ContainerView(cid, "draining", 0, 0.0, 0.0)


def settings(**fields: int | float | None) -> AutoscalerSettings:
    return AutoscalerSettings.model_validate(fields)


# --- scale from zero -------------------------------------------------------------------------------------


def test_scale_from_zero_is_immediate() -> None:
    # A minute of silence then one waiting request: the averages are ~0, the queue still wins.
    samples = [*load(0, NOW - 60, NOW), Sample(NOW, 0, 1)]
    decision = decide(settings(), samples, [], NOW)
    assert decision == Decision(start=1, stop=(), panic=True, desired=1)


def test_scale_from_zero_sizes_for_the_whole_queue() -> None:
    samples = [*load(0, NOW - 60, NOW), Sample(NOW, 0, 7)]
    assert decide(settings(max_inputs=2), samples, [], NOW).start == 4
    assert decide(settings(max_inputs=8, target_inputs=3), samples, [], NOW).start == 3


def test_no_traffic_and_no_containers_does_nothing() -> None:
    decision = decide(settings(), load(0, NOW - 60, NOW), [], NOW)
    assert decision == Decision(start=0, stop=(), panic=False, desired=0)
    assert decide(settings(), [], [], NOW).desired == 0


def test_starting_containers_count_as_capacity() -> None:
    samples = [*load(0, NOW - 60, NOW), Sample(NOW, 0, 1)]
    assert decide(settings(), samples, [starting("a")], NOW).start == 0
    assert decide(settings(), samples, [starting("a")], NOW).stop == ()


def test_draining_containers_are_not_capacity() -> None:
    samples = [*load(0, NOW - 60, NOW), Sample(NOW, 0, 2)]
    decision = decide(settings(), samples, [draining("old1"), draining("old2")], NOW)
    assert decision.start == 2
    assert decision.stop == ()


def test_draining_containers_are_never_stopped_again() -> None:
    containers = [draining("d"), ready("r", idle_since=0.0)]
    decision = decide(settings(), load(0, NOW - 60, NOW), containers, NOW)
    assert decision.stop == ("r",)


# --- steady state and the stable window -----------------------------------------------------------------


def test_steady_state_changes_nothing() -> None:
    containers = [busy("a", started_at=0), busy("b", started_at=0)]
    decision = decide(settings(), load(2, NOW - 60, NOW + STEP), containers, NOW)
    assert decision == Decision(start=0, stop=(), panic=False, desired=2)


def test_stable_window_averages_demand() -> None:
    # 4 in flight for the first half of the window, none for the second: the average is 2.
    samples = [*load(100, NOW - 120, NOW - 60.5), *load(4, NOW - 60, NOW - 30),
               *load(0, NOW - 30, NOW + STEP)]
    containers = [ready(c, idle_since=NOW - 30) for c in "abcd"]
    decision = decide(settings(scaledown_window=10), samples, containers, NOW)
    assert not decision.panic
    assert decision.desired == 2
    assert len(decision.stop) == 2


def test_stable_window_scales_up_gently_below_the_panic_threshold() -> None:
    containers = [busy(f"c{i}", started_at=0) for i in range(10)]
    decision = decide(settings(), load(12, NOW - 60, NOW + STEP), containers, NOW)
    assert not decision.panic
    assert decision.start == 2
    # A rise only in the last seconds moves the minute's average a little.
    samples = [*load(10, NOW - 60, NOW - 6), *load(15, NOW - 6, NOW + STEP)]
    decision = decide(settings(), samples, containers, NOW)
    assert (decision.panic, decision.start) == (False, 1)


def test_target_inputs_sets_capacity_per_container() -> None:
    containers = [busy("a", 8, started_at=0), busy("b", 8, started_at=0)]
    samples = load(16, NOW - 60, NOW + STEP)
    assert decide(settings(max_inputs=8), samples, containers, NOW).desired == 2
    assert decide(settings(max_inputs=8, target_inputs=4), samples, containers, NOW).desired == 4


# --- panic ----------------------------------------------------------------------------------------------


def test_panic_enters_at_twice_the_capacity() -> None:
    containers = [busy("a", started_at=0), busy("b", started_at=0)]
    burst = [*load(2, NOW - 60, NOW - 6), *load(2, NOW - 6, NOW), Sample(NOW, 2, 2)]
    # Panic-window average just over 2 -> desired 3 < 2 x 2: no panic; the stable average, also just
    # over 2, rounds up to 3.
    decision = decide(settings(), burst, containers, NOW)
    assert (decision.panic, decision.start, decision.desired) == (False, 1, 3)
    burst = [*load(2, NOW - 60, NOW - 6), *load(4, NOW - 6, NOW + STEP)]
    decision = decide(settings(), burst, containers, NOW)
    assert decision.panic
    assert decision == Decision(start=2, stop=(), panic=True, desired=4)


def test_panic_never_scales_down() -> None:
    # A burst 30 s ago, when only one container existed; the others were started for it and are idle now.
    samples = [*load(1, NOW - 60, NOW - 31), *load(5, NOW - 31, NOW - 30), *load(0, NOW - 30, NOW + STEP)]
    containers = [ready("a", idle_since=NOW - 29, started_at=0)]
    containers += [ready(c, idle_since=NOW - 29, started_at=NOW - 29.9) for c in "bcde"]
    decision = decide(settings(scaledown_window=10), samples, containers, NOW)
    assert decision == Decision(start=0, stop=(), panic=True, desired=5)


def test_panic_ends_after_a_stable_window_without_a_burst() -> None:
    burst_at = 100.0
    samples = [*load(1, 0, burst_at), *load(5, burst_at, burst_at + 1), *load(0, burst_at + 1, 400)]
    containers = [ready("a", idle_since=burst_at + 5, started_at=0)]
    containers += [ready(c, idle_since=burst_at + 5, started_at=burst_at + 1) for c in "bcd"]

    def at(now: float) -> Decision:
        return decide(settings(scaledown_window=10), [s for s in samples if s.at <= now], containers, now)

    assert at(burst_at + 0.5).panic
    assert at(burst_at + 30).panic
    assert at(burst_at + 60.5).panic
    calm = at(burst_at + 61.5)
    assert not calm.panic
    assert calm.desired == 0
    assert len(calm.stop) == 2


def test_panic_uses_the_larger_of_panic_desired_and_current() -> None:
    containers = [busy(f"c{i}", started_at=0) for i in range(3)]
    samples = [*load(3, NOW - 60, NOW - 6), *load(9, NOW - 6, NOW + STEP)]
    decision = decide(settings(), samples, containers, NOW)
    assert (decision.panic, decision.desired, decision.start) == (True, 9, 6)


def test_panic_with_an_empty_pool_needs_waiting_requests_or_two_containers_of_demand() -> None:
    # Demand served by a container that has since exited is not a burst for its replacement.
    samples = load(1, NOW - 60, NOW + STEP)
    decision = decide(settings(), samples, [busy("new", started_at=NOW - 1)], NOW)
    assert not decision.panic


# --- scaling down ---------------------------------------------------------------------------------------


def test_scale_down_at_most_halves_ready_containers() -> None:
    quiet = load(0, NOW - 60, NOW + STEP)
    four = [ready(c, idle_since=0) for c in "abcd"]
    assert len(decide(settings(), quiet, four, NOW).stop) == 2
    three = [ready(c, idle_since=0) for c in "abc"]
    assert len(decide(settings(), quiet, three, NOW).stop) == 1
    assert len(decide(settings(), quiet, three[:1], NOW).stop) == 1


def test_scale_to_zero_halves_over_successive_decisions() -> None:
    containers = [ready(c, idle_since=0) for c in "abcd"]
    counts = []
    now = NOW
    while containers:
        decision = decide(settings(), load(0, now - 60, now + STEP), containers, now)
        assert decision.desired == 0 and decision.start == 0
        containers = [c for c in containers if c.container_id not in decision.stop]
        counts.append(len(containers))
        now += 0.5
    assert counts == [2, 1, 0]


def test_only_containers_idle_for_the_scaledown_window_are_stopped_longest_idle_first() -> None:
    quiet = load(0, NOW - 60, NOW + STEP)
    containers = [
        ready("recent", idle_since=NOW - 59),
        ready("oldest", idle_since=NOW - 300),
        ready("old", idle_since=NOW - 61),
        ready("older", idle_since=NOW - 120),
        ready("fresh", idle_since=NOW - 1),
        ready("edge", idle_since=NOW - 60),
    ]
    decision = decide(settings(scaledown_window=60), quiet, containers, NOW)
    assert decision.stop == ("oldest", "older", "old")
    only_recent = [ready("recent", idle_since=NOW - 59), ready("fresh", idle_since=NOW - 1)]
    assert decide(settings(scaledown_window=60), quiet, only_recent, NOW).stop == ()


def test_busy_containers_are_never_stopped() -> None:
    containers = [busy("a"), busy("b"), busy("c"), ready("idle", idle_since=0)]
    samples = [*load(0, NOW - 60, NOW), Sample(NOW, 3, 0)]
    decision = decide(settings(scaledown_window=1), samples, containers, NOW)
    assert decision.desired < 4
    assert decision.stop == ("idle",)
    # A view that claims both in-flight work and an idle time is treated as busy.
    odd = ContainerView("odd", "ready", 2, 0.0, 0.0)
    assert decide(settings(scaledown_window=1), samples, [odd], NOW).stop == ()


def test_starting_containers_are_not_stopped() -> None:
    decision = decide(settings(), load(0, NOW - 60, NOW + STEP), [starting("s"), ready("r")], NOW)
    assert decision.stop == ("r",)


# --- min, max, buffer -----------------------------------------------------------------------------------


def test_min_containers_start_without_traffic() -> None:
    assert decide(settings(min_containers=2), [], [], NOW) == Decision(2, (), False, 2)


def test_min_containers_are_never_stopped() -> None:
    containers = [ready(c, idle_since=0) for c in "abcd"]
    decision = decide(settings(min_containers=3), load(0, NOW - 60, NOW + STEP), containers, NOW)
    assert decision.desired == 3
    assert len(decision.stop) == 1


def test_max_containers_caps_a_big_queue() -> None:
    samples = [*load(0, NOW - 60, NOW), Sample(NOW, 0, 1000)]
    assert decide(settings(max_containers=5), samples, [], NOW) == Decision(5, (), True, 5)
    some = [starting("a"), starting("b"), starting("c")]
    big = [*load(0, NOW - 60, NOW - 6), *load(3, NOW - 6, NOW), Sample(NOW, 3, 1000)]
    decision = decide(settings(max_containers=5), big, some, NOW)
    assert (decision.start, decision.desired) == (2, 5)
    full = [busy(f"c{i}", started_at=0) for i in range(5)]
    assert decide(settings(max_containers=5), big, full, NOW).start == 0


def test_buffer_containers_only_while_active() -> None:
    serving = [busy("a", started_at=0)]
    active = load(1, NOW - 60, NOW + STEP)
    assert decide(settings(buffer_containers=2), active, serving, NOW) == Decision(2, (), False, 3)
    assert decide(settings(buffer_containers=2, max_containers=2), active, serving, NOW).start == 1
    # One request early in the window still counts as active.
    blip = [Sample(NOW - 50, 1, 0), *load(0, NOW - 49.5, NOW + STEP)]
    idle = [ready("a", idle_since=NOW - 49)]
    assert decide(settings(buffer_containers=2, scaledown_window=10), blip, idle, NOW).desired == 3
    # Silent for a whole window: the buffer goes too.
    decision = decide(settings(buffer_containers=2, scaledown_window=10), load(0, NOW - 60, NOW + STEP),
                      [ready(c, idle_since=0) for c in "abc"], NOW)
    assert (decision.desired, len(decision.stop)) == (0, 1)


def test_invalid_settings_and_windows_are_refused() -> None:
    with pytest.raises(InvalidError):
        decide(settings(max_inputs=0), [], [], NOW)
    with pytest.raises(InvalidError):
        decide(settings(min_containers=3, max_containers=2), [], [], NOW)
    with pytest.raises(InvalidError):
        decide(settings(min_containers=-1), [], [], NOW)
    with pytest.raises(InvalidError):
        decide(settings(), [], [], NOW, stable_window=5, panic_window=6)


# --- simulation and invariants --------------------------------------------------------------------------


def test_simulated_burst_then_silence_scales_up_then_to_zero() -> None:
    """A small world: containers take 2 s to start; 6 clients send back-to-back requests for 30 s."""
    config = settings(max_containers=10, scaledown_window=20)
    containers: dict[str, ContainerView] = {}
    samples: list[Sample] = []
    peak, first_ready_at, counter = 0, None, 0
    now = 0.0
    while now < 300:
        demand = 6 if 10 <= now < 40 else 0
        for cid, c in list(containers.items()):
            if c.state == "starting" and now - c.started_at >= 2:
                containers[cid] = ContainerView(cid, "ready", 0, now, c.started_at)
        slots = [cid for cid, c in containers.items() if c.state == "ready"]
        served = min(demand, len(slots))
        for i, cid in enumerate(slots):
            c = containers[cid]
            in_flight = 1 if i < served else 0
            idle_since = None if in_flight else (c.idle_since if c.idle_since is not None else now)
            containers[cid] = ContainerView(cid, "ready", in_flight, idle_since, c.started_at)
        samples.append(Sample(now, served, demand - served))
        samples = [s for s in samples if s.at >= now - 60]
        if served and first_ready_at is None:
            first_ready_at = now
        decision = decide(config, samples, list(containers.values()), now)
        for cid in decision.stop:
            del containers[cid]
        for _ in range(decision.start):
            counter += 1
            containers[f"c{counter}"] = ContainerView(f"c{counter}", "starting", 0, None, now)
        peak = max(peak, len(containers))
        now += STEP
    assert first_ready_at == 12.0
    assert peak == 6
    assert containers == {}


def _invariants(config: AutoscalerSettings, samples: Sequence[Sample], containers: Sequence[ContainerView],
                now: float, decision: Decision) -> None:
    capacity = [c for c in containers if c.state != "draining"]
    by_id = {c.container_id: c for c in containers}
    assert decision.start >= 0
    assert not (decision.start and decision.stop)
    if config.max_containers is not None and len(capacity) <= config.max_containers:
        assert len(capacity) + decision.start <= config.max_containers
    assert len(set(decision.stop)) == len(decision.stop)
    for cid in decision.stop:
        c = by_id[cid]
        assert c.state == "ready" and c.in_flight == 0 and c.idle_since is not None
        assert now - c.idle_since >= config.scaledown_window
    if decision.stop:
        assert not decision.panic
        assert len(capacity) - len(decision.stop) >= max(config.min_containers, decision.desired)
        ready_count = sum(c.state == "ready" for c in capacity)
        assert len(decision.stop) <= max(1, ready_count // 2)
    if decision.panic:
        assert decision.stop == ()
    latest = max(samples, key=lambda s: s.at) if samples else None
    if latest is not None and latest.queued and not capacity and now - latest.at <= 60:
        wanted = math.ceil(latest.queued / config.effective_target)
        cap = config.max_containers if config.max_containers is not None else wanted
        assert decision.start >= min(wanted, cap)
    assert decision.start >= config.min_containers - len(capacity)


def test_random_inputs_keep_the_invariants() -> None:
    rng = random.Random(20240611)
    states: tuple[State, ...] = ("starting", "ready", "draining")
    for _ in range(3000):
        low = rng.randint(0, 3)
        config = AutoscalerSettings(
            min_containers=low,
            max_containers=rng.choice([None, low + rng.randint(0, 8)]),
            buffer_containers=rng.randint(0, 3),
            scaledown_window=rng.choice([0.0, 5.0, 30.0, 60.0, 120.0]),
            max_inputs=rng.randint(1, 8),
            target_inputs=rng.choice([None, rng.randint(1, 4)]),
        )
        now = rng.uniform(0, 500)
        samples = [Sample(now - rng.uniform(0, 90), rng.randint(0, 20),
                          rng.choice([0, 0, rng.randint(1, 50)]))
                   for _ in range(rng.randint(0, 60))]
        containers = []
        for i in range(rng.randint(0, 12)):
            state = rng.choice(states)
            in_flight = 0 if state == "starting" or rng.random() < 0.5 else rng.randint(1, 8)
            idle_since = now - rng.uniform(0, 200) if state != "starting" and in_flight == 0 else None
            containers.append(ContainerView(f"c{i}", state, in_flight, idle_since, now - rng.uniform(0, 120)))
        decision = decide(config, samples, containers, now)
        _invariants(config, samples, containers, now, decision)
