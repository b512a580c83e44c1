"""How far apart one configuration's energy lands on different physical GPUs: the noise floor.

Every real measurement records the UUIDs of the GPUs it ran on. A configuration (architecture
shape, GPU setup, precision) measured on two or more physical GPUs of one type shows how much the
same work costs on different devices (clock and power behaviour, temperature, the chip's own
leakage): a spread no predictor of a GPU *type* can learn, so it bounds every accuracy figure.

Requests differ between the GPUs that measured a configuration, so the GPUs are compared through a
model's residuals rather than raw joules: each point's ``log(measured / predicted)`` (predictions
of held-out random configurations, where every shape was seen in training), averaged per GPU
within a configuration and centred on the configuration's mean. Their pooled standard deviation
(each configuration measured on ``k`` GPUs gives ``k - 1`` degrees of freedom) is the spread; a
predictor exact for the average GPU would still be off by about ``σ·√(2/π)`` (the mean absolute
value of a normal error of that spread). Model error that differs between the GPUs' request
mixes adds to the estimate, so it is an upper bound of the device spread and a fair floor of
the predictor's error.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Points a GPU needs in a configuration for its mean residual to count.
MIN_POINTS_PER_GPU = 2


@dataclass(frozen=True)
class MachineSpread:
    """The spread of one configuration's energy between physical GPUs.

    Attributes:
        sigma: Pooled standard deviation of the GPUs' mean log residuals within a configuration.
        configurations: Configurations measured on two or more GPUs (with enough points each).
        gpus: Physical GPUs among them.
        points: Points in those configurations.
        offsets: Per GPU (first UUID of its group), its mean centred log residual (> 0: it
            drew more energy than the configuration's GPUs on average).
    """

    sigma: float
    configurations: int
    gpus: int
    points: int
    offsets: dict[str, float]

    @property
    def spread_pct(self) -> float:
        """The spread as a percentage of energy."""
        return 100.0 * math.expm1(self.sigma)

    @property
    def floor_mape(self) -> float:
        """MAPE (%) a predictor exact for the average GPU would have from this spread alone."""
        return 100.0 * self.sigma * math.sqrt(2.0 / math.pi)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures, the derived percentages included."""
        return {**asdict(self), "spread_pct": self.spread_pct, "floor_mape": self.floor_mape}


def machine_spread(
    machine: np.ndarray,
    configuration: np.ndarray,
    log_ratio: np.ndarray,
    min_points: int = MIN_POINTS_PER_GPU,
) -> MachineSpread | None:
    """The GPU-to-GPU spread of residuals ``log_ratio`` (None: no configuration has two GPUs).

    Args:
        machine: Per point, the GPU it ran on ("" where unknown: left out).
        configuration: Per point, a label of its configuration (shape, setup, precision).
        log_ratio: Per point, ``log(measured / predicted)`` (NaN where not predicted: left out).
        min_points: Points a GPU needs in a configuration to count.
    """
    by_configuration: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for gpu, config, ratio in zip(machine, configuration, log_ratio, strict=True):
        if gpu and np.isfinite(ratio):
            by_configuration[str(config)][str(gpu)].append(float(ratio))
    squares, freedom, points = 0.0, 0, 0
    centred: dict[str, list[float]] = defaultdict(list)
    configurations = 0
    for per_gpu in by_configuration.values():
        means = {gpu: float(np.mean(v)) for gpu, v in per_gpu.items() if len(v) >= min_points}
        if len(means) < 2:
            continue
        centre = float(np.mean(list(means.values())))
        for gpu, value in means.items():
            centred[gpu].append(value - centre)
            squares += (value - centre) ** 2
        freedom += len(means) - 1
        points += sum(len(per_gpu[gpu]) for gpu in means)
        configurations += 1
    if not freedom:
        return None
    return MachineSpread(
        sigma=math.sqrt(squares / freedom),
        configurations=configurations,
        gpus=len(centred),
        points=points,
        offsets={gpu: float(np.mean(v)) for gpu, v in sorted(centred.items())},
    )
