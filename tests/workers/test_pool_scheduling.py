"""The pool's choice of which engine group starts next (backfilling free GPUs)."""

from __future__ import annotations

from workers.pool import next_group


def test_an_idle_cluster_starts_the_widest_group_first() -> None:
    assert next_group([4, 2, 1], free_gpus=4, busy=False) == 0


def test_a_group_waiting_for_a_whole_host_lets_a_smaller_one_use_the_free_gpus() -> None:
    # TP 2 runs on 2 of 4 GPUs; the TP 4 group must wait, the TP 1 group behind it need not.
    assert next_group([4, 1], free_gpus=2, busy=True) == 1


def test_nothing_starts_when_no_waiting_group_fits() -> None:
    assert next_group([4, 2], free_gpus=1, busy=True) is None
    assert next_group([], free_gpus=4, busy=False) is None


def test_engines_without_gpus_always_fit() -> None:
    assert next_group([0, 0], free_gpus=0, busy=True) == 0
