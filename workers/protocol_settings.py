"""The measurement protocol's knobs and their defaults (see :mod:`workers.protocol`).

Apart from the protocol itself so that the campaign config takes its defaults from here without
importing the engines and the store.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Counter updates a measurement window spans at least (NVML's energy counter updates every ~100 ms
#: on H100/H200: 20 updates are 2 s).
DEFAULT_MIN_PERIODS = 20


@dataclass(frozen=True)
class ProtocolSettings:
    """Knobs of the protocol (defaults measured on an H200, see :mod:`workers.protocol`).

    A window lasts at least ``min_window_s`` and ``min_periods`` updates of the energy counter.
    """

    warmups: int = 2
    windows: int = 3
    min_window_s: float = 2.0
    min_periods: int = DEFAULT_MIN_PERIODS
    min_requests: int = 3
    cv_threshold: float = 0.03
    remeasure_noisy: bool = True
    measure_prefill: bool = True
