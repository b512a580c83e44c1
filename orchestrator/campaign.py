"""The campaign driver: the paper's Algorithm 1 as a resumable loop over Ray worker actors.

    sample A points from the priors (a test share held out) → measure → train → test →
    select (strategy) → measure → ... until the test MAPE ≤ e or a budget is spent.

Everything a round produces is in the database before the next begins: its points (with round
index and split) before they are measured, each measurement as it arrives, the round's metrics
and model after training. So the driver keeps no state of its own: a rerun after a crash at any
moment reads where the campaign stands and continues —

- RUNNING points this driver held are released (their measurement was lost in flight) and
  measured again; a COMPLETE point is never measured twice (results are exactly-once);
- a round whose metrics are stored is not trained again;
- a round whose successors were not selected yet is selected again from its stored model, with
  the round's own seed, so the same points are chosen.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from featurize import Gpu, GpuCatalog, InferencePoint
from featurize.graphs import FEATURE_SCHEMA_VERSION
from gnn.dataset import LabelledData
from gnn.metrics import Scores
from gnn.names import CORRECTION_EPOCHS, MIN_TRAINING_ROWS
from llmco2.errors import CampaignBusyError, InvalidRequestError
from orchestrator.config import CampaignConfig, Training
from orchestrator.driver_lease import DriverLease
from orchestrator.gpu_cost import GpuCostModel, loaded_engines
from orchestrator.measuring import Measurer, RayMeasurer
from orchestrator.sampling import PointSampler, Sampler, fill_engines
from orchestrator.strategies import select
from orchestrator.time_limit import TimeLimit
from storage import CampaignStatus, CampaignStore, PointSpec, PointStatus, RoundRecord
from storage.records import ServingPointSpec, StoredPoint, StoredServingPoint
from storage.store import DEFAULT_DRIVER_LEASE_SECONDS
from workers.actors import WorkerResult
from workers.engines import EngineConfig
from workers.engines.vllm_engine import MAX_NUM_SEQS_VARIABLE
from workers.pool import PointTask, ServingTask, Task, group_timings
from workers.protocol import ProtocolSettings
from workers.serving import ServingLoad, trace_sha256

_LOG = logging.getLogger(__name__)

#: Long enough for a round's measurements; a restarted driver releases its own leases at once.
LEASE_SECONDS = 24 * 3600.0
#: Seed stream of the engine fill, apart from the round's own draws (which stay as they were).
_FILL_STREAM = 0xF111
#: Seed stream of the reference engine's fill.
_REFERENCE_STREAM = 0x4EF


@dataclass
class RoundReport:
    """What one round did (also printed as the per-round summary line)."""

    round_index: int
    measured: int
    failed: int
    train_points: int
    test_points: int
    scores: Scores | None
    duty_cycle: float | None
    gpu_hours: float
    selected: int
    stop_reason: str | None = None


@dataclass
class CampaignOutcome:
    """How the campaign ended."""

    name: str
    rounds: list[RoundReport] = field(default_factory=list)
    stop_reason: str = ""
    complete_points: int = 0
    #: The run's time limit ended it, its round unfinished.
    timed_out: bool = False


class _TimeLimitError(Exception):
    """The run's time limit left claimed points unmeasured (they are PENDING again)."""


#: Labelled rows of a round: (point, measured labels) pairs.
LabelledRows = list[tuple[InferencePoint, dict[str, Any]]]


class Trainer(Protocol):
    """Trains a round's ensemble (the driver's own trains it as a Ray task)."""

    def __call__(self, rows: LabelledRows, seeds: Sequence[int]) -> list[Any]:
        """One predictor per seed, trained on ``rows``, ready to predict."""
        ...


#: Judges a round's ensemble by a yardstick of the caller's (its round index and members): a
#: stop reason, or None to go on.
Judge = Callable[[int, list[Any]], str | None]


def trainable_split(
    specs: Sequence[PointSpec], stored_train: int = 0, stored_test: int = 0
) -> list[PointSpec]:
    """Round 0's random split of new points, moved just enough to train and test on the round.

    A random split of a small round 0 can leave fewer than
    :data:`~gnn.names.MIN_TRAINING_ROWS` training points or no test point, which the round only
    finds out after measuring them all. Among ``specs`` (the round's points already stored,
    ``stored_train`` and ``stored_test`` of them, keep theirs), test points go back to training,
    the last first, until training has enough while one test point stays; with no test point
    the last new one becomes one. A split that already trains and tests is kept as drawn.
    """
    specs = list(specs)
    tests = [i for i, spec in enumerate(specs) if spec.split == "test"]
    total = len(specs) + stored_train + stored_test
    if specs and not tests and not stored_test and total > MIN_TRAINING_ROWS:
        tests = [len(specs) - 1]
        specs[-1] = replace(specs[-1], split="test")
    while (
        tests
        and len(tests) + stored_test > 1
        and total - len(tests) - stored_test < MIN_TRAINING_ROWS
    ):
        last = tests.pop()
        specs[last] = replace(specs[last], split="train")
    return specs


