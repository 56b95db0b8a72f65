"""Host probe: parsers fed with real-format /proc and cgroup files, and the live probe here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wyoming_kokoro_gguf.host import profile as host

# ---------------------------------------------------------------- sample files (written for tests)


def arm_cpuinfo(features: str, part: str, variant: str, revision: str, model: str, n: int = 4):
    """/proc/cpuinfo as a 64-bit Raspberry Pi OS kernel prints it."""
    cpus = "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: {variant}\n"
        f"CPU part\t: {part}\nCPU revision\t: 1\n\n"
        for i in range(n)
    )
    trailer = f"Revision\t: {revision}\nSerial\t\t: 10000000a1b2c3d4\nModel\t\t: {model}\n"
    return cpus + trailer


PI4_CPUINFO = arm_cpuinfo(
    "fp asimd evtstrm crc32 cpuid", "0xd08", "0x0", "b03114", "Raspberry Pi 4 Model B Rev 1.4"
).replace("Revision", "Hardware\t: BCM2835\nRevision", 1)
PI5_CPUINFO = arm_cpuinfo(
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
    "dcpop asimddp",
    "0xd0b",
    "0x4",
    "d04170",
    "Raspberry Pi 5 Model B Rev 1.0",
)
# Home Assistant Green: Rockchip RK3566, 4x Cortex-A55 (no Model line on this kernel).
GREEN_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
    "crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x2\nCPU part\t: 0xd05\nCPU revision\t: 0\n\n"
    for i in range(4)
)

X86_FLAGS_TGL = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx "
    "fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs "
    "bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 "
    "monitor ds_cpl vmx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid sse4_1 sse4_2 x2apic movbe "
    "popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault "
    "epb cat_l2 invpcid_single cdp_l2 ssbd ibrs ibpb stibp ibrs_enhanced tpr_shadow flexpriority "
    "ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdt_a avx512f avx512dq "
    "rdseed adx smap avx512ifma clflushopt clwb intel_pt avx512cd sha_ni avx512bw avx512vl "
    "xsaveopt xsavec xgetbv1 xsaves split_lock_detect dtherm ida arat pln pts hwp hwp_notify "
    "hwp_act_window hwp_epp hwp_pkg_req avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes "
    "vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid movdiri movdir64b fsrm "
    "avx512_vp2intersect md_clear ibt flush_l1d arch_capabilities"
)


def x86_cpuinfo(model: str, flags: str, cores: int, threads_per_core: int) -> str:
    """/proc/cpuinfo of an x86 box; hyper-threads share a core id."""
    blocks = []
    for i in range(cores * threads_per_core):
        blocks.append(
            f"processor\t: {i}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 140\n"
            f"model name\t: {model}\nstepping\t: 1\ncpu MHz\t\t: 2400.000\n"
            f"cache size\t: 8192 KB\nphysical id\t: 0\nsiblings\t: {cores * threads_per_core}\n"
            f"core id\t\t: {i % cores}\ncpu cores\t: {cores}\napicid\t\t: {i}\n"
            f"fpu\t\t: yes\nflags\t\t: {flags}\nbogomips\t: 4838.40\n"
            "address sizes\t: 39 bits physical, 48 bits virtual\npower management:\n\n"
        )
    return "".join(blocks)


TGL_CPUINFO = x86_cpuinfo("11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz", X86_FLAGS_TGL, 4, 2)
N100_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse "
    "sse2 ss ht syscall nx rdtscp lm constant_tsc pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 "
    "x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms "
    "invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves avx_vnni umip "
    "waitpkg gfni vaes vpclmulqdq rdpid movdiri movdir64b fsrm serialize arch_lbr"
)
N100_CPUINFO = x86_cpuinfo("Intel(R) N100", N100_FLAGS, 4, 1)

MEMINFO_PI4_2G = """MemTotal:        1894396 kB
MemFree:          911236 kB
MemAvailable:    1377544 kB
Buffers:           44320 kB
Cached:           512076 kB
SwapCached:            0 kB
"""

# ---------------------------------------------------------------- cpuinfo


def test_pi4_cpuinfo():
    info = host.parse_cpuinfo(PI4_CPUINFO)
    assert info.arch == "aarch64"
    assert info.model == "Cortex-A72"
    assert info.board == "Raspberry Pi 4 Model B Rev 1.4"
    assert info.logical_cpus == info.physical_cores == 4
    assert {"asimd", "crc32"} <= info.flags and "asimddp" not in info.flags


def test_pi5_cpuinfo():
    info = host.parse_cpuinfo(PI5_CPUINFO)
    assert info.arch == "aarch64" and info.model == "Cortex-A76"
    assert info.board == "Raspberry Pi 5 Model B Rev 1.0"
    assert {"asimddp", "asimdhp", "fphp"} <= info.flags and "i8mm" not in info.flags


def test_ha_green_cpuinfo():
    info = host.parse_cpuinfo(GREEN_CPUINFO)
    assert info.model == "Cortex-A55" and info.board == "" and info.physical_cores == 4


def test_x86_vnni_cpuinfo_counts_physical_cores():
    info = host.parse_cpuinfo(TGL_CPUINFO)
    assert info.arch == "x86_64" and "i5-1135G7" in info.model
    assert info.logical_cpus == 8 and info.physical_cores == 4  # hyper-threads share a core
    assert {"avx2", "fma", "f16c", "avx512f", "avx512_vnni"} <= info.flags
    n100 = host.parse_cpuinfo(N100_CPUINFO)
    assert n100.physical_cores == 4 and "avx_vnni" in n100.flags and "avx512f" not in n100.flags


def test_device_tree_model_strips_nul():
    assert host.parse_device_tree_model(b"Raspberry Pi 5 Model B Rev 1.0\x00") == (
        "Raspberry Pi 5 Model B Rev 1.0"
    )


def test_meminfo():
    total, available = host.parse_meminfo(MEMINFO_PI4_2G)
    assert total == 1894396 * 1024 and available == 1377544 * 1024
    old_kernel = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 200 kB\n"
    assert host.parse_meminfo(old_kernel) == (1000 * 1024, 310 * 1024)


# ---------------------------------------------------------------- cgroups


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


V2_MOUNTINFO = (
    "22 1 0:21 / / rw,relatime - overlay overlay rw\n"
    "30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate\n"
)


def test_cgroup_v2_container_limits(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "proc/self/mountinfo": V2_MOUNTINFO,
            "sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
            "sys/fs/cgroup/cpu.max": "150000 100000\n",
            "sys/fs/cgroup/memory.max": "536870912\n",
            "sys/fs/cgroup/memory.current": "10485760\n",
        },
    )
    limits = host.read_cgroup_limits(root)
    assert limits.version == 2
    assert limits.cpu_quota == pytest.approx(1.5)
    assert limits.memory_limit == 512 << 20 and limits.memory_usage == 10 << 20


def test_cgroup_v2_nested_limit_on_parent(tmp_path):
    # Host view (no cgroup namespace): the limit sits on the parent slice of our cgroup.
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/system.slice/kokoro.service\n",
            "proc/self/mountinfo": V2_MOUNTINFO,
            "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
            "sys/fs/cgroup/system.slice/cpu.max": "max 100000\n",
            "sys/fs/cgroup/system.slice/memory.max": "1073741824\n",
            "sys/fs/cgroup/system.slice/kokoro.service/cpu.max": "200000 100000\n",
            "sys/fs/cgroup/system.slice/kokoro.service/memory.max": "max\n",
            "sys/fs/cgroup/system.slice/kokoro.service/memory.current": "1048576\n",
        },
    )
    limits = host.read_cgroup_limits(root)
    assert limits.cpu_quota == pytest.approx(2.0)
    assert limits.memory_limit == 1 << 30 and limits.memory_usage == 1 << 20


def test_cgroup_v1_docker_limits(tmp_path):
    mountinfo = (
        "600 500 0:50 / / rw - overlay overlay rw\n"
        "610 609 0:31 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n"
        "611 609 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
    )
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
            "proc/self/mountinfo": mountinfo,
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "50000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "805306368\n",
            "sys/fs/cgroup/memory/memory.usage_in_bytes": "52428800\n",
        },
    )
    limits = host.read_cgroup_limits(root)
    assert limits.version == 1
    assert limits.cpu_quota == pytest.approx(0.5)
    assert limits.memory_limit == 768 << 20 and limits.memory_usage == 50 << 20


def test_cgroup_v1_unlimited(tmp_path):
    mountinfo = (
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    )
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/process_api/87aa\n1:cpu:/\n",
            "proc/self/mountinfo": mountinfo,
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
            "sys/fs/cgroup/memory/process_api/87aa/memory.limit_in_bytes": "9223372036854771712\n",
            "sys/fs/cgroup/memory/process_api/87aa/memory.usage_in_bytes": "13631488\n",
        },
    )
    limits = host.read_cgroup_limits(root)
    assert limits.version == 1
    assert limits.cpu_quota is None and limits.memory_limit is None
    assert limits.memory_usage == 13 << 20  # read from our own cgroup, not the root


def test_usable_cores_takes_the_tightest():
    assert host.usable_cores(4, 8, None, None) == (4, "4 physical cores")
    assert host.usable_cores(4, 8, 2, None)[0] == 2
    assert host.usable_cores(4, 8, None, 1.5) == (1, "cgroup CPU quota of 1.5 CPUs")
    assert host.usable_cores(4, 4, None, 0.2)[0] == 1


# What llama-cpp-python 0.3.36 (built from source) printed on the 2-core Xeon used for development.
GGML_XEON = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | LLAMAFILE = 1 | "
    "OPENMP = 1 | REPACK = 1 |"
)


def test_ggml_features_use_our_names():
    xeon = host.ggml_features(host.parse_ggml_system_info(GGML_XEON))
    assert {"avx512f", "avx512_vnni", "avx_vnni", "avx2", "fma", "f16c"} <= set(xeon)
    arm = "CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | MATMUL_INT8 = 0 | SVE = 0 |"
    assert host.ggml_features(host.parse_ggml_system_info(arm)) == ["asimd", "asimddp", "asimdhp"]


def test_ggml_system_info():
    text = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512_VNNI = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
    parsed = host.parse_ggml_system_info(text)
    assert parsed["avx2"] == 1 and parsed["avx512_vnni"] == 1 and parsed["sse3"] == 1


# ---------------------------------------------------------------- whole probe


def test_probe_of_a_pi5_container_root(tmp_path):
    root = write_tree(
        tmp_path,
        {
            "proc/cpuinfo": PI5_CPUINFO,
            "proc/meminfo": "MemTotal: 8245000 kB\nMemAvailable: 7000000 kB\n",
            "proc/device-tree/model": b"Raspberry Pi 5 Model B Rev 1.0\x00",
            "proc/self/cgroup": "0::/\n",
            "proc/self/mountinfo": V2_MOUNTINFO,
            "sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/memory.max": "1073741824\n",
            "sys/fs/cgroup/memory.current": "104857600\n",
        },
    )
    profile = host.probe(data_dir=tmp_path, root=root)
    assert profile.arch == "aarch64" and profile.cpu_model == "Cortex-A76"
    assert profile.board == "Raspberry Pi 5 Model B Rev 1.0"
    assert profile.int8_dot and profile.fp16_arith
    assert profile.usable_cores == 4 and profile.cgroup_version == 2
    assert profile.mem_available_mb == 7000000 // 1024
    assert profile.effective_mem_available_mb == 1024 - 100  # the container limit wins
    assert profile.disk_free_mb is not None and profile.disk_free_mb > 0


def test_probe_this_machine_is_json_serialisable(tmp_path):
    profile = host.probe(data_dir=tmp_path / "not-yet-created")
    data = json.loads(json.dumps(profile.as_dict()))
    assert data["arch"] in ("x86_64", "aarch64")
    assert data["usable_cores"] >= 1 and data["mem_total_mb"] > 0
    assert "CPUExecutionProvider" in data["ort_providers"]
    assert data["disk_free_mb"] > 0  # nearest existing parent of the data dir


def test_simulated_profile():
    p = host.simulate("arm64", ["asimddp"], cores=4, mem_mb=8192)
    assert p.arch == "aarch64" and "asimd" in p.features and p.int8_dot
    assert p.effective_mem_available_mb == int(8192 * host.SIMULATED_FREE_SHARE)
    c = host.simulate("amd64", ["avx2"], cores=8, mem_mb=16384, cgroup_mem_mb=512, cgroup_cpus=2)
    assert c.effective_mem_available_mb == 512 and c.usable_cores == 2 and not c.int8_dot


def test_probe_names_the_file_the_server_would_run(tmp_path):
    """#18: an offline default converted earlier (kokoro-pypi-*.gguf) is what the server runs;
    the probe goes through the same resolution (host.models.locate) and names it, instead of
    saying the published file is "not on disk yet"."""
    import subprocess
    import sys

    (tmp_path / "kokoro-pypi-q8_0.gguf").write_bytes(b"GGUF" + bytes(60))
    cmd = [sys.executable, "-m", "wyoming_kokoro_gguf.probe", "--json", "--mem-mb", "2048"]
    done = subprocess.run(
        [*cmd, "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    out = json.loads(done.stdout)
    assert out["model"]["how"] == "offline default", out["model"]
    assert (
        out["model"]["path"] == out["plan"]["model_path"] == str(tmp_path / "kokoro-pypi-q8_0.gguf")
    )
    assert out["plan"]["fetch"] is False
    # nothing on disk: the probe says what the server would download, and where
    empty = tmp_path / "empty"
    done = subprocess.run(
        [*cmd, "--data-dir", str(empty)], capture_output=True, text=True, timeout=120
    )
    out = json.loads(done.stdout)
    assert out["model"]["how"] == "download" and out["model"]["path"] is None
    assert str(empty) in out["model"]["note"]


def test_cpu_speed_basis_names_where_it_was_measured():
    """#18: "measured here ... Xeon" on an AMD EPYC: the reason names this CPU and where the
    figure was measured."""
    from wyoming_kokoro_gguf.host import plan

    epyc = host.simulate(
        "x86_64", ["avx2", "avx512f"], cores=2, mem_mb=8192, cpu_model="AMD EPYC 7B13"
    )
    reason = plan.make_plan(epyc).reasons["speed"]
    assert "AMD EPYC 7B13" in reason and "measured here" not in reason
    assert "Intel Xeon VM" in reason
