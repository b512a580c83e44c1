"""Recreate schema_v1.sqlite: a campaign database written by the first schema revision (0001).

Kept so the upgrade test runs against a real old file; run from the repository root:
    python tests/storage/assets/make_schema_v1.py
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from storage.database import make_engine, upgrade

ASSET = Path(__file__).with_name("schema_v1.sqlite")
ARCH = {
    "name": "meta-llama/Llama-3.1-8B", "family": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_layers": 32, "num_heads": 32, "num_kv_heads": 8,
    "head_dim": 128, "vocab_size": 128256, "mlp": "gated", "activation": "silu",
    "tied_embeddings": False, "num_experts": 1, "experts_per_token": 1, "sliding_window": None,
    "sliding_window_layer_fraction": 0.0, "norms_per_sublayer": 1, "qkv_bias": False,
    "dense_bias": False, "position": "rope",
}  # fmt: skip


def main() -> None:
    ASSET.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{ASSET}")
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaigns (name, config, config_hash, status, code_version) "
                "VALUES ('v1-campaign', :config, :hash, 'ACTIVE', '0.1.0')"
            ),
            {"config": json.dumps({"engine": "vllm", "A": 3}), "hash": "0" * 64},
        )
        for n, (status, prompt) in enumerate([("COMPLETE", 1024), ("PENDING", 512), ("FAILED", 7)]):
            conn.execute(
                text(
                    "INSERT INTO points (campaign_id, key, config_key, architecture, model_name, "
                    "family, weight_bits, activation_bits, kv_bits, flash_attention, batch_size, "
                    "prompt_tokens, generated_tokens, gpu_type, gpu_count, engine, round_index, "
                    "reason, split, status, attempts, error_kind) VALUES (1, :key, :ckey, :arch, "
                    "'meta-llama/Llama-3.1-8B', 'llama', 16, 16, 16, 1, 1, :prompt, 128, "
                    "'H200', 1, 'vllm', 0, 'initial', 'train', :status, :attempts, :kind)"
                ),
                {
                    "key": f"{n:064d}",
                    "ckey": "c" * 64,
                    "arch": json.dumps(ARCH),
                    "prompt": prompt,
                    "status": status,
                    "attempts": 3 if status == "FAILED" else 0,
                    "kind": "crash" if status == "FAILED" else None,
                },
            )
        conn.execute(
            text(
                "INSERT INTO measurements (point_id, energy_j, prefill_energy_j, decode_energy_j, "
                "repeats, noisy, engine_name, engine_version, simulated) "
                "VALUES (1, 298.8, 19.6, 279.2, 3, 0, 'vllm', '0.24.0', 0)"
            )
        )
    engine.dispose()
    print(f"wrote {ASSET}")


if __name__ == "__main__":
    main()
