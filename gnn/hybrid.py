"""The llmco2 predictor: the analytical model, corrected by the LLMCO2 GNN, with an interval.

Energy of each phase = analytical energy × exp(c), where ``c`` is the GNN's output for that phase,
kept within ±``bound`` by a tanh and pulled towards zero by a penalty in the loss: near the data
the network corrects what the physics misses (kernel efficiencies, engine overheads of a shape),
far from it the answer falls back on physics. Latency gets the same treatment (analytical time ×
a learned correction, two more outputs of the same network), trained on measured latencies.

The interval is split-conformal over held-out shapes: the quantiles of ``log(measured /
predicted)`` of every point when its architecture was left out of training (leave-one-shape-out),
widened until they cover held-out architectures at their nominal level (errors of one
architecture share a bias), so a request on an unmeasured architecture gets the spread such
requests showed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featurize.point import InferencePoint
from gnn.features import FeatureView
from gnn.physics import PhysicsInputs, PhysicsModel, log_ratio
from llmco2.errors import ConfigFileError, InvalidRequestError

if TYPE_CHECKING:
    from gnn.dataset import LabelledData
    from gnn.portable import PortablePredictor
    from gnn.training import Predictor, TrainConfig

FORMAT = "llmco2-hybrid-predictor"
#: Nominal coverage of the interval `predict` reports (its 10 % and 90 % quantiles).
INTERVAL_LEVEL = 0.8


@dataclass(frozen=True)
class CorrectionSettings:
    """How the correction network is trained.

    Attributes:
        bound: Largest |log correction| (0.5: the physics is scaled by 0.61 … 1.65).
        penalty: Weight of the squared corrections in the loss.
        view: The features the network sees: the kernel graph's counts (operations, bytes,
            shapes, calls), the global features and the roofline-derived ones (memory
            intensity, attainable performance, roofline time, the bound). On 470 real H200
            points a correction that saw roofline times extrapolated worse to an unseen TP
            degree and was left without them; on 618 points of H200 and H100 (`evaluate`'s
            ``llmco2-no-roofline`` ablation) the roofline features help on every split but one:
            unseen shape 5.04 against 5.12 % MAPE (EBA10 89.6 against 89.2 %), unseen family
            6.10 against 6.41 %, unseen TP 9.03 against 9.23 %, size extrapolation 6.83 against
            7.05 %, random configurations 3.91 against 3.99 %, unseen GPU type 10.54 against
            10.45 %.
        hidden: Width of the network.
        members: Networks trained alike but for their seed, whose corrections are averaged: one
            network of a few hundred points is a noisy learner on shapes unlike its data, and
            the mean of several is less so (on 414 real H200 points, three networks against
            one: unseen shape 4.9 against 5.0 % MAPE and EBA10 89 against 87 %, unseen family
            6.5 against 6.7 %, unseen TP 8.1 against 8.5 %).
        agreement: Spread of the networks' corrections (log units) at which their mean is
            halved: each output is ``mean / (1 + (std / agreement)²)``, so that where the
            networks disagree — a shape unlike their data, where each learnt something else —
            the answer moves back towards the physics (0: the plain mean). On 448 real H200
            points, 0.05 against the plain mean: unseen shape 5.8 against 5.9 % MAPE (EBA10 86
            against 85 %), unseen family 8.5 against 8.8 %, random configurations 4.9 against
            4.5 % (where the networks agree and are right, shrinking costs a little); on 452
            (gpt-oss's one-route rows out, seven dense rows in) level: unseen shape 5.75 against
            5.72 %, unseen family 7.55 against 7.57 %, random 4.74 against 4.56 %; on 470
            (gpt-oss rows in): size extrapolation 7.6 against 8.0 %, unseen shape 5.81 against
            5.77 %, unseen family 7.10 against 7.18 %, random 4.81 against 4.63 %.
    """

    bound: float = 0.5
    penalty: float = 0.3
    view: FeatureView = field(default_factory=lambda: FeatureView(phase_split=True, roofline=True))
    hidden: int = 64
    members: int = 3
    agreement: float = 0.05

    def __post_init__(self) -> None:
        if self.members < 1:
            raise InvalidRequestError(f"an llmco2 predictor needs ≥ 1 network, got {self.members}")
        if not self.agreement >= 0:
            raise InvalidRequestError(f"agreement must be ≥ 0, got {self.agreement}")


def agreed_corrections(member_outputs: np.ndarray, agreement: float) -> np.ndarray:
    """The networks' corrections ``(members, N, K)`` combined into ``(N, K)``.

    Their mean, shrunk towards zero by ``1 / (1 + (std / agreement)²)`` where they disagree
    (see :class:`CorrectionSettings`); ``agreement`` 0 gives the plain mean.
    """
    mean = np.asarray(member_outputs.mean(axis=0))
    if agreement <= 0 or member_outputs.shape[0] < 2:
        return mean
    spread = member_outputs.std(axis=0)
    return np.asarray(mean / (1.0 + (spread / agreement) ** 2))


def group_calibrated_level(
    log_ratios: np.ndarray, groups: np.ndarray, level: float = INTERVAL_LEVEL
) -> float:
    """The quantile level whose interval covers ``level`` of each held-out group's points.

    Held-out errors of one architecture share a bias, so quantiles of the pooled errors cover a
    new architecture less often than their level says. This is the smallest level ``q`` such
    that, holding each group out in turn, the central ``q`` interval of the *other* groups'
    errors covers at least ``level`` of the held-out points (a leave-one-group-out calibration;
    it needs only the errors, no refits).
    """
    ok = np.isfinite(log_ratios)
    values, labels = log_ratios[ok], np.asarray(groups)[ok]
    names = sorted(set(labels.tolist()))
    if len(names) < 3:
        return level
    for candidate in np.arange(level, 0.995, 0.005):
        inside = 0
        for name in names:
            others = values[labels != name]
            low, high = np.quantile(others, [(1 - candidate) / 2, (1 + candidate) / 2])
            mine = values[labels == name]
            inside += int(((mine >= low) & (mine <= high)).sum())
        if inside >= level * len(values):
            return float(candidate)
    return 0.99


@dataclass(frozen=True)
class Interval:
    """Quantiles of log(measured / predicted) on held-out shapes, per phase and in total.

    Attributes:
        level: The nominal coverage (0.8: a 10-90 % interval).
        low: Lower log-ratio bound of prefill, decode and total.
        high: Upper bounds.
        points: Held-out points it was calibrated on.
        quantile_level: The central quantile level used, widened from ``level`` so that it
            covers held-out groups (see :func:`group_calibrated_level`).
    """

    level: float
    low: tuple[float, float, float]
    high: tuple[float, float, float]
    points: int
    quantile_level: float | None = None

    @classmethod
    def of(
        cls, log_ratios: np.ndarray, level: float = INTERVAL_LEVEL, groups: np.ndarray | None = None
    ) -> Interval:
        """From held-out log ratios ``(N, 3)`` (NaN where a phase was not predicted).

        With ``groups`` (the architecture of each row), the quantiles are widened until they
        cover held-out groups at the nominal level (judged on the total).
        """
        quantile_level = (
            group_calibrated_level(log_ratios[:, 2], groups, level) if groups is not None else level
        )
        tail = (1.0 - quantile_level) / 2
        low, high = [], []
        for column in range(3):
            values = log_ratios[:, column]
            values = values[np.isfinite(values)]
            low.append(float(np.quantile(values, tail)) if values.size else 0.0)
            high.append(float(np.quantile(values, 1 - tail)) if values.size else 0.0)
        return cls(
            level,
            (low[0], low[1], low[2]),
            (high[0], high[1], high[2]),
            len(log_ratios),
            quantile_level,
        )


@dataclass
class HybridOutput:
    """Predictions of many points.

    Attributes:
        energy_j: ``(N, 3)`` prefill, decode, total (J).
        latency_s: ``(N, 2)`` prefill, decode (s).
        low_j: ``(N, 3)`` the interval's lower bounds (NaN without an interval).
        high_j: ``(N, 3)`` its upper bounds.
    """

    energy_j: np.ndarray
    latency_s: np.ndarray
    low_j: np.ndarray
    high_j: np.ndarray


def combine(
    physics_energy: np.ndarray, physics_seconds: np.ndarray, corrections: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Energy ``(N, 3)`` and latency ``(N, 2)`` from the physics and the network's outputs."""
    energy = physics_energy * np.exp(corrections[:, :2])
    latency = physics_seconds.copy()
    if corrections.shape[1] >= 4:
        latency = physics_seconds * np.exp(corrections[:, 2:4])
    return np.concatenate([energy, energy.sum(axis=1, keepdims=True)], axis=1), latency


class HybridPredictor:
    """The analytical model with the GNN's bounded correction (and an interval)."""

    def __init__(
        self,
        physics: PhysicsModel,
        network: Predictor | PortablePredictor | Sequence[Predictor | PortablePredictor],
        settings: CorrectionSettings,
        interval: Interval | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.physics = physics
        #: The correction networks, whose outputs are averaged.
        self.networks: list[Predictor | PortablePredictor] = (
            list(network) if isinstance(network, (list, tuple)) else [network]  # type: ignore[list-item]
        )
        self.settings = settings
        self.interval = interval
        self.metadata = metadata if metadata is not None else {}

    @property
    def network(self) -> Predictor | PortablePredictor:
        """The first correction network (its training settings stand for all of them)."""
        return self.networks[0]

    # Prediction ---------------------------------------------------------------------------
    def corrections(self, points: Sequence[InferencePoint], graphs: Sequence[Any] | None) -> Any:
        """The networks' combined bounded outputs for ``points`` (graphs reused when given).

        Combined by :func:`agreed_corrections` with the settings' ``agreement``.
        """
        return agreed_corrections(self.member_outputs(points, graphs), self.settings.agreement)

    def member_outputs(
        self, points: Sequence[InferencePoint], graphs: Sequence[Any] | None
    ) -> np.ndarray:
        """Each network's bounded outputs for ``points``: ``(members, N, outputs)``."""
        from gnn.portable import PortablePredictor, member_outputs

        portable = [n for n in self.networks if isinstance(n, PortablePredictor)]
        if len(portable) == len(self.networks):
            return member_outputs(portable, points, self.settings.view)
        if portable:
            raise InvalidRequestError("an llmco2 predictor mixes torch and portable networks")
        if graphs is None:
            from featurize.graphs import build_graphs

            graphs = build_graphs(points)
        viewed = self.settings.view.apply(graphs)
        return np.stack([n.outputs(viewed) for n in self.networks])  # type: ignore[call-arg]

    def predict_inputs(
        self, inputs: PhysicsInputs, points: Sequence[InferencePoint], graphs: Sequence[Any] | None
    ) -> HybridOutput:
        """Predictions from precomputed physics inputs (and graphs).

        A GPU type the networks never saw measured gets the analytical answer alone: what they
        learnt corrects the residuals of the measured types, and carried to another type it made
        things worse. On all 1,077 real points, with the correction applied to the held-out type
        as well, llmco2 was 11.5 % off on the H100 trained on the H200s alone and 12.9 % on the
        H200s trained on the H100 alone, against 9.8 and 12.6 % for the analytical model, and
        11.3 against 10.7 % on the H100 rows of the held-out TP degree (no H100 row trained).
        """
        physics_energy, physics_seconds = self.physics.predict(inputs)
        corrections = self.corrections(points, graphs)
        corrections[~np.isin(inputs.gpu_type, list(self.physics.gpus))] = 0.0
        energy, latency = combine(physics_energy, physics_seconds, corrections)
        low = np.full_like(energy, np.nan)
        high = np.full_like(energy, np.nan)
        if self.interval is not None:
            low = energy * np.exp(np.array(self.interval.low))
            high = energy * np.exp(np.array(self.interval.high))
        return HybridOutput(energy, latency, low, high)

    def predict_detailed(self, points: Sequence[InferencePoint]) -> HybridOutput:
        """Energy, latency and interval of inference points."""
        if not len(points):
            empty = np.zeros((0, 3))
            return HybridOutput(empty, np.zeros((0, 2)), empty, empty)
        return self.predict_inputs(PhysicsInputs.of_points(points), points, None)

    def predict_points(self, points: Sequence[InferencePoint]) -> np.ndarray:
        """Energy (J) of inference points: columns prefill, decode, total."""
        return self.predict_detailed(points).energy_j

    def gpu_measured(self, gpu_type: str) -> bool:
        """Whether the analytical model has coefficients fitted on ``gpu_type``."""
        return self.physics.measured(gpu_type)

    # Files ----------------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "physics": self.physics.to_dict(),
            "settings": {
                "bound": self.settings.bound,
                "penalty": self.settings.penalty,
                "hidden": self.settings.hidden,
                "phase_split": self.settings.view.phase_split,
                "roofline": self.settings.view.roofline,
                "members": len(self.networks),
                "agreement": self.settings.agreement,
            },
            "interval": dataclasses.asdict(self.interval) if self.interval else None,
        }

    def save(self, path: Path) -> None:
        """Write a torch checkpoint (``weights_only``-loadable), or for ``.npz`` a portable copy.

        The portable copy is what `predict` loads without importing torch.
        """
        from gnn.portable import PortablePredictor

        path = Path(path)
        if path.suffix == ".npz":
            portable = [
                n if isinstance(n, PortablePredictor) else PortablePredictor.from_predictor(n)
                for n in self.networks
            ]
            # One file: the first network's arrays under their names, the others' prefixed.
            weights = dict(portable[0].weights)
            for k, member in enumerate(portable[1:], start=1):
                weights.update(
                    {f"{_MEMBER_PREFIX}{k}.{name}": v for name, v in member.weights.items()}
                )
            first = portable[0]
            PortablePredictor(weights, first.config, first.metadata, first.correction_bound).save(
                path, extra={"hybrid": self._header(), "metadata": self.metadata}
            )
            return
        path.write_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        """The torch checkpoint as bytes (what :meth:`save` writes for a ``.pt`` path).

        Raises:
            InvalidRequestError: The network was loaded from a portable ``.npz``.
        """
        import io

        import torch

        from gnn.portable import PortablePredictor as _Portable

        if any(isinstance(n, _Portable) for n in self.networks):
            raise InvalidRequestError("a predictor loaded from .npz can only be saved as .npz")
        blob = {
            "format": FORMAT,
            "network": self.networks[0].to_bytes(),  # type: ignore[union-attr]
            "more_networks": [n.to_bytes() for n in self.networks[1:]],  # type: ignore[union-attr]
            "hybrid": _json(self._header()),
            "metadata": _json(self.metadata),
        }
        buffer = io.BytesIO()
        torch.save(blob, buffer)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path) -> HybridPredictor:
        """Read a torch checkpoint or a portable ``.npz`` written by :meth:`save`.

        Raises:
            ConfigFileError: Missing, unreadable, not a hybrid predictor, or another schema.
        """
        predictor = load_any(Path(path))
        if not isinstance(predictor, HybridPredictor):
            raise ConfigFileError(f"{str(path)!r} is not an llmco2 hybrid predictor checkpoint")
        return predictor

    @classmethod
    def _from_header(
        cls,
        network: Predictor | PortablePredictor | Sequence[Predictor | PortablePredictor],
        header: dict[str, Any],
        metadata: dict[str, Any],
        path: Path,
    ) -> HybridPredictor:
        try:
            settings = header["settings"]
            interval = header.get("interval")
            return cls(
                PhysicsModel.from_dict(header["physics"]),
                network,
                CorrectionSettings(
                    float(settings["bound"]),
                    float(settings["penalty"]),
                    FeatureView(bool(settings["phase_split"]), bool(settings["roofline"])),
                    int(settings["hidden"]),
                    int(settings.get("members", 1)),
                    # Predictors saved before it existed averaged their networks plainly.
                    float(settings.get("agreement", 0.0)),
                ),
                Interval(
                    float(interval["level"]),
                    tuple(interval["low"]),
                    tuple(interval["high"]),
                    int(interval["points"]),
                    interval.get("quantile_level"),
                )
                if interval
                else None,
                metadata,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigFileError(f"malformed llmco2 predictor {str(path)!r}: {exc}") from exc


#: Prefix of the arrays of the second and later correction networks in a portable ``.npz``.
_MEMBER_PREFIX = "member"


def _split_members(portable: PortablePredictor) -> list[PortablePredictor]:
    """The correction networks of a portable file (see :meth:`HybridPredictor.save`)."""
    from gnn.portable import PortablePredictor

    pattern = re.compile(rf"{_MEMBER_PREFIX}(\d+)\.(.+)")
    own: dict[str, np.ndarray] = {}
    members: dict[int, dict[str, np.ndarray]] = {}
    for name, values in portable.weights.items():
        match = pattern.fullmatch(name)
        if match:
            members.setdefault(int(match.group(1)), {})[match.group(2)] = values
        else:
            own[name] = values
    return [
        PortablePredictor(
            weights, portable.config, portable.metadata, portable.correction_bound, portable.extra
        )
        for weights in [own, *(members[k] for k in sorted(members))]
    ]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=float)


