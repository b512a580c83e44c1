"""Sampling the priors and neighbours within ±C."""

from __future__ import annotations

import numpy as np
import pytest

from featurize import Precision, check_fits, get_gpu
from featurize.hf_config import architecture_from_hf_config, to_hf_config
from llmco2.errors import InvalidRequestError
from orchestrator.config import parse_config
from orchestrator.sampling import PointSampler


def _config(**sampling: object) -> object:
    return parse_config({
        "name": "s",
        "priors": {
            "architectures": {"models": ["qwen2-0.5b", "llama3.1-8b", "mixtral-8x7b"],
                              "perturbed_fraction": 0.5,
                              "perturbation": {"num_layers": 0.3, "intermediate_size": 0.3,
                                               "num_heads": 0.5}},
            "requests": {"batch": [1, 4], "max_generated": 256},
            "gpus": {"tp": [1, 4]},
        },
        "sampling": {"radius": {"prompt_tokens": 10, "generated_tokens": 1, "num_layers": 1,
                                "gpu_count": 1}, **sampling},
    })  # fmt: skip


def test_samples_are_distinct_valid_and_within_the_priors() -> None:
    sampler = PointSampler(_config(), [get_gpu("H100-SXM"), get_gpu("L4")])  # type: ignore[arg-type]
    points = sampler.sample(300, np.random.default_rng(0))
    assert len(points) == len(set(points)) == 300
    for point in points:
        check_fits(point)  # nothing infeasible is returned
        assert 1 <= point.request.batch_size <= 4 and point.request.generated_tokens <= 256
        assert 1 <= point.setup.count <= 4
    names = {p.architecture.name for p in points}
    assert any("~" in n for n in names)  # perturbed shapes
    assert {p.setup.gpu.id for p in points} == {"H100-SXM", "L4"}
    # Mixtral (93 GB of weights) never lands on one 24 GB L4.
    assert not any(p.architecture.family == "mixtral" and p.setup.gpu.id == "L4"
                   and p.setup.count == 1 for p in points)  # fmt: skip


def test_sampling_is_reproducible() -> None:
    sampler = PointSampler(_config(), [get_gpu("H100-SXM")])  # type: ignore[arg-type]
    first = sampler.sample(50, np.random.default_rng(7))
    assert first == sampler.sample(50, np.random.default_rng(7))


def test_perturbed_shapes_keep_the_head_grouping() -> None:
    sampler = PointSampler(_config(), [get_gpu("H100-SXM")])  # type: ignore[arg-type]
    base = sampler.bases[1]
    rng = np.random.default_rng(1)
    for _ in range(50):
        arch = sampler.perturb(base, rng)
        assert arch.num_heads // arch.num_kv_heads == base.num_heads // base.num_kv_heads
        assert arch.intermediate_size % 128 == 0
        assert 0.7 * base.num_layers - 1 <= arch.num_layers <= 1.3 * base.num_layers + 1
        assert arch.name.startswith(base.name)


def test_perturbed_bloom_keeps_the_mlp_width_its_engine_builds() -> None:
    config = parse_config({
        "name": "b",
        "priors": {"architectures": {"models": ["bloom-560m"], "perturbed_fraction": 1.0,
                                     "perturbation": {"num_layers": 0.3, "intermediate_size": 0.3,
                                                      "num_heads": 0.5}}},
    })  # fmt: skip
    sampler = PointSampler(config, [get_gpu("H100-SXM")])
    rng = np.random.default_rng(3)
    shapes = [sampler.perturb(sampler.bases[0], rng) for _ in range(30)]
    assert len({(a.num_layers, a.hidden_size) for a in shapes}) > 5  # it does perturb
    for arch in shapes:
        assert arch.intermediate_size == 4 * arch.hidden_size  # what BloomMLP builds
        # the config handed to vLLM reads back as the same shape
        assert architecture_from_hf_config(to_hf_config(arch), name=arch.name) == arch


