"""A run's time limit: measure only what can finish before it, and stop there.

A campaign on a lent GPU runs in device calls of a few minutes; stopping the job from outside
cuts off whatever engine was loading or point was being measured, and the next call repeats the
load. With a time limit the driver itself stops starting work that cannot end in time: an engine
is started only if its start and all its points fit in what is left (or, for an engine whose
points would not fit in a whole run, its start and its first point), and a loaded engine begins
a point only if the point fits. An engine the limit cut off would cost the next run a second
start for the rest of its points: on an H100 such ends of engines (2, 3 and 5 points a start)
halved a run's duty cycle. The estimates are the simulated twin's
(:class:`~orchestrator.gpu_cost.GpuCostModel`: its start model fitted on real starts, its
latencies and the protocol's window rules). The run then ends with its round unfinished; running
the same command again continues it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from featurize.point import GpuSetup, InferencePoint
from featurize.request import InferenceRequest
from llmco2.errors import InvalidRequestError
from orchestrator.gpu_cost import GpuCostModel
from workers.pool import ServingTask, Task
from workers.protocol_settings import ProtocolSettings

#: How much longer than predicted a serving run may take and still end before the limit (the
#: prediction is within 10 % on energy, its run length less tested).
SERVING_MARGIN = 1.5


@dataclass
class TimeLimit:
    """Admits a task only while it can be measured before ``deadline``.

    Attributes:
        seconds: The limit, counted from when it was made or last :meth:`start` ed.
        settings: The campaign's protocol (how long a point's windows last).
        clock: Seconds of a monotonic clock.
        deadline: The clock's reading at which the limit is reached.

    Raises:
        InvalidRequestError: A limit that is not positive.
    """

    seconds: float
    settings: ProtocolSettings
    clock: Callable[[], float] = time.monotonic
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise InvalidRequestError(f"a time limit must be > 0 seconds, got {self.seconds:g}")
        self.start()

    def start(self) -> None:
        """Count the limit from now."""
        self.deadline = self.clock() + self.seconds

    def left(self) -> float:
        """Seconds left before the limit (negative once it has passed)."""
        return self.deadline - self.clock()

    def needs(self, task: Task, starts_engine: bool) -> float:
        """Wall seconds ``task`` is expected to take, its engine's start included if it starts.

        A serving task takes what the serving prediction expects of its run, with
        :data:`SERVING_MARGIN` to spare. A task of an engine without GPUs (no inference point
        to estimate) needs no time.
        """
        config = task.config
        if config.gpu is None:
            return 0.0
        costs = GpuCostModel(self.settings)
        if isinstance(task, ServingTask):
            seconds = SERVING_MARGIN * costs.serving_seconds(config, task.load, task.max_num_seqs)
        else:
            seconds = float(costs.point_seconds([task.point()])[0])
        if starts_engine:
            probe = InferencePoint(
                config.architecture, InferenceRequest(1, 16, 2), GpuSetup(config.gpu, config.tp),
                config.precision, config.flash_attention,
            )  # fmt: skip
            seconds += costs.start_seconds(probe)
        return seconds / config.tp  # GPU-seconds of all its GPUs, in lock-step

    def __call__(self, task: Task, starts_engine: bool, engine_tasks: Sequence[Task] = ()) -> bool:
        """Whether ``task`` (and its engine's start) can end before the limit.

        An engine starts only if its start and every one of ``engine_tasks`` can end before the
        limit, unless together they would not fit in a whole run of this limit's length: then
        its start and first task are enough.
        """
        left = self.left()
        first = self.needs(task, starts_engine)
        if left <= 0 or first > left:
            return False
        if not starts_engine or len(engine_tasks) < 2:
            return True
        # ``task`` is the engine's first task: its start and point are counted already.
        whole = first + sum(self.needs(other, False) for other in engine_tasks[1:])
        return whole <= left or whole > self.seconds
