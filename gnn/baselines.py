"""Energy predictors compared in the evaluation: ours, its ablations and the paper's baselines.

Every method has the same two calls, ``fit(data, index)`` and ``predict(data, index)`` → energy
in J with columns prefill, decode, total (NaN where a method does not model a phase):

- ``llmco2``: the analytical model corrected by the LLMCO2 GNN (:mod:`gnn.hybrid`; the
  correction sees the kernel graph with its roofline-derived features), and its ablations
  ``llmco2-no-roofline`` (the correction without the roofline features), ``llmco2-no-phases``
  (without the prefill/decode split: merged features, total energy only) and
  ``llmco2-unregularised`` (no bound and no penalty on the correction) and ``llmco2-plain-mean``
  (its networks' corrections averaged as they are, not shrunk where they disagree).
- ``physics``: the analytical model alone (:mod:`gnn.physics`).
- ``gnn``: the pure LLMCO2 GNN with prefill/decode features and heads and roofline features.
- ``gnn+phases``: the same without roofline features (ablation).
- ``nnlqp``: an NNLQP-style GNN — the same network, no phase split, no roofline features,
  trained on total energy (Liu et al., 2023, as the LLMCO2 paper uses it).
- ``deepen-rf``: a DeepEn-style random forest on per-kernel FLOPs and memory traffic summed over
  both phases, plus request and hardware features (Tu et al., 2023).
- ``llmcarbon``: LLMCarbon's FLOP equation, energy = FLOPs ÷ (peak × efficiency) × power × GPUs
  (Faiz et al., 2024), with the hardware efficiency fitted per GPU type on the training split
  (the global fit for a GPU type not seen), which is more than LLMCarbon itself does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from featurize.graphs import GLOBAL_FEATURE_NAMES
from featurize.kernels import kernel_counts
from gnn.dataset import LabelledData
from gnn.features import FeatureView
from gnn.hybrid import CorrectionSettings, HybridOutput, HybridPredictor, train_hybrid
from gnn.model import ModelConfig
from gnn.physics import PhysicsModel
from gnn.training import Predictor, TrainConfig, train_predictor


@dataclass(frozen=True)
class NetworkShape:
    """The tunable shape of the GNN (the feature widths come from the data)."""

    hidden: int = 128
    graph_layers: int = 2
    dropout: float = 0.0

    def model_config(self, graph: Any) -> ModelConfig:
        """The network configuration for graphs like ``graph``."""
        return ModelConfig(
            int(graph.x.shape[1]), int(graph.u.shape[1]), self.hidden, self.graph_layers,
            self.dropout,
        )  # fmt: skip


class EnergyMethod(Protocol):
    """A predictor the evaluation can train and score."""

    name: str

    def fit(self, data: LabelledData, index: np.ndarray) -> None:
        """Train on the rows ``index`` of ``data``."""

    def predict(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Energy (J) of rows ``index``: columns prefill, decode, total."""