def test_neighbours_lie_within_the_radius() -> None:
    sampler = PointSampler(_config(), [get_gpu("H100-SXM")])  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    center = sampler.sample(1, rng)[0]
    near = sampler.neighbours(center, 40, rng)
    assert 0 < len(near) <= 40 and center not in near and len(set(near)) == len(near)
    for point in near:
        assert abs(point.request.prompt_tokens - center.request.prompt_tokens) <= 10
        assert abs(point.request.generated_tokens - center.request.generated_tokens) <= 1
        assert point.request.batch_size == center.request.batch_size  # radius 0
        assert abs(point.architecture.num_layers - center.architecture.num_layers) <= 1
        assert abs(point.setup.count - center.setup.count) <= 1
        assert point.setup.gpu == center.setup.gpu
        check_fits(point)


def test_no_gpu_types_is_an_error() -> None:
    with pytest.raises(InvalidRequestError, match="no GPU types"):
        PointSampler(_config(), [])  # type: ignore[arg-type]


def test_perturbed_variants_are_shared_and_fixed_by_the_seed() -> None:
    data = _config().model_dump(mode="json")  # type: ignore[attr-defined]
    data["priors"]["architectures"]["perturbed_variants"] = 2
    config = parse_config(data)
    gpus = [get_gpu("H100-SXM")]
    points = PointSampler(config, gpus).sample(200, np.random.default_rng(3))
    perturbed = {p.architecture for p in points if "~" in p.architecture.name}
    # Every perturbed draw is one of the two shapes: few engine loads on a GPU.
    assert 1 <= len(perturbed) <= 2
    assert sum("~" in p.architecture.name for p in points) > 50
    again = PointSampler(config, gpus)  # a resumed driver draws the same shapes
    assert set(again.variants) == set(PointSampler(config, gpus).variants) >= perturbed


def test_draws_take_whole_precisions_and_neighbours_keep_theirs() -> None:
    config = parse_config({
        "name": "p",
        "priors": {"architectures": {"models": ["qwen2-0.5b", "llama3.1-8b"],
                                     "precisions": ["w8a8kv8", "w16a16kv8", "w16a16kv16"]},
                   "gpus": {"tp": [1, 1]}},
        "sampling": {"radius": {"prompt_tokens": 10}},
    })  # fmt: skip
    sampler = PointSampler(config, [get_gpu("H200")])
    points = sampler.sample(60, np.random.default_rng(3))
    labels = {p.precision.label for p in points}
    assert labels == {"w8a8kv8", "w16a16kv8", "w16a16kv16"}
    for point in points[:10]:
        for near in sampler.neighbours(point, 3, np.random.default_rng(4)):
            assert near.precision == point.precision


def test_mxfp4_experts_are_drawn_only_for_models_with_experts() -> None:
    config = parse_config({
        "name": "e",
        "priors": {"architectures": {"models": ["gpt-oss-20b", "qwen2-0.5b"],
                                     "precisions": ["w16a16kv16e4", "w16a16kv16"]},
                   "gpus": {"tp": [1, 1]}},
    })  # fmt: skip
    points = PointSampler(config, [get_gpu("H200")]).sample(40, np.random.default_rng(6))
    drawn = {(p.architecture.family, p.precision.label) for p in points}
    assert ("gpt_oss", "w16a16kv16e4") in drawn and ("qwen2", "w16a16kv16") in drawn
    assert ("qwen2", "w16a16kv16e4") not in drawn  # a dense model has no experts to narrow


def test_weight_bits_draw_as_before_whole_precisions_existed() -> None:
    config = parse_config({
        "name": "w",
        "priors": {"architectures": {"models": ["llama3.1-8b"], "weight_bits": [16, 8]},
                   "gpus": {"tp": [1, 1]}},
    })  # fmt: skip
    points = PointSampler(config, [get_gpu("H200")]).sample(40, np.random.default_rng(5))
    assert {p.precision for p in points} == {Precision(16), Precision(8)}


def test_same_engine_points_share_the_engine_and_draw_new_requests() -> None:
    sampler = PointSampler(_config(), [get_gpu("H100-SXM")])  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    center, other = sampler.sample(2, rng)
    taken = set(sampler.same_engine(center, 5, np.random.default_rng(9)))
    more = sampler.same_engine(center, 30, rng, exclude={other, *taken})
    assert len(more) == len(set(more)) == 30
    assert center not in more and not taken & set(more)
    for point in more:
        assert point.architecture == center.architecture
        assert point.precision == center.precision and point.setup == center.setup
        assert 1 <= point.request.batch_size <= 4 and point.request.generated_tokens <= 256
        check_fits(point)
    assert len({p.request for p in more}) == 30