def load_any(path: Path) -> HybridPredictor | Predictor | PortablePredictor:
    """The predictor in ``path``, read once: llmco2's, or a plain GNN (torch or portable).

    Raises:
        ConfigFileError: Missing, unreadable, not a predictor, or another feature schema.
    """
    if path.suffix == ".npz":
        from gnn.portable import PortablePredictor

        portable = PortablePredictor.load(path)
        if "hybrid" not in portable.extra:
            return portable
        return HybridPredictor._from_header(
            _split_members(portable), portable.extra["hybrid"], portable.metadata, path
        )
    from gnn.training import read_checkpoint

    return _from_torch_blob(read_checkpoint(path), path)


def checkpoint_from_bytes(data: bytes, source: str = "stored checkpoint") -> Any:
    """The predictor of torch checkpoint bytes: llmco2's (hybrid) or a plain GNN.

    Raises:
        ConfigFileError: Not a readable predictor checkpoint, or another feature schema.
    """
    from gnn.training import unpickle_checkpoint

    return _from_torch_blob(unpickle_checkpoint(data, source), Path(source))


def _from_torch_blob(blob: Any, path: Path) -> HybridPredictor | Predictor:
    import json

    from gnn.training import Predictor

    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        return Predictor.from_blob(blob, repr(str(path)))
    try:
        networks = [
            Predictor.from_bytes(data, repr(str(path)))
            for data in [blob["network"], *blob.get("more_networks", [])]
        ]
        header, metadata = json.loads(blob["hybrid"]), json.loads(blob["metadata"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigFileError(f"malformed llmco2 predictor {str(path)!r}: {exc}") from exc
    return HybridPredictor._from_header(networks, header, metadata, path)


def train_hybrid(
    data: LabelledData,
    index: np.ndarray,
    config: TrainConfig | None = None,
    settings: CorrectionSettings | None = None,
    graph_layers: int = 2,
    dropout: float = 0.0,
) -> HybridPredictor:
    """Fit the analytical model on rows ``index``, then the GNN's correction of it.

    Raises:
        InvalidRequestError: Too few rows.
    """
    from gnn.model import ModelConfig
    from gnn.training import TrainConfig, train_predictor

    settings = settings or CorrectionSettings()
    inputs = data.physics_inputs.subset(index)
    energy = data.energy_j[index]
    latency = data.phase_latency_s[index]
    physics = PhysicsModel.fit(inputs, energy, latency)
    physics_energy, physics_seconds = physics.predict(inputs)
    graphs = settings.view.apply([data.graphs[i] for i in index])
    cfg = dataclasses.replace(
        config or TrainConfig(),
        correction_bound=settings.bound,
        correction_penalty=settings.penalty,
        phase_labels=settings.view.phase_split,
    )
    if cfg.correction_epochs:
        cfg = dataclasses.replace(
            cfg, epochs=cfg.correction_epochs, patience=cfg.correction_epochs,
            validation_fraction=0.0,
        )  # fmt: skip
    networks = [
        train_predictor(
            graphs,
            data.prefill_j[index],
            data.decode_j[index],
            dataclasses.replace(cfg, seed=cfg.seed + member),
            ModelConfig(
                int(graphs[0].x.shape[1]),
                int(graphs[0].u.shape[1]),
                settings.hidden,
                graph_layers,
                dropout,
            ),
            base_log_energy=_safe_log(physics_energy),
            latency_s=latency,
            base_log_latency=_safe_log(physics_seconds),
        )[0]
        for member in range(settings.members)
    ]
    return HybridPredictor(physics, networks, settings, None, {})


def _safe_log(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.log(np.maximum(values, 1e-12)))


def held_out_log_ratios(measured: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``log(measured / predicted)`` per phase and in total, ``(N, 3)``; NaN where undefined."""
    ratios = log_ratio(measured, predicted)
    defined = (measured > 0) & (predicted > 0)
    return np.where(defined, ratios, np.nan)
