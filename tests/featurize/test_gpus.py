"""The GPU catalog: dense figures, lookups, user entries, precision peaks."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurize import GpuCatalog, Precision, get_gpu
from llmco2.errors import ConfigFileError, UnknownGpuError

REQUIRED = (
    "T4",
    "L4",
    "A100-40GB",
    "A100-80GB",
    "H100-SXM",
    "H100-PCIe",
    "H200",
    "B200",
    "L40S",
    "V100",
    "H100-NVL",
    "H20",
    "L40",
    "MI300X",
    "MI325X",
    "GB200",
    "B300",
    "A10G",
    "Gaudi3",
)


def test_catalog_has_the_required_gpus() -> None:
    ids = {gpu.id for gpu in GpuCatalog.builtin()}
    assert set(REQUIRED) <= ids


def test_throughput_is_dense_not_the_papers_sparse_figures() -> None:
    h100 = get_gpu("H100-SXM")
    # The paper's Table 2 lists 1979 (sparse FP16) and 3958 (sparse INT8) for the H100.
    assert h100.tensor_flops(Precision()) == pytest.approx(989.4e12)
    assert h100.tensor_flops(Precision(8, 8, 8)) == pytest.approx(1978.9e12)
    a100 = get_gpu("A100-80GB")
    assert a100.tensor_flops(Precision()) == pytest.approx(312e12)


@pytest.mark.parametrize(
    ("nvml_name", "gpu_id"),
    [
        ("NVIDIA H200", "H200"),
        ("NVIDIA H100 80GB HBM3", "H100-SXM"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("Tesla T4", "T4"),
        ("nvidia l4", "L4"),
    ],
)
def test_lookup_by_nvml_name(nvml_name: str, gpu_id: str) -> None:
    assert get_gpu(nvml_name).id == gpu_id


def test_unknown_gpu_suggests_close_names() -> None:
    with pytest.raises(UnknownGpuError) as info:
        get_gpu("H100-SMX")
    assert "H100-SXM" in str(info.value)


def test_missing_data_type_falls_back_to_a_wider_one() -> None:
    v100 = get_gpu("V100")  # no INT8 tensor cores: W8A8 runs as dequantised FP16
    assert v100.tensor_flops(Precision(8, 8, 16)) == pytest.approx(125e12)


def test_link_bandwidth_is_per_direction() -> None:
    assert get_gpu("H100-SXM").link_bandwidth == pytest.approx(450e9)  # NVLink 900 GB/s quoted
    assert get_gpu("L4").link_bandwidth == pytest.approx(32e9)  # PCIe Gen4 64 GB/s quoted
    assert not get_gpu("L4").has_gpu_link and get_gpu("L4").interconnect == "PCIe"


def test_amd_gpus_talk_over_infinity_fabric_not_nvlink() -> None:
    mi300x = get_gpu("AMD Instinct MI300X")
    assert mi300x.interconnect == "Infinity Fabric" and mi300x.has_gpu_link
    assert mi300x.link_bandwidth == pytest.approx(448e9)  # 896 GB/s quoted both ways
    assert all(gpu.interconnect != "NVLink" for gpu in GpuCatalog.builtin()
               if gpu.id.startswith("MI"))  # fmt: skip
    assert describe_point_interconnect("MI325X") == "infinity fabric"
    assert describe_point_interconnect("H200") == "nvlink"
    gaudi = get_gpu("gaudi-3")
    assert gaudi.link_bandwidth == pytest.approx(600e9) and "RoCE" in str(gaudi.interconnect)
    assert gaudi.entry.peak_tflops_dense.fp8 == gaudi.entry.peak_tflops_dense.bf16 == 1835.0
    a10g = get_gpu("a10g")  # AWS G5: PCIe only
    assert not a10g.has_gpu_link and a10g.memory_bandwidth == pytest.approx(600e9)


def describe_point_interconnect(gpu_id: str) -> str:
    from featurize import InferenceRequest, Precision, resolve_architecture, summarize_point
    from featurize.point import GpuSetup, InferencePoint

    point = InferencePoint(resolve_architecture("llama3.1-8b"), InferenceRequest(1, 64, 8),
                           GpuSetup(get_gpu(gpu_id), 2), Precision())  # fmt: skip
    return str(summarize_point(point)["hardware"]["interconnect"])


def test_blackwell_lists_its_fp4_and_fp6_peaks() -> None:
    peaks = get_gpu("B200").entry.peak_tflops_dense
    assert (peaks.fp4, peaks.fp6, peaks.fp8) == (9000.0, 4500.0, 4500.0)
    assert get_gpu("B300").entry.peak_tflops_dense.fp4 == 13125.0  # Blackwell Ultra's FP4
    assert get_gpu("H200").entry.peak_tflops_dense.fp4 is None  # Hopper has no FP4 units


USER_GPU = """
id: RTX-6000-Ada
aliases: [rtx6000ada]
nvml_names: ["NVIDIA RTX 6000 Ada Generation"]
peak_tflops_dense: {fp32: 91.1, fp16: 364.2, bf16: 364.2, fp8: 728.5, int8: 728.5}
memory_gb: 48
memory_bandwidth_gbps: 960
pcie_gbps: 64
tdp_w: 300
die_area_mm2: 608.5
process_nm: 5
"""


def test_user_gpu_file_adds_an_entry(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(USER_GPU)
    catalog = GpuCatalog.builtin().with_file(path)
    gpu = catalog.get("NVIDIA RTX 6000 Ada Generation")
    assert gpu.id == "RTX-6000-Ada"
    assert gpu.memory_bandwidth == pytest.approx(960e9)
    assert len(catalog) == len(GpuCatalog.builtin()) + 1


def test_a_gpu_file_written_with_nvlink_gbps_reads_as_an_nvlink(tmp_path: Path) -> None:
    path = tmp_path / "gpus.yaml"
    path.write_text(USER_GPU + "nvlink_gbps: 900\n")
    gpu = GpuCatalog.builtin().with_file(path).get("RTX-6000-Ada")
    assert (gpu.interconnect, gpu.entry.link_gbps) == ("NVLink", 900)
    named = USER_GPU + "interconnect: Infinity Fabric\nlink_gbps: 896\n"
    path.write_text(named)
    assert GpuCatalog.builtin().with_file(path).get("RTX-6000-Ada").interconnect == (
        "Infinity Fabric"
    )


def test_user_gpu_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gpus.json"
    path.write_text(
        '{"gpus": [' + __import__("json").dumps(__import__("yaml").safe_load(USER_GPU)) + "]}"
    )
    monkeypatch.setenv("LLMCO2_GPU_FILE", str(path))
    assert get_gpu("rtx6000ada").entry.tdp_w == 300


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: X\nmemory_gb: [", "not valid YAML"),
        ("id: X\nmemory_gb: 10\n", "peak_tflops_dense"),
        (USER_GPU.replace("memory_gb: 48", "memory_gb: -1"), "memory_gb"),
        (USER_GPU + "colour: green\n", "colour"),
        ("- 1\n- 2\n", "GPU entry 1"),
        (USER_GPU.replace("id: RTX-6000-Ada", "id: H200"), "reuses the name 'H200' of the known"),
        (USER_GPU.replace("[rtx6000ada]", "[h100]"), "reuses the name 'h100' of the known GPU"),
        (USER_GPU + "link_gbps: 900\n", "interconnect and link_gbps go together"),
        (USER_GPU + "nvlink_gbps: 900\nlink_gbps: 900\n", "not both"),
    ],
)
def test_malformed_gpu_file_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=message):
        GpuCatalog.builtin().with_file(path)


def test_missing_gpu_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match="cannot read GPU file"):
        GpuCatalog.builtin().with_file(tmp_path / "nope.yaml")
