"""Rounds of Algorithm 1 and the predictors they trained, in the store."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import insert, select

from llmco2.errors import CampaignConflictError, InvalidRequestError
from llmco2.version import code_version
from storage.models import ModelCheckpoint, Round
from storage.records import RoundRecord
from storage.store.base import StoreBase


class RoundOperations(StoreBase):
    """Reads and writes of the ``rounds`` and ``models`` tables."""

    def add_round(self, campaign_id: int, record: RoundRecord) -> int:
        """Persist a finished round; a round index is written once.

        Raises:
            CampaignConflictError: When the campaign already has that round.
        """
        values = {**dataclasses.asdict(record), "campaign_id": campaign_id}
        with self._transaction() as conn:
            exists = conn.execute(
                select(Round.id).where(
                    Round.campaign_id == campaign_id, Round.round_index == record.round_index
                )
            ).scalar_one_or_none()
            if exists is not None:
                raise CampaignConflictError(
                    f"round {record.round_index} of campaign {campaign_id} is already recorded"
                )
            return int(conn.execute(insert(Round).values(values).returning(Round.id)).scalar_one())

    def rounds(self, campaign_id: int) -> list[RoundRecord]:
        """The campaign's rounds in order."""
        fields = tuple(RoundRecord.__dataclass_fields__)
        with self._reading() as conn:
            rows = conn.execute(
                select(*(getattr(Round, f) for f in fields))
                .where(Round.campaign_id == campaign_id)
                .order_by(Round.round_index)
            ).all()
        return [RoundRecord(**dict(zip(fields, row, strict=True))) for row in rows]

    def save_model(
        self,
        name: str,
        *,
        feature_schema_version: int,
        checkpoint: bytes | None = None,
        path: str | None = None,
        metrics: dict[str, Any] | None = None,
        campaign_id: int | None = None,
    ) -> int:
        """Store a trained predictor (its bytes or where they are); returns its id."""
        if checkpoint is None and path is None:
            raise InvalidRequestError("a model needs its checkpoint bytes or a path")
        with self._transaction() as conn:
            return int(
                conn.execute(
                    insert(ModelCheckpoint)
                    .values(
                        name=name,
                        checkpoint=checkpoint,
                        path=path,
                        metrics=metrics,
                        campaign_id=campaign_id,
                        feature_schema_version=feature_schema_version,
                        code_version=code_version(),
                    )
                    .returning(ModelCheckpoint.id)
                ).scalar_one()
            )

    def load_model(self, model_id: int) -> dict[str, Any]:
        """A stored predictor's fields.

        Raises:
            InvalidRequestError: When no model has that id.
        """
        with self._reading() as conn:
            row = conn.execute(
                select(ModelCheckpoint).where(ModelCheckpoint.id == model_id)
            ).one_or_none()
        if row is None:
            raise InvalidRequestError(f"no model with id {model_id} in {self.url}")
        return dict(row._mapping)
