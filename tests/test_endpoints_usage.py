"""The usage meter and its rates table (real SQLite store, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.exceptions import InvalidError
from shipyard.server._store import Store
from shipyard.server._usage import DEFAULT_RATES, Rates, Subject, UsageMeter

EP = Subject("endpoint", "ep-1", "smol", "main", cpu=2.0, memory_mib=1024, gpu=None, gpu_count=0,
             colocated=False)
GPU_EP = Subject("endpoint", "ep-2", "big", "prod", cpu=8.0, memory_mib=65536, gpu="H100", gpu_count=2,
                 colocated=True)


def test_rates_defaults_overrides_and_region_multiplier(tmp_path: Path) -> None:
    rates = Rates.load(tmp_path / "rates.json")
    assert rates.cpu_core == DEFAULT_RATES["cpu_core"] and rates.gpu["H100"] == 0.001097
    cpu_only = rates.per_second(cpu=2, memory_mib=1024, gpu=None, gpu_count=0, colocated=False)
    assert cpu_only == pytest.approx(2 * 0.0000131 + 0.00000222)
    assert rates.per_second(cpu=2, memory_mib=1024, gpu=None, gpu_count=0, colocated=True) == pytest.approx(
        cpu_only * 1.25)
    (tmp_path / "rates.json").write_text(json.dumps({"cpu_core": 1.0, "gpu": {"H100": 10.0}}))
    custom = Rates.load(tmp_path / "rates.json")
    assert custom.cpu_core == 1.0 and custom.gpu["H100"] == 10.0 and custom.gpu["L4"] == 0.000222
    (tmp_path / "rates.json").write_text(json.dumps({"nonsense": 1}))
    with pytest.raises(InvalidError, match="Invalid rates file"):
        Rates.load(tmp_path / "rates.json")


def test_meter_accrues_only_running_containers_and_reports(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    meter = UsageMeter(store, Rates.load(tmp_path / "none.json"))
    meter.accrue(EP, 2, 1.5)
    meter.accrue(EP, 0, 100.0)  # scaled to zero: nothing
    meter.tokens(EP, 10, 4)
    meter.tokens(EP, 5, 1)
    meter.accrue(GPU_EP, 1, 10.0)
    meter.flush()
    meter.flush()  # nothing pending: no empty rows
    rows = {r.name: r for r in meter.report(None, None)}
    smol = rows["smol"]
    assert smol.seconds == pytest.approx(3.0) and smol.cpu_seconds == pytest.approx(6.0)
    assert (smol.requests, smol.tokens_in, smol.tokens_out) == (2, 15, 5)
    assert smol.cost == pytest.approx(3.0 * (2 * 0.0000131 + 0.00000222))
    big = rows["big"]
    assert big.gpu_seconds == pytest.approx(20.0)
    assert big.cost == pytest.approx(10.0 * (8 * 0.0000131 + 64 * 0.00000222 + 2 * 0.001097) * 1.25)
    assert [r.name for r in meter.report("prod", None)] == ["big"]
    assert [r.name for r in meter.report(None, "smol")] == ["smol"]
    store.close()
