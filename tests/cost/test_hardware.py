"""The hardware catalog: data-sheet figures, user overrides merged field by field, clear
errors, and device-name matching for training logs."""

import pytest

from goldmine.cost.hardware import DTYPES, get_hardware, load_catalog, match_device
from goldmine.errors import GoldmineError

REQUIRED = ("h100-sxm", "h100-pcie", "h200", "a100-80gb", "a100-40gb", "l40s", "l4", "a10g",
            "rtx-4090", "v100", "t4", "tpu-v5e", "cpu")


def test_shipped_catalog_is_complete_and_documented():
    catalog = load_catalog()
    assert set(REQUIRED) <= set(catalog)
    for name, hw in catalog.items():
        assert hw.source and hw.description, name
        assert hw.price_per_gpu_hour and hw.price_per_gpu_hour > 0, name
        if hw.measured:
            continue
        assert hw.peak_tflops and set(hw.peak_tflops) <= set(DTYPES), name
        assert hw.memory_gb > 0 and hw.memory_bandwidth_gbs > 0, name
        # dense, not the doubled structured-sparsity figures: fp32 <= tf32 <= bf16 <= fp8
        peaks = [hw.peak_tflops[d] for d in ("fp32", "tf32", "bf16", "fp8") if d in hw.peak_tflops]
        assert peaks == sorted(peaks), name


@pytest.mark.parametrize("name,dtype,tflops", [
    ("a100-80gb", "bf16", 312), ("a100-80gb", "tf32", 156), ("a100-40gb", "bf16", 312),
    ("h100-sxm", "bf16", 989.4), ("h100-sxm", "fp8", 1978.9), ("h100-sxm", "fp32", 67),
    ("h100-pcie", "bf16", 756), ("h200", "bf16", 989.4), ("l40s", "fp8", 733),
    ("l4", "bf16", 121), ("t4", "fp16", 65), ("v100", "fp16", 125), ("tpu-v5e", "bf16", 197),
])
def test_data_sheet_peaks(name, dtype, tflops):
    assert get_hardware(name).peak(dtype) == pytest.approx(tflops * 1e12)


def test_memory_bandwidth_and_power_from_data_sheets():
    h100, h200, a100 = get_hardware("h100-sxm"), get_hardware("h200"), get_hardware("a100-80gb")
    assert (h100.memory_gb, h100.memory_bandwidth_gbs, h100.power_w) == (80, 3350, 700)
    assert (h200.memory_gb, h200.memory_bandwidth_gbs) == (141, 4800)
    assert (a100.memory_gb, a100.memory_bandwidth_gbs, a100.power_w) == (80, 2039, 400)


def test_a_missing_dtype_names_the_ones_there_are():
    with pytest.raises(GoldmineError, match="dtype: v100 has no published dense bf16 peak; "
                                            "choose one of fp32, fp16"):
        get_hardware("v100").peak("bf16")
    with pytest.raises(GoldmineError, match="dtype: fp8 is not measured on cpu"):
        get_hardware("cpu").peak("fp8")


def test_cpu_is_measured_on_the_spot():
    cpu = get_hardware("cpu")
    assert cpu.measured and cpu.memory_gb > 0
    assert cpu.peak("fp32") > 1e9  # any CPU that runs the tests does more than a GFLOP/s


def test_unknown_hardware_lists_the_known_names():
    with pytest.raises(GoldmineError) as e:
        get_hardware("h900")
    msg = str(e.value)
    assert msg.startswith("hardware: unknown 'h900'; known: ")
    assert all(name in msg for name in REQUIRED)
    assert get_hardware("H100-SXM").name == "h100-sxm"  # names are case-insensitive


def test_user_file_is_merged_field_by_field(tmp_path):
    f = tmp_path / "hw.yaml"
    f.write_text("h100-sxm:\n  price_per_gpu_hour: 1.5\n"
                 "mi300x:\n  description: AMD Instinct MI300X\n"
                 "  peak_tflops: {fp32: 163.4, bf16: 1307.4, fp8: 2614.9}\n"
                 "  memory_gb: 192\n  memory_bandwidth_gbs: 5300\n  power_w: 750\n"
                 "  match: [MI300X]\n")
    h100 = get_hardware("h100-sxm", f)
    assert h100.price_per_gpu_hour == 1.5 and h100.peak("bf16") == pytest.approx(989.4e12)
    assert get_hardware("mi300x", f).memory_gb == 192
    assert match_device("AMD Instinct MI300X", f).name == "mi300x"
    assert get_hardware("h100-sxm").price_per_gpu_hour == 2.99  # the shipped one is untouched
    with pytest.raises(GoldmineError, match="unknown 'mi300x'"):
        get_hardware("mi300x")


@pytest.mark.parametrize("text,message", [
    ("h100-sxm:\n  price_per_gpu_hour: -2\n", "h100-sxm.price_per_gpu_hour: expected a number > 0"),
    ("x1:\n  memory_gb: 10\n", "x1.peak_tflops: give at least one dtype"),
    ("x1:\n  peak_tflops: {bf17: 3}\n  memory_gb: 1\n", "x1.peak_tflops: unknown dtype 'bf17'"),
    ("x1:\n  peak_tflops: {bf16: 3}\n", "x1.memory_gb: expected a number > 0, got None"),
    ("h100-sxm:\n  prize: 3\n", "h100-sxm: unknown field(s) prize"),
    ("- a\n- b\n", "expected a mapping of name: {fields}"),
    ("a: [\n", "not valid YAML"),
])
def test_a_bad_hardware_file_names_the_file_and_field(tmp_path, text, message):
    f = tmp_path / "hw.yaml"
    f.write_text(text)
    with pytest.raises(GoldmineError) as e:
        load_catalog(f)
    assert str(f) in str(e.value) and message in str(e.value)


def test_missing_hardware_file():
    with pytest.raises(GoldmineError, match="hardware_file: nope.yaml: file not found"):
        load_catalog("nope.yaml")


@pytest.mark.parametrize("device,name", [
    ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"), ("NVIDIA A10", "a10"), ("NVIDIA A10G", "a10g"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA A100 80GB PCIe", "a100-80gb"),
    ("NVIDIA A100-PCIE-40GB", "a100-40gb"), ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H200", "h200"), ("Tesla T4", "t4"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("Tesla V100-SXM2-32GB", "v100"),
])
def test_cuda_device_names_match_whole_words(device, name):
    assert match_device(device).name == name


def test_no_match_for_unknown_devices():
    assert match_device("NVIDIA GeForce GTX 1080") is None
