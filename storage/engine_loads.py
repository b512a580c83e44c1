"""Engine starts of a campaign: what each cost and how much of it measured.

Every measurement names the engine start that made it (``extra["engine_instance"]``, with the
start's wall-clock time, its load seconds, the seconds it held its GPUs since the previous
result and the seconds inside measurement windows). Grouped by start, they give one row per
engine load — configuration, GPUs, load time, points, time held and time measuring — and, summed,
the figures a campaign's GPU time is judged by: duty cycle (time inside windows ÷ time held),
median load time and points per GPU-hour, and where the starts' time went (the phases the
workers time: actor start, import, engine build, idle-power reading). Time an engine held
after its last measurement (its shutdown) and points that failed on it are not in the rows;
measurements made before engines recorded their start have no row and are counted apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from statistics import median
from typing import Any


@dataclass(frozen=True)
class EngineLoad:
    """One engine start and the points it measured.

    Attributes:
        engine_instance: The start's id.
        config_key: Its engine configuration.
        model_name: The model (or shape) it served.
        gpu_type: Its GPU type.
        tp: GPUs it held.
        gpu_uuids: Their UUIDs (JSON list).
        loaded_at: When the load began (ISO 8601, UTC).
        first_measured_at: When its first measurement began.
        last_measured_at: When its last measurement ended.
        load_s: Seconds loading (engine start and compile, and the idle-power reading).
        points: COMPLETE points it measured.
        window_s: Seconds inside measurement windows.
        held_s: Seconds from the load's start to its last result (per GPU).
        duty_cycle: ``window_s / held_s``.
        actor_start_s: Of ``load_s``, seconds from asking Ray for the actor to its process
            beginning to load (None where not recorded, as every phase below).
        import_s: Importing the engine library.
        engine_init_s: Building the engine (vLLM: its processes, weights, compilation,
            KV-cache profiling and CUDA graphs).
        idle_power_s: Reading the idle power after the load.
    """

    engine_instance: str
    config_key: str
    model_name: str | None
    gpu_type: str
    tp: int
    gpu_uuids: str | None
    loaded_at: str | None
    first_measured_at: str | None
    last_measured_at: str | None
    load_s: float
    points: int
    window_s: float
    held_s: float
    duty_cycle: float | None
    actor_start_s: float | None = None
    import_s: float | None = None
    engine_init_s: float | None = None
    idle_power_s: float | None = None


#: The phases of an engine start that the workers time (``extra["engine_phases"]``).
LOAD_PHASES: tuple[str, ...] = ("actor_start_s", "import_s", "engine_init_s", "idle_power_s")
#: Columns of ``engine_loads`` tables, in order.
ENGINE_LOAD_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EngineLoad))


def _extra(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _phases(extra: dict[str, Any]) -> dict[str, float | None]:
    phases = _extra(extra.get("engine_phases"))
    return {name: None if phases.get(name) is None else float(phases[name]) for name in LOAD_PHASES}


def engine_loads(rows: Iterable[dict[str, Any]]) -> tuple[list[EngineLoad], int]:
    """Group measurement rows (:meth:`~storage.store.CampaignStore.engine_load_rows`) by start.

    Returns:
        The engine loads in the order of their first point, and how many rows name no engine
        start (measured before starts were recorded).
    """
    grouped: dict[str, list[dict[str, Any]]] = {}
    unrecorded = 0
    for row in rows:
        instance = _extra(row.get("extra")).get("engine_instance")
        if not instance:
            unrecorded += 1
            continue
        grouped.setdefault(str(instance), []).append(row)
    loads = []
    for instance, members in grouped.items():
        first, extras = members[0], [_extra(m.get("extra")) for m in members]
        started = [t for t in (_iso(m.get("started_at")) for m in members) if t is not None]
        finished = [t for t in (_iso(m.get("finished_at")) for m in members) if t is not None]
        window = sum(float(e.get("window_s") or 0.0) for e in extras)
        held = sum(float(e.get("held_s") or 0.0) for e in extras)
        uuids = first.get("gpu_uuids")
        loads.append(
            EngineLoad(
                engine_instance=instance,
                config_key=str(first["config_key"]),
                model_name=first.get("model_name"),
                gpu_type=str(first["gpu_type"]),
                tp=int(first["gpu_count"]),
                gpu_uuids=None if uuids is None else json.dumps(uuids),
                loaded_at=extras[0].get("engine_loaded_at"),
                first_measured_at=min(started, default=None),
                last_measured_at=max(finished, default=None),
                load_s=float(extras[0].get("engine_load_s") or 0.0),
                points=len(members),
                window_s=window,
                held_s=held,
                duty_cycle=window / held if held > 0 else None,
                **_phases(extras[0]),
            )
        )
    return loads, unrecorded


def load_summary(loads: Iterable[EngineLoad], unrecorded: int = 0) -> dict[str, Any]:
    """Totals over engine loads: duty cycle, median load time, points per GPU-hour."""
    loads = list(loads)
    gpu_hours = sum(load.held_s * load.tp for load in loads) / 3600.0
    held = sum(load.held_s for load in loads)
    points = sum(load.points for load in loads)
    return {
        "loads": len(loads),
        "points": points,
        "points_without_engine_record": unrecorded,
        "median_load_s": median(load.load_s for load in loads) if loads else None,
        "gpu_hours": gpu_hours,
        "duty_cycle": sum(load.window_s for load in loads) / held if held > 0 else None,
        "points_per_gpu_hour": points / gpu_hours if gpu_hours > 0 else None,
        "median_phase_s": {
            name: median(values)
            for name in LOAD_PHASES
            if (values := [v for load in loads if (v := getattr(load, name)) is not None])
        },
    }


def as_columns(loads: Iterable[EngineLoad]) -> dict[str, list[Any]]:
    """Engine loads as columns (for a table), every column present even with no load."""
    rows = [asdict(load) for load in loads]
    return {name: [row[name] for row in rows] for name in ENGINE_LOAD_COLUMNS}
