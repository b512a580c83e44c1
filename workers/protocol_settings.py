"""The measurement protocol's knobs and their defaults (see :mod:`workers.protocol`).

Apart from the protocol itself so that the campaign config takes its defaults from here without
importing the engines and the store.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProtocolSettings:
    """Knobs of the protocol (defaults measured on an H200, see :mod:`workers.protocol`)."""

    warmups: int = 2
    windows: int = 3
    min_window_s: float = 2.0
    min_requests: int = 3
    cv_threshold: float = 0.03
    remeasure_noisy: bool = True
    measure_prefill: bool = True
