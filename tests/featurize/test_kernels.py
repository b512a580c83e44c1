"""Kernel counts against independent hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from featurize import Architecture, KernelCounts, KernelType, kernel_counts
from featurize.kernels import KERNEL_INDEX, KERNEL_TYPES, Phase
from tests.conftest import PointFactory

LINEAR = (
    KernelType.Q_PROJ,
    KernelType.K_PROJ,
    KernelType.V_PROJ,
    KernelType.OUT_PROJ,
    KernelType.GATE_PROJ,
    KernelType.UP_PROJ,
    KernelType.DOWN_PROJ,
)


def value(
    point_counts: KernelCounts, phase: Phase, kind: KernelType, name: str, row: int = 0
) -> float:
    ph = 0 if phase is Phase.PREFILL else 1
    return float(point_counts.quantity(name)[row, ph, KERNEL_INDEX[kind]])


def total(point_counts: KernelCounts, phase: Phase, name: str, row: int = 0) -> float:
    ph = 0 if phase is Phase.PREFILL else 1
    mask = point_counts.present[row]
    if name == "memory_bytes":
        return float(point_counts.memory_bytes[row, ph][mask].sum())
    return float(point_counts.quantity(name)[row, ph][mask].sum())


def test_llama8b_prefill_linear_flops_are_two_per_parameter_per_token(
    make_point: PointFactory,
) -> None:
    # Hand count of Llama-3.1-8B's linear weights per layer: Q and O are 4096×4096, K and V are
    # 4096×1024 (8 KV heads × 128), gate/up/down are 4096×14336; 32 layers.
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    linear_params = 32 * per_layer
    assert linear_params == pytest.approx(6.98e9, rel=0.01)
    counts = kernel_counts([make_point(batch=1, prompt=1024, gen=128)])
    flops = sum(value(counts, Phase.PREFILL, k, "flops") for k in LINEAR)
    assert flops == pytest.approx(2 * 6.98e9 * 1024, rel=0.01)
    assert flops == pytest.approx(2 * linear_params * 1024, rel=1e-12)


def test_decode_step_reads_every_weight_byte_once(
    make_point: PointFactory, llama8b: Architecture
) -> None:
    one_step = kernel_counts([make_point(prompt=512, gen=2)])
    weights = total(one_step, Phase.DECODE, "weight_bytes")
    # Every matrix once (the untied LM head included), plus the embedding row of the one token.
    expected = (llama8b.total_params - llama8b.vocab_size * llama8b.hidden_size) * 2
    expected += llama8b.hidden_size * 2
    assert weights == pytest.approx(expected, rel=1e-9)
    # ... and once per decode step: 128 generated tokens are 127 decode steps.
    many = kernel_counts([make_point(prompt=512, gen=128)])
    assert total(many, Phase.DECODE, "weight_bytes") == pytest.approx(127 * weights, rel=1e-9)
    # The prefill reads every matrix once as well, whatever the prompt length.
    assert total(one_step, Phase.PREFILL, "weight_bytes") < 1.01 * expected


def test_prefill_attention_flops_grow_with_square_of_prompt(make_point: PointFactory) -> None:
    n_h, d_h, layers = 32, 128, 32
    for length in (512, 1024, 4096):
        counts = kernel_counts([make_point(prompt=length)])
        attention = value(counts, Phase.PREFILL, KernelType.FUSED_ATTN, "flops")
        pairs = length * (length + 1) / 2  # causal (query, key) pairs
        hand = layers * n_h * pairs * (4 * d_h + 5)
        assert attention == pytest.approx(hand, rel=1e-12)
    small = value(
        kernel_counts([make_point(prompt=2000)]), Phase.PREFILL, KernelType.FUSED_ATTN, "flops"
    )
    large = value(
        kernel_counts([make_point(prompt=4000)]), Phase.PREFILL, KernelType.FUSED_ATTN, "flops"
    )
    assert large / small == pytest.approx(4.0, rel=1e-3)


def test_without_flash_the_whole_score_matrix_is_computed(make_point: PointFactory) -> None:
    counts = kernel_counts([make_point(prompt=1000, flash=False)])
    qk = value(counts, Phase.PREFILL, KernelType.MATMUL_QK, "flops")
    assert qk == pytest.approx(32 * 2 * 32 * 128 * 1000**2, rel=1e-12)
    softmax_write = value(counts, Phase.PREFILL, KernelType.SOFTMAX, "act_write_bytes")
    assert softmax_write == pytest.approx(32 * 32 * 1000**2 * 2, rel=1e-12)
    present = {k for k, p in zip(KERNEL_TYPES, counts.present[0], strict=True) if p}
    assert KernelType.FUSED_ATTN not in present
    assert {KernelType.MATMUL_QK, KernelType.SOFTMAX, KernelType.MATMUL_SV} <= present


def test_tensor_parallel_halves_linear_flops_and_adds_allreduce_traffic(
    make_point: PointFactory,
) -> None:
    one = kernel_counts([make_point(tp=1, batch=2, prompt=1500, gen=129)])
    two = kernel_counts([make_point(tp=2, batch=2, prompt=1500, gen=129)])
    for phase in (Phase.PREFILL, Phase.DECODE):
        for kind in LINEAR:
            assert value(two, phase, kind, "flops") == pytest.approx(
                value(one, phase, kind, "flops") / 2, rel=1e-12
            )
    assert total(one, Phase.PREFILL, "network_bytes") == 0
    # Eq. 7 for the layer all-reduces (n·m = B·h activations, l = 2, D_A = 2 bytes, L = 1500):
    # the reduce-scatter half; the ring's all-gather sends as much again.
    b, h, length, l, layers = 2, 4096, 1500, 2, 32
    eq7 = (b / l) * h * (l - 1) * 2 * length
    allreduce = value(two, Phase.PREFILL, KernelType.ALLREDUCE_ATTN, "network_bytes")
    assert allreduce == pytest.approx(layers * 2 * eq7, rel=1e-12)
    assert value(two, Phase.PREFILL, KernelType.ALLREDUCE_MLP, "network_bytes") == allreduce
    # Eq. 6 in decode: N_gT - 1 = 128 steps of one token per sequence.
    eq6 = (b / l) * h * (l - 1) * 2 * 128
    decode = value(two, Phase.DECODE, KernelType.ALLREDUCE_MLP, "network_bytes")
    assert decode == pytest.approx(layers * 2 * eq6, rel=1e-12)


def test_decode_kv_reads_grow_with_the_context_token_by_token(make_point: PointFactory) -> None:
    counts = kernel_counts([make_point(batch=2, prompt=1000, gen=11)])
    kv = value(counts, Phase.DECODE, KernelType.FUSED_ATTN, "kv_read_bytes")
    context = sum(1000 + t for t in range(1, 11))  # step t attends to L + t keys
    hand = 32 * 2 * 2 * 8 * 128 * 2 * context  # layers · (K and V) · B · n_kv · d_h · bytes
    assert kv == pytest.approx(hand, rel=1e-12)


def test_kv_cache_is_written_by_the_k_and_v_projections(make_point: PointFactory) -> None:
    counts = kernel_counts([make_point(prompt=100, gen=5)])
    for kind in LINEAR:
        written = value(counts, Phase.PREFILL, kind, "kv_write_bytes")
        if kind in (KernelType.K_PROJ, KernelType.V_PROJ):
            assert written == pytest.approx(32 * 100 * 1024 * 2)
        else:
            assert written == 0


def test_a_single_generated_token_has_no_decode_phase(make_point: PointFactory) -> None:
    counts = kernel_counts([make_point(gen=1, tp=2)])
    assert counts.values[0, 1].sum() == 0
    assert counts.values[0, 0].sum() > 0
    assert counts.roofline().time[0, 1].sum() == 0


def test_lm_head_computes_logits_for_the_last_position_only_in_prefill(
    make_point: PointFactory,
) -> None:
    counts = kernel_counts([make_point(batch=3, prompt=700, gen=4)])
    hand_prefill = 2 * 3 * 4096 * 128256
    assert value(counts, Phase.PREFILL, KernelType.LM_HEAD, "flops") == pytest.approx(hand_prefill)
    assert value(counts, Phase.DECODE, KernelType.LM_HEAD, "flops") == pytest.approx(
        3 * hand_prefill
    )


def test_large_vocabularies_make_the_lm_head_a_large_share_of_small_models(
    make_point: PointFactory,
) -> None:
    counts = kernel_counts([make_point(model="qwen2-0.5b", gen=64)])
    head = value(counts, Phase.DECODE, KernelType.LM_HEAD, "weight_bytes")
    assert head / total(counts, Phase.DECODE, "weight_bytes") > 0.25


def test_moe_reads_only_the_experts_tokens_are_routed_to(make_point: PointFactory) -> None:
    arch_h, arch_i, layers = 4096, 14336, 32
    expert_bytes = arch_h * arch_i * 2  # one expert's gate matrix, bf16
    decode = kernel_counts([make_point(model="mixtral-8x7b", tp=2, batch=1, prompt=64, gen=3)])
    # Batch 1: each decode step routes one token to its top-2 of 8 experts.
    gate = value(decode, Phase.DECODE, KernelType.GATE_PROJ, "weight_bytes")
    assert gate == pytest.approx(layers * 2 * 2 * expert_bytes / 2, rel=1e-9)
    # 2,048 prompt tokens touch all 8 experts (1 - (6/8)^2048 ≈ 1).
    prefill = kernel_counts([make_point(model="mixtral-8x7b", tp=2, prompt=2048, gen=2)])
    gate = value(prefill, Phase.PREFILL, KernelType.GATE_PROJ, "weight_bytes")
    assert gate == pytest.approx(layers * 8 * expert_bytes / 2, rel=1e-9)
    flops = value(prefill, Phase.PREFILL, KernelType.GATE_PROJ, "flops")
    assert flops == pytest.approx(layers * 2 * 2048 * 2 * arch_h * arch_i / 2, rel=1e-12)


def test_sliding_window_caps_the_attended_keys(make_point: PointFactory) -> None:
    # Gemma 2: half the layers attend to at most 4,096 keys.
    long = kernel_counts([make_point(model="gemma2-9b", prompt=8192, gen=2)])
    attention = value(long, Phase.PREFILL, KernelType.FUSED_ATTN, "flops")
    windowed = 4096 * 4097 / 2 + (8192 - 4096) * 4096
    full = 8192 * 8193 / 2
    hand = 42 * 16 * (0.5 * windowed + 0.5 * full) * (4 * 256 + 5)
    assert attention == pytest.approx(hand, rel=1e-12)


def test_kv_heads_are_replicated_when_tp_exceeds_them(make_point: PointFactory) -> None:
    counts = kernel_counts([make_point(model="llama3.1-70b", tp=16, gpu="H200", prompt=100)])
    width = counts.shapes[0, KERNEL_INDEX[KernelType.K_PROJ], 1]
    assert width == 128  # one whole KV head per GPU, not half a head


def test_norms_and_adds_are_replicated_under_tensor_parallelism(make_point: PointFactory) -> None:
    one = kernel_counts([make_point(tp=1)])
    two = kernel_counts([make_point(tp=2)])
    for kind in (KernelType.NORM_ATTN, KernelType.ADD_MLP):
        assert value(one, Phase.PREFILL, kind, "flops") == value(two, Phase.PREFILL, kind, "flops")


def test_mxfp4_experts_shrink_only_the_experts_weight_traffic(make_point: PointFactory) -> None:
    bf16 = kernel_counts([make_point("gpt-oss-20b", gpu="H200")])
    mxfp4 = kernel_counts([make_point("gpt-oss-20b", gpu="H200", ebits=4)])
    for kind in (KernelType.GATE_PROJ, KernelType.UP_PROJ, KernelType.DOWN_PROJ):
        for phase in (Phase.PREFILL, Phase.DECODE):
            assert value(mxfp4, phase, kind, "weight_bytes") == pytest.approx(
                value(bf16, phase, kind, "weight_bytes") * 4.25 / 16
            )
            assert value(mxfp4, phase, kind, "flops") == value(bf16, phase, kind, "flops")
    for kind in (KernelType.Q_PROJ, KernelType.OUT_PROJ, KernelType.ROUTER, KernelType.LM_HEAD):
        assert value(mxfp4, Phase.DECODE, kind, "weight_bytes") == value(
            bf16, Phase.DECODE, kind, "weight_bytes"
        )
    # The experts dequantise to bf16 on the way in: the matmuls keep the 16-bit peak.
    assert mxfp4.inputs.tensor_flops[0] == bf16.inputs.tensor_flops[0]


def test_quantised_weights_shrink_weight_traffic_and_int8_uses_int8_peak(
    make_point: PointFactory,
) -> None:
    w16 = kernel_counts([make_point()])
    w8 = kernel_counts([make_point(wbits=8)])
    w4 = kernel_counts([make_point(wbits=4)])
    base = value(w16, Phase.DECODE, KernelType.UP_PROJ, "weight_bytes")
    assert value(w8, Phase.DECODE, KernelType.UP_PROJ, "weight_bytes") == pytest.approx(base / 2)
    assert value(w4, Phase.DECODE, KernelType.UP_PROJ, "weight_bytes") == pytest.approx(base / 4)
    assert w8.inputs.tensor_flops[0] == pytest.approx(989.4e12)  # W8A16 multiplies in 16 bit
    w8a8 = kernel_counts([make_point(wbits=8, abits=8)])
    assert w8a8.inputs.tensor_flops[0] == pytest.approx(1978.9e12)


def test_batch_of_mixed_points_equals_points_one_by_one(make_point: PointFactory) -> None:
    points = [
        make_point(),
        make_point(model="mixtral-8x7b", tp=2, batch=2, prompt=300, gen=7),
        make_point(model="bloom-3b", gpu="A100-80GB", flash=False, prompt=77, gen=1),
        make_point(model="gemma2-2b", gpu="L4", wbits=8, kvbits=8, prompt=5000, gen=40),
        make_point(model="qwen2-0.5b", gpu="T4", tp=2, batch=2, prompt=1, gen=600),
    ]
    together = kernel_counts(points)
    for row, point in enumerate(points):
        alone = kernel_counts([point])
        np.testing.assert_allclose(together.values[row], alone.values[0], rtol=1e-12)
        np.testing.assert_array_equal(together.present[row], alone.present[0])


def test_roofline_follows_eq8(make_point: PointFactory) -> None:
    counts = kernel_counts([make_point(tp=2, prompt=2048, gen=64)])
    roof = counts.roofline()
    bw, th = 3350e9, 989.4e12
    k = KERNEL_INDEX[KernelType.UP_PROJ]
    # Large prefill matmul: compute bound, P = Th_max.
    assert roof.performance[0, 0, k] == pytest.approx(th)
    # Decode matmul: memory bound, P = BW_max · MAI.
    assert roof.performance[0, 1, k] == pytest.approx(bw * roof.memory_intensity[0, 1, k])
    assert roof.performance[0, 1, k] < th
    # All-reduce: network bound, time = I / (NVLink 900 GB/s bidirectional / 2).
    a = KERNEL_INDEX[KernelType.ALLREDUCE_MLP]
    network = counts.quantity("network_bytes")[0, 0, a]
    assert roof.time[0, 0, a] == pytest.approx(network / 450e9)
    assert roof.bound()[0, 0, a] == "network"
    # Absent kernels take no time.
    assert roof.time[0][:, ~counts.present[0]].sum() == 0


def test_latent_attention_caches_and_reads_one_latent_per_token(make_point: PointFactory) -> None:
    # DeepSeek-V2-Lite: 27 layers cache 512 + 64 elements per token, whole on every GPU.
    for tp in (1, 2):
        counts = kernel_counts(
            [make_point("deepseek-v2-lite", batch=2, prompt=1000, gen=11, tp=tp)]
        )
        written = value(counts, Phase.PREFILL, KernelType.K_PROJ, "kv_write_bytes")
        assert written == pytest.approx(27 * 2 * 1000 * 576 * 2, rel=1e-12)
        assert value(counts, Phase.PREFILL, KernelType.V_PROJ, "kv_write_bytes") == 0
        read = value(counts, Phase.DECODE, KernelType.FUSED_ATTN, "kv_read_bytes")
        context = sum(1000 + t for t in range(1, 11))
        assert read == pytest.approx(27 * 2 * 576 * 2 * context, rel=1e-12)
    # Decode attends over the latent as one KV head: per query head and key, (512 + 64) wide
    # scores and a 512-wide weighted sum, against 192 and 128 in the prefill.
    counts = kernel_counts([make_point("deepseek-v2-lite", batch=1, prompt=64, gen=2)])
    pairs_decode = 16 * 65
    pairs_prefill = 16 * 64 * 65 / 2
    decode = value(counts, Phase.DECODE, KernelType.FUSED_ATTN, "flops")
    prefill = value(counts, Phase.PREFILL, KernelType.FUSED_ATTN, "flops")
    assert decode == pytest.approx(27 * pairs_decode * (2 * 576 + 2 * 512 + 5), rel=1e-12)
    assert prefill == pytest.approx(27 * pairs_prefill * (2 * 192 + 2 * 128 + 5), rel=1e-12)


@pytest.mark.parametrize("model", ["deepseek-v2-lite", "deepseek-v3"])
def test_shared_experts_and_dense_layers_make_two_flops_per_active_weight(
    make_point: PointFactory, model: str
) -> None:
    point = make_point(model, gpu="H200", tp=8, batch=1, prompt=256, gen=2)
    arch = point.architecture
    counts = kernel_counts([point])
    # Per token: every layer's attention, the experts' layers' router, top-k and shared experts,
    # the dense layers' MLP (norm weights are not multiplied).
    dense_layer = arch.attention_params_per_layer + arch.dense_mlp_params
    active = (
        arch.expert_layers * (arch.active_params_per_layer - arch.norm_params_per_layer)
        + arch.dense_layers * dense_layer
    )
    kinds = (*LINEAR, KernelType.ROUTER)
    replicated = arch.replicated_attention_params_per_layer * arch.num_layers
    replicated += arch.router_params_per_layer * arch.expert_layers
    sharded = active - replicated
    flops = sum(value(counts, Phase.PREFILL, k, "flops") for k in kinds)
    assert flops == pytest.approx(2 * 256 * (sharded / 8 + replicated), rel=1e-12)


def test_parallel_attention_shares_one_all_reduce_and_its_layernorm(
    make_point: PointFactory,
) -> None:
    # Falcon-40B (a LayerNorm each) and Falcon2-11B (one shared) at TP 4: the engine adds the
    # attention and MLP partial sums before a single all-reduce per layer.
    for model, norm_mlp in (("falcon-40b", True), ("falcon2-11b", False)):
        counts = kernel_counts([make_point(model, gpu="H200", tp=4, prompt=512, gen=8)])
        present = counts.present[0]
        assert not present[KERNEL_INDEX[KernelType.ALLREDUCE_ATTN]]
        assert present[KERNEL_INDEX[KernelType.ALLREDUCE_MLP]]
        assert present[KERNEL_INDEX[KernelType.NORM_MLP]] == norm_mlp
    sequential = kernel_counts([make_point("llama3.1-8b", tp=4, prompt=512, gen=8)])
    assert sequential.present[0, KERNEL_INDEX[KernelType.ALLREDUCE_ATTN]]
