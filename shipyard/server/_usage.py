"""The usage meter: container-seconds by resources, priced from a rates table, plus tokens per endpoint.

The meter samples the scheduler once a second: every container that is starting or running
accrues its function's resources for that second; a function scaled to zero or stopped has no
containers and accrues nothing. Samples are summed in memory and written to the `usage` table
on `flush()` (periodically, before reports, and when an endpoint stops).

Default rates (USD per second), overridable with `$SHIPYARD_HOME/rates.json` (same keys; `gpu` entries
merge by type):
  cpu_core 0.0000131 · memory_gib 0.00000222 · gpu: T4 0.000164, L4 0.000222, A10G 0.000306,
  L40S 0.000542, A100-40GB 0.000583, A100/A100-80GB 0.000694, H100 0.001097, H200 0.001261,
  B200 0.001736 · region_multiplier (applied with --colocate-compute) 1.25.
Functions that set no resources are billed as 0.125 cores and 128 MiB.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..endpoints import UsageRow
from ..exceptions import InvalidError
from ._store import Store

DEFAULT_RATES: dict[str, object] = {
    "cpu_core": 0.0000131,
    "memory_gib": 0.00000222,
    "gpu": {"T4": 0.000164, "L4": 0.000222, "A10G": 0.000306, "A10": 0.000306, "L40S": 0.000542,
            "A100-40GB": 0.000583, "A100": 0.000694, "A100-80GB": 0.000694, "H100": 0.001097,
            "H200": 0.001261, "B200": 0.001736},
    "region_multiplier": 1.25,
}
DEFAULT_CPU = 0.125
DEFAULT_MEMORY_MIB = 128


@dataclass(frozen=True)
class Rates:
    cpu_core: float
    memory_gib: float
    gpu: dict[str, float]
    region_multiplier: float

    @classmethod
    def load(cls, path: Path) -> Rates:
        data: dict[str, object] = dict(DEFAULT_RATES)
        if path.exists():
            try:
                override = json.loads(path.read_text())
                gpu = {**DEFAULT_RATES["gpu"], **override.pop("gpu", {})}  # type: ignore[dict-item]
                data.update(override, gpu=gpu)
                return cls(**data)  # type: ignore[arg-type]
            except (ValueError, TypeError, AttributeError) as exc:
                raise InvalidError(f"Invalid rates file {path}: {exc}") from exc
        return cls(**data)  # type: ignore[arg-type]

    def per_second(self, *, cpu: float, memory_mib: int, gpu: str | None, gpu_count: int,
                   colocated: bool) -> float:
        price = cpu * self.cpu_core + memory_mib / 1024 * self.memory_gib
        if gpu is not None and gpu_count:
            # A GPU type missing from the table is not priced rather than stopping the meter.
            price += gpu_count * self.gpu.get(gpu, 0.0)
        return price * (self.region_multiplier if colocated else 1.0)


@dataclass(frozen=True)
class Subject:
    """Who a running container is billed to."""

    kind: str
    subject_id: str
    name: str
    environment: str
    cpu: float
    memory_mib: int
    gpu: str | None
    gpu_count: int
    colocated: bool


@dataclass
class _Pending:
    seconds: float = 0.0
    gpu_seconds: float = 0.0
    cpu_seconds: float = 0.0
    cost: float = 0.0
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass
class UsageMeter:
    store: Store
    rates: Rates
    _pending: dict[Subject, _Pending] = field(default_factory=dict)

    def accrue(self, subject: Subject, containers: int, seconds: float) -> None:
        if containers <= 0 or seconds <= 0:
            return
        pending = self._pending.setdefault(subject, _Pending())
        span = containers * seconds
        pending.seconds += span
        pending.gpu_seconds += span * subject.gpu_count
        pending.cpu_seconds += span * subject.cpu
        pending.cost += span * self.rates.per_second(
            cpu=subject.cpu, memory_mib=subject.memory_mib, gpu=subject.gpu, gpu_count=subject.gpu_count,
            colocated=subject.colocated)

    def tokens(self, subject: Subject, tokens_in: int, tokens_out: int) -> None:
        pending = self._pending.setdefault(subject, _Pending())
        pending.requests += 1
        pending.tokens_in += tokens_in
        pending.tokens_out += tokens_out

    def flush(self) -> None:
        """Write what accrued since the last flush; blocking (SQLite)."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        now = time.time()
        with self.store._transaction() as conn:
            conn.executemany(
                "INSERT INTO usage (environment, subject_kind, subject_id, subject_name, at, seconds, "
                "gpu_seconds, cpu_seconds, cost, requests, tokens_in, tokens_out) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(s.environment, s.kind, s.subject_id, s.name, now, p.seconds, p.gpu_seconds,
                  p.cpu_seconds, p.cost, p.requests, p.tokens_in, p.tokens_out)
                 for s, p in pending.items()],
            )

    def report(self, environment: str | None, endpoint: str | None) -> list[UsageRow]:
        sql = ("SELECT subject_kind, subject_name, environment, SUM(seconds), SUM(gpu_seconds), "
               "SUM(cpu_seconds), SUM(cost), SUM(requests), SUM(tokens_in), SUM(tokens_out) FROM usage")
        where, params = [], []
        if environment is not None:
            where.append("environment = ?")
            params.append(environment)
        if endpoint is not None:
            where.append("subject_kind = 'endpoint' AND subject_name = ?")
            params.append(endpoint)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += (" GROUP BY subject_kind, subject_name, environment"
                " ORDER BY environment, subject_kind, subject_name")
        return [
            UsageRow(kind=r[0], name=r[1], environment=r[2], seconds=r[3], gpu_seconds=r[4], cpu_seconds=r[5],
                     cost=r[6], requests=r[7], tokens_in=r[8], tokens_out=r[9])
            for r in self.store._query(sql, tuple(params))
        ]