def _owner(config: CampaignConfig) -> str:
    return f"driver:{config.name}"


def train_members(
    rows: list[tuple[InferencePoint, dict[str, Any]]],
    epochs: int,
    patience: int,
    seeds: Sequence[int],
    device: str = "cpu",
    predictor: str = "llmco2",
    correction_epochs: int = CORRECTION_EPOCHS,
) -> tuple[list[bytes], float]:
    """Train one predictor per seed on ``rows`` (runs as a Ray task).

    Args:
        rows: (point, measured labels) pairs.
        epochs: Training epochs of the network.
        patience: Early-stopping patience.
        seeds: One member per seed.
        device: Where the network trains.
        predictor: ``"llmco2"`` (the analytical model with the GNN's correction) or ``"gnn"``
            (the paper's LLMCO2 GNN alone).
        correction_epochs: Epochs of llmco2's correction networks (0: early stopping).

    Returns:
        Their checkpoints, and the seconds spent featurising (building the graphs and the
        analytical model's inputs).
    """
    from gnn.training import TrainConfig, train_predictor

    start = time.perf_counter()
    data = LabelledData.from_rows(rows, "campaign")
    if predictor == "llmco2":
        data.physics_inputs  # noqa: B018  (computed once here, counted as featurising)
    featurise_s = time.perf_counter() - start
    members = []
    for seed in seeds:
        config = TrainConfig(
            epochs=epochs, patience=patience, seed=seed, device=device,
            correction_epochs=correction_epochs,
        )  # fmt: skip
        if predictor == "llmco2":
            from gnn.hybrid import CorrectionSettings, train_hybrid

            # The round's committee is an ensemble already (one member per seed): each member
            # is one network, so that their spread stays the committee's disagreement.
            hybrid = train_hybrid(data, np.arange(len(data)), config, CorrectionSettings(members=1))
            members.append(hybrid.to_bytes())
        else:
            network, _ = train_predictor(data.graphs, data.prefill_j, data.decode_j, config)
            members.append(network.to_bytes())
    return members, featurise_s


def train_ensemble(
    rows: list[tuple[InferencePoint, dict[str, Any]]],
    epochs: int,
    patience: int,
    seeds: Sequence[int],
    predictor: str = "llmco2",
    correction_epochs: int = CORRECTION_EPOCHS,
) -> list[Any]:
    """The members :func:`train_members` trains, in this process and ready to predict."""
    from gnn.hybrid import checkpoint_from_bytes

    blobs, _ = train_members(
        rows, epochs, patience, seeds, predictor=predictor, correction_epochs=correction_epochs
    )
    return [checkpoint_from_bytes(blob) for blob in blobs]


@dataclass(frozen=True)
class LocalTrainer:
    """A :class:`Trainer` that trains in this process, as the config's ``training`` says."""

    training: Training

    def __call__(self, rows: LabelledRows, seeds: Sequence[int]) -> list[Any]:
        """The round's ensemble, one member per seed."""
        t = self.training
        return train_ensemble(rows, t.epochs, t.patience, seeds, t.predictor, t.correction_epochs)


def store_result(store: CampaignStore, result: WorkerResult, max_attempts: int = 3) -> bool:
    """Store one worker result: the measurement, INFEASIBLE (final) or a counted failure.

    A serving point's result (``kind`` ``serving``) goes to the serving points.

    Returns:
        Whether the point was measured.
    """
    serving = result.kind == "serving"
    if result.status == PointStatus.COMPLETE and serving and result.serving is not None:
        store.record_serving_result(result.point_id, result.serving, result.gpu_seconds)
        return True
    if result.status == PointStatus.COMPLETE and not serving and result.record is not None:
        store.record_result(result.point_id, result.record, result.gpu_seconds)
        return True
    infeasible = store.record_serving_infeasible if serving else store.record_infeasible
    failure = store.record_serving_failure if serving else store.record_failure
    if result.status == PointStatus.INFEASIBLE:
        infeasible(
            result.point_id, result.error_message or "", result.error_kind or "infeasible",
            result.gpu_seconds,
        )  # fmt: skip
    else:
        # An engine that cannot load a configuration usually fails the same way every time.
        failure(
            result.point_id, result.error_kind or "error", result.error_message or "",
            retryable=result.retryable, max_attempts=max_attempts,
            final_if_repeated=result.error_kind == "engine_load_failed",
            gpu_seconds=result.gpu_seconds,
        )  # fmt: skip
    return False