@dataclass
class GnnMethod:
    """The LLMCO2 network on a view of the features."""

    name: str
    view: FeatureView
    config: TrainConfig = field(default_factory=TrainConfig)
    shape: NetworkShape = field(default_factory=NetworkShape)
    predictor: Predictor | None = None

    def fit(self, data: LabelledData, index: np.ndarray) -> None:
        """Train a fresh network on the rows ``index``."""
        graphs = self.view.apply([data.graphs[i] for i in index])
        config = dataclasses.replace(self.config, phase_labels=self.view.phase_split)
        self.predictor, _ = train_predictor(
            graphs,
            data.prefill_j[index],
            data.decode_j[index],
            config,
            self.shape.model_config(graphs[0]),
        )

    def predict(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Predicted energy of rows ``index``; phases only where the view has them."""
        assert self.predictor is not None, "fit first"
        result = self.predictor.predict(self.view.apply([data.graphs[i] for i in index]))
        if not self.view.phase_split:
            result[:, :2] = np.nan
        return result


@dataclass
class PhysicsMethod:
    """The analytical model alone, fitted on the training rows."""

    name: str = "physics"
    model: PhysicsModel | None = None

    def fit(self, data: LabelledData, index: np.ndarray) -> None:
        """Fit the coefficients of every GPU type of the rows ``index``."""
        self.model = PhysicsModel.fit(
            data.physics_inputs.subset(index), data.energy_j[index], data.phase_latency_s[index]
        )

    def predict(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Energy per phase and in total."""
        assert self.model is not None, "fit first"
        energy, _ = self.model.predict(data.physics_inputs.subset(index))
        return np.concatenate([energy, energy.sum(axis=1, keepdims=True)], axis=1)

    def predict_latency(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Modelled prefill and decode seconds."""
        assert self.model is not None, "fit first"
        return self.model.predict(data.physics_inputs.subset(index))[1]


@dataclass
class HybridMethod:
    """The llmco2 predictor: physics plus the GNN's bounded correction."""

    name: str
    settings: CorrectionSettings = field(default_factory=CorrectionSettings)
    config: TrainConfig = field(default_factory=TrainConfig)
    shape: NetworkShape = field(default_factory=NetworkShape)
    predictor: HybridPredictor | None = None

    def fit(self, data: LabelledData, index: np.ndarray) -> None:
        """Fit the analytical model and train the correction on the rows ``index``."""
        self.predictor = train_hybrid(
            data, index, self.config, self.settings, self.shape.graph_layers, self.shape.dropout
        )

    def shares_networks_with(self, other: object) -> bool:
        """Whether ``other`` trains the same networks on the same rows.

        True for llmco2 methods whose settings differ only in how the networks' corrections
        are combined (``agreement``): one training serves both.
        """

        def trained(settings: CorrectionSettings) -> CorrectionSettings:
            return dataclasses.replace(settings, agreement=0.0)

        return (
            isinstance(other, HybridMethod)
            and trained(self.settings) == trained(other.settings)
            and (self.config, self.shape) == (other.config, other.shape)
        )

    def adopt(self, other: HybridMethod) -> None:
        """Use ``other``'s fitted physics and networks, combined as this method's settings say."""
        assert other.predictor is not None, "fit the other method first"
        assert self.shares_networks_with(other), f"{other.name} trains other networks"
        fitted = other.predictor
        self.predictor = HybridPredictor(fitted.physics, fitted.networks, self.settings)

    def _output(self, data: LabelledData, index: np.ndarray) -> HybridOutput:
        assert self.predictor is not None, "fit first"
        return self.predictor.predict_inputs(
            data.physics_inputs.subset(index),
            [data.points[i] for i in index],
            [data.graphs[i] for i in index],
        )

    def predict(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Energy per phase and in total."""
        return self._output(data, index).energy_j

    def predict_latency(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Corrected prefill and decode seconds."""
        return self._output(data, index).latency_s


def _flops_and_bytes(data: LabelledData) -> tuple[np.ndarray, np.ndarray]:
    """Per-kernel FLOPs and memory bytes of every row, summed over phases, shape ``(N, K)``."""
    counts = data.counts if data.counts is not None else kernel_counts(data.points)
    return counts.quantity("flops").sum(axis=1), counts.memory_bytes.sum(axis=1)


@dataclass
class LLMCarbonMethod:
    """LLMCarbon's equation with a fitted hardware efficiency per GPU type."""

    name: str = "llmcarbon"
    log_efficiency: dict[str, float] = field(default_factory=dict)
    global_log_efficiency: float = 0.0

    @staticmethod
    def _ideal_energy(data: LabelledData) -> np.ndarray:
        """Energy at 100 % efficiency: per-GPU FLOPs ÷ peak × TDP × GPUs."""
        flops, _ = _flops_and_bytes(data)
        arrays = data.arrays
        seconds = flops.sum(axis=1) / arrays.tensor_flops
        return np.asarray(seconds * arrays.tdp * arrays.tp, dtype=np.float64)

    def fit(self, data: LabelledData, index: np.ndarray) -> None:
        """Least-squares log efficiency per GPU type (and overall) on the rows ``index``."""
        gap = np.log(self._ideal_energy(data)[index]) - np.log(data.total_j[index])
        types = data.gpu_type[index]
        self.global_log_efficiency = float(gap.mean())
        self.log_efficiency = {str(t): float(gap[types == t].mean()) for t in set(types.tolist())}

    def predict(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Total energy only: the equation has no phases."""
        efficiency = np.array(
            [self.log_efficiency.get(str(t), self.global_log_efficiency) for t in data.gpu_type]
        )
        total = self._ideal_energy(data)[index] / np.exp(efficiency[index])
        return np.stack([np.full_like(total, np.nan), np.full_like(total, np.nan), total], axis=1)


_RF_GLOBALS = [
    i for i, name in enumerate(GLOBAL_FEATURE_NAMES) if not name.startswith(("prefill_", "decode_"))
]


@dataclass
class RandomForestMethod:
    """DeepEn-style random forest: kernel-level features without the phase split."""

    name: str = "deepen-rf"
    trees: int = 300
    seed: int = 0
    model: Any = None

    @staticmethod
    def features(data: LabelledData) -> np.ndarray:
        """log10 per-kernel FLOPs and bytes (both phases summed), plus the non-phase globals."""
        flops, memory = _flops_and_bytes(data)
        return np.concatenate(
            [np.log10(1.0 + flops), np.log10(1.0 + memory), data.global_features[:, _RF_GLOBALS]],
            axis=1,
        )

    def fit(self, data: LabelledData, index: np.ndarray) -> None:
        """Fit log total energy."""
        from sklearn.ensemble import RandomForestRegressor

        self.model = RandomForestRegressor(
            n_estimators=self.trees, random_state=self.seed, n_jobs=-1, min_samples_leaf=1
        )
        self.model.fit(self.features(data)[index], np.log(data.total_j[index]))

    def predict(self, data: LabelledData, index: np.ndarray) -> np.ndarray:
        """Total energy only."""
        total = np.exp(self.model.predict(self.features(data)[index]))
        return np.stack([np.full_like(total, np.nan), np.full_like(total, np.nan), total], axis=1)


def training_groups(names: Sequence[str]) -> list[tuple[str, ...]]:
    """``names`` grouped by what they train, in their order.

    Every method of a group after the first reuses the first one's fit instead of training the
    same networks again (see :meth:`HybridMethod.shares_networks_with`).
    """
    groups: list[list[EnergyMethod]] = []
    for method in make_methods(names):
        for group in groups:
            if isinstance(group[0], HybridMethod) and group[0].shares_networks_with(method):
                group.append(method)
                break
        else:
            groups.append([method])
    return [tuple(m.name for m in group) for group in groups]


def make_methods(
    names: Sequence[str], config: TrainConfig | None = None, shape: NetworkShape | None = None
) -> list[EnergyMethod]:
    """Fresh, untrained methods by name (see :data:`METHOD_NAMES`)."""
    train = config or TrainConfig()
    net = shape or NetworkShape()
    factories: dict[str, Any] = {
        "llmcarbon": LLMCarbonMethod,
        "deepen-rf": lambda: RandomForestMethod(seed=train.seed),
        "physics": PhysicsMethod,
        "nnlqp": lambda: GnnMethod("nnlqp", FeatureView(False, False), train, net),
        "gnn+phases": lambda: GnnMethod("gnn+phases", FeatureView(True, False), train, net),
        "gnn": lambda: GnnMethod("gnn", FeatureView(True, True), train, net),
        "llmco2": lambda: HybridMethod("llmco2", CorrectionSettings(), train, net),
        "llmco2-no-roofline": lambda: HybridMethod(
            "llmco2-no-roofline", CorrectionSettings(view=FeatureView(True, False)), train, net
        ),
        "llmco2-no-phases": lambda: HybridMethod(
            "llmco2-no-phases", CorrectionSettings(view=FeatureView(False, False)), train, net
        ),
        "llmco2-unregularised": lambda: HybridMethod(
            "llmco2-unregularised", CorrectionSettings(bound=0.0, penalty=0.0), train, net
        ),
        "llmco2-plain-mean": lambda: HybridMethod(
            "llmco2-plain-mean", CorrectionSettings(agreement=0.0), train, net
        ),
    }
    return [factories[name]() for name in names]
