"""Load, soak and disconnect faults, on the real server with the phrase cache off.

--cache-mb 0 makes the engine run for every request (a repeated phrase would otherwise come from
memory).  Texts are short so that hundreds of requests fit the test budget on a 2-core machine;
the figures (first-audio p50/p95, RSS of the server and its engine process) are printed as
``FIGURE`` lines and kept in .cache/reliability-figures.jsonl.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import (
    ProcFigures,
    assert_no_traceback,
    mib,
    proc_figures,
    record,
    wait_idle,
)
from wyoming.client import AsyncTcpClient
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeVoice
from wyoming_helpers import (
    INT8S_SERVER_FLAGS,
    Exchange,
    ServerProcess,
    read_until,
    running_server,
    stream_like_ha,
    synthesize,
)

pytestmark = pytest.mark.slow  # load and soak on a real server

VOICE = "af_jf_alpha"
CLIENTS = 8
REQUESTS_PER_CLIENT = 5  # 40 requests, eight at a time: the same concurrency as 80 took
SOAK_REQUESTS = int(os.environ.get("WKG_SOAK_REQUESTS", "130"))
SOAK_WARMUP = 40
SOAK_SAMPLE_EVERY = 10
# The soak's bar: RSS may grow less than 5% over 450 requests after the warm-up, judged by the
# slope through every sample (a line fit, so one allocator step does not decide), which catches
# the same leak per request as 500 requests end to end did, in 130 with a sample every 10 (a
# 300-request run with fp32 convolutions stepped once, 3.6 MiB at request ~120, and was flat
# otherwise: 1.4% per 450 projected; with int8s, 453-528 MiB, two runs were flat: 0.00-0.03%).
# WKG_SOAK_REQUESTS=500 soaks longer.
SOAK_GROWTH_LIMIT = 0.05
SOAK_GROWTH_OVER = 450
DISCONNECTS = 100
WORDS = [
    "lights",
    "door",
    "window",
    "kitchen",
    "garden",
    "garage",
    "music",
    "alarm",
    "heating",
    "oven",
]


@pytest.fixture(scope="module")
def server(english_model: Path, tmp_path_factory: pytest.TempPathFactory):
    load_dir = tmp_path_factory.mktemp("load")
    with running_server(english_model, load_dir, "--cache-mb", "0", *INT8S_SERVER_FLAGS) as srv:
        yield srv


def _text(client: int, n: int) -> str:
    return f"The {WORDS[(client + n) % len(WORDS)]} is ready."


def test_eight_clients_five_requests_each_mixed_streaming_and_one_shot(server) -> None:
    before = proc_figures(server)

    async def client(i: int) -> list[tuple[str, float | None, list[str]]]:
        out = []
        for n in range(REQUESTS_PER_CLIENT):
            text = _text(i, n)
            if (i + n) % 2:
                ex = await synthesize(server.port, text, VOICE)
                out.append(("one-shot", ex.first_audio(), ex.shape()))
            else:
                async with AsyncTcpClient("127.0.0.1", server.port) as c:
                    ex = await stream_like_ha(c, text, VOICE, delay=0.0, seed=n)
                out.append(("stream", ex.first_audio(), ex.shape()))
        return out

    async def scenario() -> list[list[tuple[str, float | None, list[str]]]]:
        return await asyncio.gather(*(client(i) for i in range(CLIENTS)))

    started = time.monotonic()
    results = [r for per_client in asyncio.run(scenario()) for r in per_client]
    elapsed = time.monotonic() - started
    after_health = wait_idle(server)
    after = proc_figures(server)
    tails = {
        "one-shot": ["audio-start", "audio-chunk+", "audio-stop"],
        "stream": ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"],
    }
    bad = [(kind, shape) for kind, _, shape in results if shape != tails[kind]]
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT and not bad, bad
    firsts = np.array([f for _, f, _ in results if f is not None])
    assert len(firsts) == len(results)
    record(
        f"load_{CLIENTS}x{REQUESTS_PER_CLIENT}",
        {
            "requests": len(results),
            "seconds": round(elapsed, 1),
            "first_audio_p50_s": round(float(np.percentile(firsts, 50)), 3),
            "first_audio_p95_s": round(float(np.percentile(firsts, 95)), 3),
            "rss_before_mib": {"server": mib(before.server_rss), "engine": mib(before.engine_rss)},
            "rss_after_mib": {"server": mib(after.server_rss), "engine": mib(after.engine_rss)},
            "load_avg": os.getloadavg()[0],
        },
    )
    assert after_health["active_jobs"] == 0 and after_health["state"] == "ready"
    assert after_health["engine_restarts"] == 0
    assert_no_traceback(server)


async def _vanish_mid_stream(port: int, i: int) -> str:
    """A streaming client that goes away without a goodbye in the middle of its request: one in
    four after its first audio arrived, the others at once or a moment after sending text."""
    client = AsyncTcpClient("127.0.0.1", port)
    await client.connect()
    try:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name=VOICE)).event())
        await client.write_event(SynthesizeChunk(text=f"Client {i} says hello. And ").event())
        if i % 4 == 0:
            await read_until(client, Exchange(), "audio-chunk")
            return "after first audio"
        await asyncio.sleep(0.05 * (i % 4 - 1))
        return "before audio"
    finally:
        client._writer.transport.abort()  # a reset, as a phone leaving the Wi-Fi would
        await client.disconnect()


def _settled(srv: ServerProcess, before: ProcFigures) -> ProcFigures:
    """Figures once closing sockets have been reaped (a few seconds at most)."""
    deadline = time.monotonic() + 10
    after = proc_figures(srv)
    while time.monotonic() < deadline and (
        after.server_fds > before.server_fds or after.server_threads > before.server_threads
    ):
        time.sleep(0.2)
        after = proc_figures(srv)
    return after


def test_a_hundred_clients_vanishing_mid_stream_leak_nothing(server) -> None:
    wait_idle(server)
    before = proc_figures(server)
    tasks_before = server.health().get("tasks")

    async def scenario() -> list[str]:
        out: list[str] = []
        for start in range(0, DISCONNECTS, 20):
            out += await asyncio.gather(
                *(_vanish_mid_stream(server.port, i) for i in range(start, start + 20))
            )
        return out

    whens = asyncio.run(scenario())
    assert len(whens) == DISCONNECTS
    health = wait_idle(server)
    assert health["active_jobs"] == 0 and health["connections"] == 0, health
    assert health["state"] == "ready" and health["engine_restarts"] == 0
    after = _settled(server, before)
    figures = {
        "clients": DISCONNECTS,
        "after_first_audio": whens.count("after first audio"),
        "threads": [before.server_threads, after.server_threads],
        "fds": [before.server_fds, after.server_fds],
        "tasks": [tasks_before, health.get("tasks")],
    }
    record("disconnects", figures)
    assert after.server_threads <= before.server_threads, figures
    assert after.server_fds <= before.server_fds, figures
    assert "tasks" in health, "/health does not report the server's asyncio task count"
    assert health["tasks"] <= tasks_before, figures
    ex = asyncio.run(synthesize(server.port, "Still here.", VOICE))
    assert ex.shape() == ["audio-start", "audio-chunk+", "audio-stop"]
    assert_no_traceback(server)


def test_soak_sequential_requests(server) -> None:
    """RSS of the server plus its engine grows less than SOAK_GROWTH_LIMIT per SOAK_GROWTH_OVER
    requests after the warm-up (the slope through samples every SOAK_SAMPLE_EVERY), and less
    than that from the warm-up to the end."""
    texts = [f"Hi {w}." for w in WORDS]
    samples: list[tuple[int, float, float]] = []  # (requests done, server MiB, engine MiB)

    async def run() -> list[list[str]]:
        shapes = []
        for k in range(SOAK_REQUESTS):
            ex = await synthesize(server.port, texts[k % len(texts)], VOICE)
            shapes.append(ex.shape())
            if k + 1 >= SOAK_WARMUP and (k + 1) % SOAK_SAMPLE_EVERY == 0:
                fig = await asyncio.to_thread(proc_figures, server)
                samples.append((k + 1, mib(fig.server_rss), mib(fig.engine_rss)))
                print(f"soak {samples[-1]}", flush=True)
        return shapes

    started = time.monotonic()
    shapes = asyncio.run(run())
    elapsed = time.monotonic() - started
    want = ["audio-start", "audio-chunk+", "audio-stop"]
    assert len(shapes) == SOAK_REQUESTS and all(s == want for s in shapes)
    done = np.array([k for k, _, _ in samples], dtype=float)
    rss = np.array([server_mib + engine_mib for _, server_mib, engine_mib in samples])
    warm, end = float(rss[0]), float(rss[-1])  # after the warm-up, at the end
    slope = float(np.polyfit(done, rss, 1)[0])  # MiB per request
    projected = slope * SOAK_GROWTH_OVER / warm
    growth = (end - warm) / warm
    record(
        "soak",
        {
            "requests": SOAK_REQUESTS,
            "seconds": round(elapsed, 1),
            "rss_after_warmup_mib": round(warm, 1),
            "rss_end_mib": round(end, 1),
            "growth_percent": round(100 * growth, 2),
            "kib_per_request": round(1024 * slope, 2),
            f"growth_percent_per_{SOAK_GROWTH_OVER}": round(100 * projected, 2),
            "samples": samples,
        },
    )
    assert projected < SOAK_GROWTH_LIMIT and growth < SOAK_GROWTH_LIMIT
    assert server.health()["engine_restarts"] == 0
    assert_no_traceback(server)