class CampaignDriver:
    """Runs one campaign to its end (or to the next crash, from which a rerun continues)."""

    def __init__(
        self,
        config: CampaignConfig,
        store: CampaignStore,
        *,
        gpus: Sequence[Gpu],
        catalog: GpuCatalog | None = None,
        on_round: Callable[[RoundReport], None] | None = None,
        on_result: Callable[[WorkerResult], None] | None = None,
        on_phase: Callable[[str, int | None], None] | None = None,
        workers: int = 4,
        replace_config: bool = False,
        lease_seconds: float = DEFAULT_DRIVER_LEASE_SECONDS,
        measurer: Measurer | None = None,
        trainer: Trainer | None = None,
        judge: Judge | None = None,
        sampler: Sampler | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        """Prepare a campaign.

        Args:
            config: The campaign.
            store: Its database.
            gpus: GPU types to sample (the config's, or what the cluster reports).
            catalog: GPU catalog to rebuild stored points with.
            on_round: Called with each round's report.
            on_result: Called with each measurement result (progress bars).
            on_phase: Called when a phase starts, with its description and its number of
                steps (points to measure; None for training, whose length is unknown).
            workers: Actors for engines without GPUs (the simulated engine).
            replace_config: Continue a campaign stored with another configuration (--force).
            lease_seconds: The driver's lease on the campaign (renewed while it runs): how long
                a second driver is refused after this one hangs or dies on another host.
            measurer: Who measures the points (default: Ray actors, :class:`RayMeasurer`).
            trainer: Who trains each round's ensemble (default: a Ray task, on a GPU if free).
            judge: Called with each trained round's index and ensemble: a stop reason ends the
                campaign. With a judge, it says when the target is reached (a yardstick other
                than the campaign's test split, e.g. a benchmark's evaluation set) and the
                config's ``target_mape`` is not consulted; the budgets still apply.
            sampler: Where points come from (default: the config's priors, :class:`PointSampler`).
            time_limit_s: Stop the run before this many seconds (from :meth:`run`): no engine
                start and no point that the twin expects to end later is begun
                (:mod:`orchestrator.time_limit`; with the default measurer only), and the run
                ends with its round unfinished and the campaign STOPPED: rerunning continues.

        Raises:
            InvalidRequestError: A time limit that is not positive.
        """
        self.replace_config = replace_config
        self.lease_seconds = lease_seconds
        self.config = config
        self.store = store
        self.catalog = catalog or GpuCatalog.default()
        self.sampler: Sampler = sampler or PointSampler(config, gpus)
        #: Measured once per run, before the run's first round (None: the campaign has none).
        self.reference = self.sampler.reference_point()
        self._reference_pending = self.reference is not None
        #: The GPUs of a run that skipped the reference (``reference.every: gpu``), else None.
        self.reference_skipped_on: tuple[str, ...] | None = None
        self.on_round = on_round
        self.on_result = on_result
        self.on_phase = on_phase
        self.workers = workers
        self.settings = ProtocolSettings(**config.protocol.model_dump())
        #: Refuses what cannot end in time; counted from :meth:`run`'s start.
        self.time_limit = (
            TimeLimit(time_limit_s, self.settings) if time_limit_s is not None else None
        )
        #: Measures the points; keeps ``sampling.resident_engines`` loaded between rounds.
        self.measurer: Measurer = measurer or RayMeasurer(
            config.engine, self.settings, workers=workers, uses_gpus=self._uses_gpus(),
            resident_engines=config.sampling.resident_engines,
            admit=self.time_limit, actor_env=self._actor_env(),
        )  # fmt: skip
        self.trainer = trainer
        self.judge = judge
        #: Seconds this driver spent per stage (sampling, measuring, storing, featurising,
        #: training, selecting): what the scale benchmark prints.
        self.stage_seconds: dict[str, float] = defaultdict(float)
        #: Serving loads this driver measured and failed to measure.
        self.serving_counts: dict[str, int] = {"measured": 0, "failed": 0}

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[name] += time.perf_counter() - start

    # Steps -----------------------------------------------------------------------------------
    def _rng(self, round_index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, round_index])

    def _specs(
        self,
        points: Sequence[InferencePoint],
        round_index: int,
        reason: str,
        parents: Sequence[int | None] | None = None,
        offset: int = 0,
        rng: np.random.Generator | None = None,
    ) -> list[PointSpec]:
        rng = rng or self._rng(round_index)
        # One draw for offset + len(points) values: a round's first points keep the split they
        # had before any engine fill was appended to them.
        split = (rng.random(offset + len(points)) < self.config.sampling.test_fraction)[offset:]
        return [
            PointSpec(
                point, self.config.engine, round_index=round_index, reason=reason,
                parent_point_id=parents[i] if parents else None, strategy=self.config.strategy,
                split="test" if split[i] else "train",
            )
            for i, point in enumerate(points)
        ]  # fmt: skip

    def _measure_pending(self, campaign_id: int) -> tuple[int, int, dict[str, float]]:
        """Measure every PENDING point and serving point; (measured, failed, timings).

        The counts are of points; serving points are counted in :attr:`serving_counts`.
        """
        owner = _owner(self.config)
        running = self.store.get_points(campaign_id, statuses=[PointStatus.RUNNING])
        self.store.release([p.id for p in running if p.lease_owner == owner], owner)
        serving = self.store.get_serving_points(campaign_id, statuses=[PointStatus.RUNNING])
        self.store.release_serving([p.id for p in serving if p.lease_owner == owner], owner)
        self.store.requeue_expired(campaign_id, self.config.max_attempts)
        self.store.requeue_expired_serving(campaign_id, self.config.max_attempts)
        measured = failed = 0
        timings: list[dict[str, float]] = []
        left: list[Task] = []  # claimed, not measured: the time limit had no room for them
        while not left:
            claimed = self.store.claim(campaign_id, owner, 100_000, lease_seconds=LEASE_SECONDS)
            loads = self.store.claim_serving(
                campaign_id, owner, 100_000, lease_seconds=LEASE_SECONDS
            )
            if not claimed and not loads:
                break
            tasks: list[Task] = [self._task(p) for p in claimed]
            # The reference's engine first: a run stopped by its time limit (a device call)
            # has then measured the reference, whatever else it did not reach. An engine
            # measures its points before its serving loads (minutes each).
            first = {task.config for task, p in zip(tasks, claimed, strict=True)
                     if p.reason == "reference"}  # fmt: skip
            tasks += [self._serving_task(p) for p in loads]
            tasks.sort(key=lambda task: (task.config not in first, task.kind == "serving"))
            if self.on_phase is not None:
                what = f"{len(claimed)} points" + (
                    f" and {len(loads)} serving loads" if loads else ""
                )
                self.on_phase(f"measuring {what}", len(tasks))
            waited = time.perf_counter()
            answered: set[tuple[str, int]] = set()
            for result in self.measurer.measure(tasks, timings):
                self.stage_seconds["measuring"] += time.perf_counter() - waited
                answered.add((result.kind, result.point_id))
                with self._stage("storing"):
                    done = self._record(result)
                if result.kind == "serving":
                    self.serving_counts["measured" if done else "failed"] += 1
                elif done:
                    measured += 1
                else:
                    failed += 1
                if self.on_result is not None:
                    self.on_result(result)
                waited = time.perf_counter()
            left = [t for t in tasks if (t.kind, t.point_id) not in answered]
        if left and self.time_limit is not None:
            # PENDING again: the next run measures them.
            self.store.release([t.point_id for t in left if t.kind == "point"], owner)
            self.store.release_serving([t.point_id for t in left if t.kind == "serving"], owner)
            raise _TimeLimitError(f"{len(left)} points left for the next run")
        return measured, failed, group_timings(timings)

    def _add_serving(self, campaign_id: int, round_index: int) -> None:
        """Give the round's engine configurations their serving points (once per engine).

        The first ``serving.engines_per_round`` configurations of the round's points, in the
        order the points were added, serve every load of the ``serving`` section; a
        configuration that has serving points already (from an earlier round, or before this
        driver was restarted) gets none again.
        """
        serving = self.config.serving
        if serving is None:
            return
        from gnn.predict import default_predictor
        from gnn.serving import plan_loads

        had = {p.config_key for p in self.store.get_serving_points(campaign_id)}
        configs: dict[str, StoredPoint] = {}
        for stored in self.store.get_points(campaign_id):
            if stored.round_index == round_index and stored.config_key not in configs:
                configs[stored.config_key] = stored
        chosen = list(configs.items())[: serving.engines_per_round]
        specs: list[ServingPointSpec] = []
        with self._stage("sampling"):
            for key, stored in chosen:
                if key in had:
                    continue
                point = stored.inference_point(self.catalog)
                for trace in serving.traces:
                    plan = serving.plan(trace, self.config.seed)
                    digest = trace_sha256(trace)
                    loads = plan_loads(
                        default_predictor(), point.architecture, point.setup, plan,
                        point.precision,
                    )  # fmt: skip
                    for load in loads:
                        spec = ServingPointSpec(
                            point.architecture, point.precision, point.setup,
                            point.flash_attention, self.config.engine, trace, load.concurrency,
                            load.rate_per_s, load.requests, load.max_context, load.seed,
                            plan.max_num_seqs, digest, round_index,
                        )  # fmt: skip
                        specs.append(spec)
        if specs:
            with self._stage("storing"):
                self.store.add_serving_points(campaign_id, specs)

    def _actor_env(self) -> dict[str, str] | None:
        """The engines' settings: a scheduler as wide as the serving loads need."""
        if self.config.serving is None:
            return None
        return {MAX_NUM_SEQS_VARIABLE: str(self.config.serving.scheduler_seqs())}

    def _uses_gpus(self) -> bool:
        from workers.engines import engine_class

        return bool(engine_class(self.config.engine).uses_gpus)

    def _task(self, stored: StoredPoint) -> PointTask:
        point = stored.inference_point(self.catalog)
        config = EngineConfig(
            point.architecture,
            point.precision,
            point.setup.count,
            point.setup.gpu,
            stored.flash_attention,
            self.config.seed,
        )
        return PointTask(stored.id, config, point.request)

    def _serving_task(self, stored: StoredServingPoint) -> ServingTask:
        architecture, precision, setup = stored.engine_parts(self.catalog)
        config = EngineConfig(
            architecture, precision, setup.count, setup.gpu, stored.flash_attention,
            self.config.seed,
        )  # fmt: skip
        load = ServingLoad(
            stored.trace, stored.requests, stored.concurrency, stored.rate_per_s,
            stored.max_context, stored.seed,
        )  # fmt: skip
        return ServingTask(stored.id, config, load, stored.max_num_seqs)

    def _record(self, result: WorkerResult) -> bool:
        return store_result(self.store, result, self.config.max_attempts)

    def _labelled(
        self, campaign_id: int
    ) -> tuple[list[tuple[InferencePoint, dict[str, Any]]], list[StoredPoint]]:
        pairs = self.store.labelled_points(campaign_id)
        usable = [(p, r) for p, r in pairs if r["prefill_energy_j"] and r["energy_j"]]
        return [(p.inference_point(self.catalog), r) for p, r in usable], [p for p, _ in usable]

    def _train(self, rows: LabelledRows, round_index: int) -> list[Any]:
        """Train the round's ensemble (the trainer given, else a Ray task, on a GPU if free)."""
        training = self.config.training
        seeds = [self.config.seed * 1000 + round_index * 16 + k for k in range(training.ensemble)]
        if self.trainer is not None:
            with self._stage("training"):
                return self.trainer(rows, seeds)
        import ray

        from gnn.hybrid import checkpoint_from_bytes

        on_gpu = ray.available_resources().get("GPU", 0) >= 1
        if self.on_phase is not None:
            where = "a GPU" if on_gpu else "the CPU"
            self.on_phase(
                f"training round {round_index} on {len(rows)} points "
                f"({training.ensemble} model{'s' * (training.ensemble > 1)}, {where})",
                None,
            )
        task = ray.remote(num_cpus=1, num_gpus=1 if on_gpu else 0)(train_members)
        device = "cuda" if on_gpu else "cpu"
        with self._stage("training"):
            call = task.remote(
                rows, training.epochs, training.patience, seeds, device, training.predictor,
                training.correction_epochs,
            )  # fmt: skip
            blobs, featurise_s = ray.get(call)
        self.stage_seconds["training"] -= featurise_s
        self.stage_seconds["featurising"] += featurise_s
        return [checkpoint_from_bytes(b) for b in blobs]

    # The loop --------------------------------------------------------------------------------
    def _predict_test(
        self,
        members: list[Any],
        rows: list[tuple[InferencePoint, dict[str, Any]]],
        test: np.ndarray,
    ) -> tuple[list[InferencePoint], np.ndarray, np.ndarray]:
        from gnn.training import ensemble_energies

        test_points = [rows[i][0] for i in np.flatnonzero(test)]
        predicted = ensemble_energies(members, test_points).mean(axis=0)
        measured = np.array([rows[i][1]["energy_j"] for i in np.flatnonzero(test)], dtype=float)
        return test_points, predicted, measured

    def _select_next(
        self,
        campaign_id: int,
        round_index: int,
        members: list[Any],
        rows: list[tuple[InferencePoint, dict[str, Any]]],
        stored: list[StoredPoint],
        predicted: np.ndarray | None = None,
    ) -> int:
        """Choose and store the points of round ``round_index + 1``; how many.

        ``predicted``: the ensemble's test-point predictions if the caller has them (a driver
        resuming from a stored model has not).
        """
        config = self.config
        test = np.array([p.split == "test" for p in stored], dtype=bool)
        total = self.store.measurement_count(campaign_id)

        def ensemble(points: Sequence[InferencePoint]) -> np.ndarray:
            from gnn.training import ensemble_energies

            return ensemble_energies(members, points)

        with self._stage("selecting"):
            if predicted is None:
                test_points, predicted, measured = self._predict_test(members, rows, test)
            else:
                test_points = [rows[i][0] for i in np.flatnonzero(test)]
                measured = np.array([rows[i][1]["energy_j"] for i in np.flatnonzero(test)])
            selection = select(
                config.strategy, self.sampler, self._rng(round_index + 1),
                budget=self._room(total), neighbours=config.sampling.neighbours,
                test_points=test_points, test_ids=[stored[i].id for i in np.flatnonzero(test)],
                test_errors=np.abs(predicted - measured) / measured,
                rule=config.sampling.high_error,
                ensemble=ensemble if len(members) > 1 else None, exclude={p for p, _ in rows},
                costs=self._costs(),
            )  # fmt: skip
        chosen = list(selection.points)
        fill = self._fill_engines(
            chosen, round_index + 1, {p for p, _ in rows}, self._budget_left(total + len(chosen))
        )
        parents = list(selection.parents) if selection.parents else [None] * len(chosen)
        with self._stage("storing"):
            self.store.add_points(
                campaign_id,
                self._specs(chosen, round_index + 1, "selected", parents)
                + self._specs(fill, round_index + 1, "engine_fill", offset=len(chosen)),
            )
        return len(chosen) + len(fill)

    def _add_reference(self, campaign_id: int, round_index: int) -> None:
        """Queue this run's measurement of the reference point, with its engine's fill.

        A reference point a stopped run queued but never measured is this run's: one
        measurement per run, however often a run is stopped before it measures.
        """
        self._reference_pending = False
        assert self.reference is not None
        stored = self.store.get_points(campaign_id)
        references = [p for p in stored if p.reason == "reference"]
        if any(p.status in (PointStatus.PENDING, PointStatus.RUNNING) for p in references):
            return
        reference_config = self.config.reference
        assert reference_config is not None
        if reference_config.every == "gpu":
            here = set(self.measurer.gpu_uuids())
            if here and here <= self._reference_gpus(references):
                self.reference_skipped_on = tuple(sorted(here))
                _LOG.info("the reference point has been measured on every GPU here: %s", here)
                return
        wanted = None if reference_config.fill is None else reference_config.fill + 1
        fill = self._fill_engines(
            [self.reference], round_index,
            {p.inference_point(self.catalog) for p in stored}, self._budget_left(len(stored) + 1),
            wanted=wanted,
        )  # fmt: skip
        reference = PointSpec(
            self.reference, self.config.engine, round_index=round_index, reason="reference",
            strategy=self.config.strategy, replicate=len(references),
        )  # fmt: skip
        # The fill's split comes from a stream of its own: the round's points keep theirs.
        rng = np.random.default_rng([self.config.seed, round_index, _REFERENCE_STREAM])
        with self._stage("storing"):
            self.store.add_points(
                campaign_id, [reference, *self._specs(fill, round_index, "engine_fill", rng=rng)]
            )

    def _reference_gpus(self, references: Sequence[StoredPoint]) -> set[str]:
        """The GPUs (NVML UUIDs) the campaign's measured reference points ran on."""
        gpus: set[str] = set()
        for point in references:
            if point.status == PointStatus.COMPLETE:
                record = self.store.get_measurement(point.id)
                if record is not None and record.gpu_uuids:
                    gpus.update(record.gpu_uuids)
        return gpus

    def _costs(self) -> GpuCostModel:
        """GPU-seconds of starts and points; no start for the engines kept loaded."""
        return GpuCostModel(self.settings, loaded_engines(self.measurer.loaded()))

    def _fill_engines(
        self,
        points: Sequence[InferencePoint],
        round_index: int,
        exclude: set[InferencePoint],
        room: int | None = None,
        wanted: int | None = None,
    ) -> list[InferencePoint]:
        """The engine fill of a round's ``points`` (:func:`~orchestrator.sampling.fill_engines`).

        ``wanted`` points per engine where given, else ``sampling.points_per_engine``.
        """
        rng = np.random.default_rng([self.config.seed, round_index, _FILL_STREAM])
        per_engine = self.config.sampling.points_per_engine if wanted is None else wanted
        with self._stage("sampling"):
            return fill_engines(self.sampler, points, per_engine, rng, exclude, room)

    def run(self) -> CampaignOutcome:
        """Run (or continue) the campaign until the target or a budget stops it."""
        config = self.config
        campaign = self.store.create_campaign(
            config.name, config.fingerprint(), replace_config=self.replace_config
        )
        if self.time_limit is not None:
            self.time_limit.start()
        with DriverLease(self.store, campaign.id, self.lease_seconds) as lease:
            self.store.set_campaign_status(campaign.id, CampaignStatus.ACTIVE)
            try:
                outcome = self._run(campaign.id, lease)
            finally:
                self.measurer.close()
            status = CampaignStatus.STOPPED if outcome.timed_out else CampaignStatus.COMPLETE
            self.store.set_campaign_status(campaign.id, status)
        return outcome

    def _run(self, campaign_id: int, lease: DriverLease) -> CampaignOutcome:
        config = self.config
        outcome = CampaignOutcome(config.name)
        stored = self.store.get_points(campaign_id)
        if not stored:
            with self._stage("sampling"):
                initial = self.sampler.sample(config.sampling.initial, self._rng(0))
            if not initial:
                raise InvalidRequestError("the priors produced no point that fits its GPUs")
            fill = self._fill_engines(initial, 0, set(), self._budget_left(len(initial)))
            self._store_round_zero(
                campaign_id,
                self._specs(initial, 0, "initial")
                + self._specs(fill, 0, "engine_fill", offset=len(initial)),
                [],
            )
        elif not self.store.rounds(campaign_id):
            self._top_up_round_zero(campaign_id, stored)
        while True:
            if lease.lost.is_set():
                raise CampaignBusyError(
                    f"campaign {config.name!r}: this driver's lease ended and "
                    f"{self.store.driver_of(campaign_id) or 'another driver'} took it over"
                )
            rounds = self.store.rounds(campaign_id)
            newest = max(p.round_index for p in self.store.get_points(campaign_id))
            if len(rounds) > newest:
                # Round `newest` was trained and stored, its successors not yet chosen (the
                # driver stopped in between): choose them from the stored model.
                last = rounds[-1]
                stop = self._stop_reason(last, len(rounds) - 1)
                if stop is not None:
                    outcome.stop_reason = stop
                    break
                assert last.model_id is not None
                blob = self.store.load_model(last.model_id)["checkpoint"]
                rows, stored = self._labelled(campaign_id)
                self._select_next(campaign_id, newest, unpack_members(blob), rows, stored)
                continue
            try:
                report = self._round(campaign_id, newest, rounds)
            except _TimeLimitError as reached:
                assert self.time_limit is not None
                outcome.stop_reason = (
                    f"time limit of {self.time_limit.seconds:g} s reached in round {newest} "
                    f"({reached}); run the same command again to continue"
                )
                outcome.timed_out = True
                break
            outcome.rounds.append(report)
            if self.on_round is not None:
                self.on_round(report)
            if report.stop_reason is not None:
                outcome.stop_reason = report.stop_reason
                break
        outcome.complete_points = self.store.status_counts(campaign_id)["COMPLETE"]
        return outcome

    def _top_up_round_zero(self, campaign_id: int, stored: list[StoredPoint]) -> None:
        """Give an untrained round 0 the ``sampling.initial`` points the config now asks for.

        A round 0 with too few points cannot be trained; after ``initial`` is raised (and the
        config replaced with ``--force``) the campaign continues with the points a fresh one
        would have drawn, less those it already has.
        """
        have = {p.inference_point() for p in stored if p.round_index == 0}
        missing = self.config.sampling.initial - len(have)
        if missing <= 0:
            return
        with self._stage("sampling"):
            wanted = self.sampler.sample(self.config.sampling.initial, self._rng(0))
        specs = [spec for spec in self._specs(wanted, 0, "initial") if spec.point not in have]
        if specs:
            self._store_round_zero(
                campaign_id, specs[:missing], [p for p in stored if p.round_index == 0]
            )

    def _store_round_zero(
        self, campaign_id: int, specs: list[PointSpec], stored: list[StoredPoint]
    ) -> None:
        """Store round 0's new points, refused if the round could not be trained.

        Raises:
            InvalidRequestError: The round would hold too few points to train and test on.
        """
        total = len(specs) + len(stored)
        if total <= MIN_TRAINING_ROWS:
            raise InvalidRequestError(
                f"round 0 would measure {total} points and cannot be trained: training needs "
                f"{MIN_TRAINING_ROWS} and testing 1; raise sampling.initial (then run with "
                "--force)"
            )
        stored_test = sum(p.split == "test" for p in stored)
        with self._stage("storing"):
            self.store.add_points(
                campaign_id, trainable_split(specs, len(stored) - stored_test, stored_test)
            )

    def _round(self, campaign_id: int, round_index: int, done: list[RoundRecord]) -> RoundReport:
        """Measure, train, test, store the round, and select the next one's points."""
        config = self.config
        if self._reference_pending:
            self._add_reference(campaign_id, round_index)
        self._add_serving(campaign_id, round_index)
        measured, failed, timing = self._measure_pending(campaign_id)
        rows, stored = self._labelled(campaign_id)
        test = np.array([p.split == "test" for p in stored], dtype=bool)
        if test.sum() == 0 or (~test).sum() < MIN_TRAINING_ROWS:
            raise InvalidRequestError(
                f"round {round_index}: {int((~test).sum())} training and {int(test.sum())} "
                f"test points measured, training needs {MIN_TRAINING_ROWS} and testing 1; raise "
                "sampling.initial and continue with --force"
            )
        members = self._train([rows[i] for i in np.flatnonzero(~test)], round_index)
        with self._stage("testing"):
            _, predicted, measured_total = self._predict_test(members, rows, test)
        scores = Scores.of(predicted, measured_total)
        model_id = self.store.save_model(
            f"{config.name}-round{round_index}",
            feature_schema_version=FEATURE_SCHEMA_VERSION,
            checkpoint=pack_members([m.to_bytes() for m in members]),
            metrics={"mape": scores.mape, "eba10": scores.eba10, "members": len(members)},
            campaign_id=campaign_id,
        )
        this_round = sum(p.round_index == round_index for p in stored)
        # GPU time as stored with each result: what a crashed attempt at this round spent is
        # counted here too, where the actors' own accounting died with them.
        spent_before = sum(r.gpu_hours or 0.0 for r in done)
        gpu_hours = max(0.0, self.store.gpu_seconds(campaign_id) / 3600.0 - spent_before)
        record = RoundRecord(
            round_index=round_index, strategy=config.strategy, points_selected=this_round,
            train_points=int((~test).sum()), test_points=int(test.sum()), mape=scores.mape,
            eba5=scores.eba5, eba10=scores.eba10, eba30=scores.eba30,
            duty_cycle=timing["duty_cycle"] if timing["held_s"] else None,
            gpu_hours=gpu_hours, model_id=model_id,
        )  # fmt: skip
        self.store.add_round(campaign_id, record)
        judged = self.judge(round_index, members) if self.judge is not None else None
        stop = judged or self._stop_reason(record, round_index)
        selected = 0
        if stop is None:
            selected = self._select_next(campaign_id, round_index, members, rows, stored, predicted)
            if selected == 0:
                stop = "no new point could be selected"
        return RoundReport(
            round_index, measured, failed, record.train_points or 0, record.test_points or 0,
            scores, record.duty_cycle, record.gpu_hours or 0.0, selected, stop,
        )  # fmt: skip

    def _budget_left(self, total: int) -> int | None:
        """Measurements the budget leaves after ``total`` (None: no measurement budget)."""
        budget = self.config.budget.measurements
        return None if budget is None else max(0, budget - total)

    def _room(self, total: int) -> int:
        left = self._budget_left(total)
        per_round = self.config.sampling.per_round
        return min(per_round or 10**9, 10**9 if left is None else left)

    def _stop_reason(self, record: RoundRecord, round_index: int) -> str | None:
        budget = self.config.budget
        mape = record.mape if record.mape is not None else float("inf")
        if self.judge is None and mape <= self.config.target_mape:
            return f"target reached: test MAPE {mape:.2f} % ≤ {self.config.target_mape} %"
        if round_index + 1 >= budget.rounds:
            return f"round budget spent ({budget.rounds} rounds)"
        total = self.store.measurement_count(self.store.get_campaign(self.config.name).id)
        if budget.measurements is not None and total >= budget.measurements:
            return f"measurement budget spent ({total} ≥ {budget.measurements} measurements)"
        spent = self.store.gpu_seconds(self.store.get_campaign(self.config.name).id) / 3600.0
        if budget.gpu_hours is not None and spent >= budget.gpu_hours:
            return f"GPU-hour budget spent ({spent:.2f} h)"
        return None


_ENSEMBLE_MAGIC = b"LLMCO2-ENSEMBLE\n"


def pack_members(blobs: Sequence[bytes]) -> bytes:
    """Several checkpoints in one stored blob: a magic line, their lengths, then the bytes."""
    header = ",".join(str(len(b)) for b in blobs).encode() + b"\n"
    return _ENSEMBLE_MAGIC + header + b"".join(blobs)


def unpack_members(data: bytes) -> list[Any]:
    """The predictors of a blob written by :func:`pack_members` (llmco2's or plain GNNs)."""
    from gnn.hybrid import checkpoint_from_bytes

    if not data.startswith(_ENSEMBLE_MAGIC):
        return [checkpoint_from_bytes(data)]
    rest = data[len(_ENSEMBLE_MAGIC) :]
    header, _, body = rest.partition(b"\n")
    members, offset = [], 0
    for length in (int(n) for n in header.decode().split(",")):
        members.append(checkpoint_from_bytes(body[offset : offset + length]))
        offset += length
    return members
