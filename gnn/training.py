"""Training, prediction and checkpoints of the LLMCO2 predictor.

Training is seeded and early-stopped on a validation share; features are standardised with
statistics of the training graphs, which travel in the checkpoint. The loss is the squared error
of log energies — prefill, decode (where the request has a decode phase) and total — i.e. a
relative error, since energies span five decades. A checkpoint is a plain dict of tensors and
numbers, loadable with ``torch.load(weights_only=True)``; one written for another feature schema
is refused with a clear message.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from featurize.graphs import FEATURE_SCHEMA_VERSION, GLOBAL_FEATURE_NAMES
from gnn.model import LLMCO2Net, ModelConfig
from llmco2.errors import ConfigFileError, InvalidRequestError
from llmco2.version import code_version

_GEN_COLUMN = GLOBAL_FEATURE_NAMES.index("log2_generated_tokens")


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of one training run."""

    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    patience: int = 25
    validation_fraction: float = 0.15
    seed: int = 0
    device: str = "cpu"
    #: False: learn from total energy only (a model without the prefill/decode split).
    phase_labels: bool = True


@dataclass
class History:
    """Per-epoch losses and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0


def _has_decode(u: Tensor) -> Tensor:
    return u[:, _GEN_COLUMN] > 0  # log2(generated tokens) > 0 ⇔ more than one token


def _spread(features: Tensor) -> Tensor:
    """Standard deviation per column, 1 where a column is constant in the training data.

    A tiny divisor would turn a feature that never varied in training (e.g. the expert count of
    dense-only data) into a value of millions for an unseen model, and the output into inf.
    """
    std = features.std(0)
    return torch.where(std > 1e-3, std, torch.ones_like(std))


def _undirected(edge_index: Tensor) -> Tensor:
    return torch.cat([edge_index, edge_index.flip(0)], dim=1)


class Predictor:
    """A trained network with its feature standardisation."""

    def __init__(
        self,
        model: LLMCO2Net,
        stats: dict[str, Tensor],
        train_config: TrainConfig | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model.eval()
        self.stats = stats
        self.train_config = train_config or TrainConfig()
        self.metadata = metadata or {}

    def _normalise(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        s = self.stats
        return (x - s["x_mean"]) / s["x_std"], (u - s["u_mean"]) / s["u_std"]

    def _forward(self, batch: Any) -> Tensor:
        x, u = self._normalise(batch.x, batch.u)
        return torch.as_tensor(self.model(x, _undirected(batch.edge_index), batch.batch, u))

    @torch.no_grad()
    def predict(self, graphs: Sequence[Any], batch_size: int = 1024) -> np.ndarray:
        """Energy in J of each graph: columns prefill, decode, total."""
        from torch_geometric.loader import DataLoader

        outputs = []
        for batch in DataLoader(list(graphs), batch_size=batch_size, shuffle=False):
            log_energy = self._forward(batch)
            prefill = torch.exp(log_energy[:, 0])
            decode = torch.exp(log_energy[:, 1]) * _has_decode(batch.u)
            outputs.append(torch.stack([prefill, decode, prefill + decode], dim=1))
        return torch.cat(outputs).double().numpy()

    def predict_points(self, points: Sequence[Any]) -> np.ndarray:
        """Energy (J) of inference points: columns prefill, decode, total."""
        from featurize.graphs import build_graphs

        return self.predict(build_graphs(points))

    def _blob(self) -> dict[str, Any]:
        return {
            "format": "llmco2-predictor",
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "code_version": code_version(),
            "model_config": self.model.config.to_dict(),
            "train_config": asdict(self.train_config),
            "state_dict": self.model.state_dict(),
            "stats": self.stats,
            "metadata": self.metadata,
        }

    def save(self, path: Path) -> None:
        """Write a ``weights_only``-loadable checkpoint."""
        torch.save(self._blob(), path)

    def to_bytes(self) -> bytes:
        """The checkpoint as bytes (for the campaign database's models table)."""
        buffer = io.BytesIO()
        torch.save(self._blob(), buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "stored checkpoint") -> Predictor:
        """Read a checkpoint from bytes.

        Raises:
            ConfigFileError: Corrupted, not a predictor, or another feature schema.
        """
        try:
            blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigFileError(
                f"cannot read predictor checkpoint {source}: {type(exc).__name__}"
            ) from exc
        return cls._from_blob(blob, source)

    @classmethod
    def load(cls, path: Path) -> Predictor:
        """Read a checkpoint.

        Raises:
            ConfigFileError: Missing, corrupted, not a predictor, or another feature schema.
        """
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError as exc:
            raise ConfigFileError(f"no predictor checkpoint at {str(path)!r}") from exc
        except OSError as exc:
            raise ConfigFileError(f"cannot read predictor checkpoint {str(path)!r}: {exc}") from exc
        return cls.from_bytes(data, repr(str(path)))

    @classmethod
    def _from_blob(cls, blob: Any, source: str) -> Predictor:
        if not isinstance(blob, dict) or blob.get("format") != "llmco2-predictor":
            raise ConfigFileError(f"{source} is not an llmco2 predictor checkpoint")
        if blob.get("feature_schema_version") != FEATURE_SCHEMA_VERSION:
            raise ConfigFileError(
                f"checkpoint {source} was trained on feature schema "
                f"{blob.get('feature_schema_version')}, this llmco2 uses {FEATURE_SCHEMA_VERSION}: "
                "retrain it with `llmco2 train`"
            )
        model = LLMCO2Net(ModelConfig(**blob["model_config"]))
        model.load_state_dict(blob["state_dict"])
        return cls(model, blob["stats"], TrainConfig(**blob["train_config"]), blob["metadata"])


def ensemble_energies(members: Sequence[Predictor], points: Sequence[Any]) -> np.ndarray:
    """Total energy (J) of ``points`` by each member, shape (members, points).

    The graphs are built once for all members: building them costs more than the members'
    forward passes.
    """
    from featurize.graphs import build_graphs

    graphs = build_graphs(points)
    return np.stack([member.predict(graphs)[:, 2] for member in members])


def _loss(
    log_pred: Tensor,
    log_prefill: Tensor,
    log_decode: Tensor,
    decode_mask: Tensor,
    phase_labels: bool = True,
) -> Tensor:
    total_pred = torch.logaddexp(log_pred[:, 0], log_pred[:, 1] + torch.log(decode_mask + 1e-12))
    total_true = torch.logaddexp(log_prefill, log_decode + torch.log(decode_mask + 1e-12))
    total_err = (total_pred - total_true) ** 2
    if not phase_labels:
        return torch.as_tensor(total_err.mean())
    prefill_err = (log_pred[:, 0] - log_prefill) ** 2
    decode_err = ((log_pred[:, 1] - log_decode) ** 2) * decode_mask
    return torch.as_tensor((prefill_err + decode_err + total_err).mean())


def train_predictor(
    graphs: Sequence[Any],
    prefill_j: Sequence[float] | np.ndarray,
    decode_j: Sequence[float] | np.ndarray,
    config: TrainConfig | None = None,
    model_config: ModelConfig | None = None,
) -> tuple[Predictor, History]:
    """Train on graphs labelled with measured prefill and decode energy (J).

    Raises:
        InvalidRequestError: Too few graphs, mismatched labels or non-positive prefill energy.
    """
    from torch_geometric.loader import DataLoader

    cfg = config or TrainConfig()
    prefill = np.asarray(prefill_j, dtype=np.float64)
    decode = np.asarray(decode_j, dtype=np.float64)
    if len(graphs) < 4 or len(prefill) != len(graphs) or len(decode) != len(graphs):
        raise InvalidRequestError("training needs ≥ 4 graphs with one label pair each")
    if np.any(prefill <= 0) or np.any(~np.isfinite(decode)):
        raise InvalidRequestError("prefill energies must be positive and decode energies finite")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    labelled = []
    for graph, pre, dec in zip(graphs, prefill, decode, strict=True):
        item = copy.copy(graph)
        has_decode = bool(_has_decode(graph.u)[0]) and dec > 0
        item.log_prefill = torch.tensor([math.log(pre)], dtype=torch.float32)
        item.log_decode = torch.tensor([math.log(dec) if has_decode else 0.0], dtype=torch.float32)
        item.decode_mask = torch.tensor([1.0 if has_decode else 0.0])
        labelled.append(item)
    order = rng.permutation(len(labelled))
    n_val = max(1, round(cfg.validation_fraction * len(labelled)))
    val = [labelled[i] for i in order[:n_val]]
    train = [labelled[i] for i in order[n_val:]]

    x_all = torch.cat([g.x for g in train])
    u_all = torch.cat([g.u for g in train])
    stats = {
        "x_mean": x_all.mean(0),
        "x_std": _spread(x_all),
        "u_mean": u_all.mean(0),
        "u_std": _spread(u_all),
    }
    mcfg = model_config or ModelConfig(x_all.shape[1], u_all.shape[1])
    model = LLMCO2Net(mcfg).to(cfg.device)
    device = torch.device(cfg.device)
    predictor = Predictor(model, {k: v.to(device) for k, v in stats.items()}, cfg)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(cfg.epochs, 1))
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=generator)
    val_loader = DataLoader(val, batch_size=1024)
    history = History()
    best_state, best_loss = copy.deepcopy(model.state_dict()), math.inf
    for epoch in range(cfg.epochs):
        model.train()
        total = 0.0
        for batch in train_loader:
            batch = batch.to(device)  # noqa: PLW2901 - the same batch, on the training device
            optimiser.zero_grad()
            loss = _loss(
                predictor._forward(batch),
                batch.log_prefill,
                batch.log_decode,
                batch.decode_mask,
                cfg.phase_labels,
            )
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += loss.item() * batch.num_graphs
        scheduler.step()
        model.eval()
        with torch.no_grad():
            val_loss = sum(
                float(
                    _loss(
                        predictor._forward(b),
                        b.log_prefill,
                        b.log_decode,
                        b.decode_mask,
                        cfg.phase_labels,
                    )
                )
                * b.num_graphs
                for b in (v.to(device) for v in val_loader)
            ) / len(val)
        history.train_loss.append(total / len(train))
        history.validation_loss.append(val_loss)
        if val_loss < best_loss:
            best_loss, best_state, history.best_epoch = (
                val_loss,
                copy.deepcopy(model.state_dict()),
                epoch,
            )
        elif epoch - history.best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    # Predictions and checkpoints live on the CPU whatever device trained the network.
    predictor = Predictor(model.cpu().eval(), stats, cfg)
    predictor.metadata = {"train_graphs": len(train), "validation_graphs": len(val)}
    return predictor, history
