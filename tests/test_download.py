"""Downloads against a real aiohttp server on 127.0.0.1 that behaves like Hugging Face.

The server answers /resolve/main/<file> with a 302 to /cdn/<file> carrying X-Linked-Etag
(sha256) and X-Linked-Size, as the hub does for LFS files, and serves byte ranges.  Faults are
switched on per test: a connection cut mid-body, corrupted bytes, HTTP errors, no length.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from wyoming_kokoro_gguf import download

PAYLOAD = random.Random(6).randbytes(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class FakeHub:
    """Behaviour switches and a record of what the client asked for."""

    payload: bytes = PAYLOAD
    cut_first_at: int | None = None  # close the connection after this many bytes, once
    corrupt: bool = False
    status: int | None = None
    chunked: bool = False  # no Content-Length
    ignore_range: bool = False
    ranges: list[str | None] = field(default_factory=list)
    base: str = ""

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        if self.status:
            return web.Response(status=self.status, text="no")
        name = request.match_info["name"]
        return web.Response(
            status=302,
            headers={
                "Location": f"/cdn/{name}",
                "X-Linked-Etag": f'"{hashlib.sha256(self.payload).hexdigest()}"',
                "X-Linked-Size": str(len(self.payload)),
            },
        )

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        data = bytearray(self.payload)
        if self.corrupt:
            data[len(data) // 2] ^= 0xFF
        rng = request.headers.get("Range")
        self.ranges.append(rng)
        start = 0
        if rng and not self.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return web.Response(status=416)
        body = bytes(data[start:])
        resp = web.StreamResponse(status=206 if start else 200)
        if start:
            resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if self.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(body)
        await resp.prepare(request)
        if self.cut_first_at is not None:
            cut, self.cut_first_at = self.cut_first_at, None
            await resp.write(body[:cut])
            request.transport.close()
            return resp
        for i in range(0, len(body), 256 * 1024):
            await resp.write(body[i : i + 256 * 1024])
        await resp.write_eof()
        return resp


@pytest.fixture
async def hub():
    fake = FakeHub()
    app = web.Application()
    app.router.add_get("/resolve/main/{name}", fake.resolve)
    app.router.add_get("/cdn/{name}", fake.cdn)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.base = f"http://127.0.0.1:{port}/resolve/main"
    yield fake
    await runner.cleanup()


async def test_download_verifies_sha_from_hub_headers(hub, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="wyoming_kokoro_gguf.download")
    dest = tmp_path / "Kokoro_espeak_Q4.gguf"
    path = await download.fetch_file(f"{hub.base}/{dest.name}", dest)
    assert path == dest and dest.read_bytes() == PAYLOAD
    assert not (tmp_path / (dest.name + ".part")).exists()
    text = caplog.text
    assert "sha256 verified" in text
    assert "%" in text and "downloading Kokoro_espeak_Q4.gguf" in text  # progress lines


async def test_interrupted_transfer_resumes_with_range(hub, tmp_path):
    hub.cut_first_at = 1_000_000
    dest = tmp_path / "model.gguf"
    await download.fetch_file(f"{hub.base}/model.gguf", dest)
    assert dest.read_bytes() == PAYLOAD
    assert hub.ranges[0] is None
    assert hub.ranges[1] == "bytes=1000000-"  # resumed where the cut left it


async def test_interrupted_download_resumes_on_next_start(hub, tmp_path):
    hub.cut_first_at = 700_000
    dest = tmp_path / "model.gguf"
    with pytest.raises(download.DownloadError, match="next start resumes"):
        await download.fetch_file(f"{hub.base}/model.gguf", dest, retries=0)
    part = tmp_path / "model.gguf.part"
    assert part.stat().st_size == 700_000 and not dest.exists()
    await download.fetch_file(f"{hub.base}/model.gguf", dest)
    assert hub.ranges[-1] == "bytes=700000-"
    assert dest.read_bytes() == PAYLOAD and not part.exists()


async def test_stale_partial_file_is_detected_and_fetched_again(hub, tmp_path):
    dest = tmp_path / "model.gguf"
    (tmp_path / "model.gguf.part").write_bytes(b"\0" * 5000)  # bytes of some other file
    await download.fetch_file(f"{hub.base}/model.gguf", dest)
    assert hub.ranges == ["bytes=5000-", None]
    assert dest.read_bytes() == PAYLOAD


async def test_corrupted_download_is_rejected_and_removed(hub, tmp_path):
    hub.corrupt = True
    dest = tmp_path / "model.gguf"
    with pytest.raises(download.VerifyError, match="corrupt.*sha256"):
        await download.fetch_file(f"{hub.base}/model.gguf", dest)
    assert list(tmp_path.iterdir()) == []


async def test_size_mismatch_is_rejected(hub, tmp_path):
    dest = tmp_path / "model.gguf"
    with pytest.raises(download.VerifyError, match="expected 12345"):
        await download.fetch_file(f"{hub.base}/model.gguf", dest, expected_size=12345)
    assert list(tmp_path.iterdir()) == []


async def test_known_sha_mismatch_without_hub_header(hub, tmp_path):
    dest = tmp_path / "model.gguf"
    url = hub.base.replace("/resolve/main", "/cdn") + "/model.gguf"  # no X-Linked-Etag here
    with pytest.raises(download.VerifyError, match="sha256"):
        await download.fetch_file(url, dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []
    await download.fetch_file(url, dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_server_error_is_one_clear_line(hub, tmp_path, status):
    hub.status = status
    with pytest.raises(download.DownloadError) as info:
        await download.fetch_file(f"{hub.base}/model.gguf", tmp_path / "model.gguf")
    assert f"HTTP {status}" in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


async def test_server_ignoring_range_restarts_cleanly(hub, tmp_path):
    hub.ignore_range = True
    (tmp_path / "model.gguf.part").write_bytes(PAYLOAD[:4096])
    await download.fetch_file(f"{hub.base}/model.gguf", tmp_path / "model.gguf")
    assert (tmp_path / "model.gguf").read_bytes() == PAYLOAD


async def test_unreachable_host_is_offline_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(download.OfflineError, match="cannot reach 127.0.0.1"):
        await download.fetch_file(f"http://127.0.0.1:{port}/x.gguf", tmp_path / "x.gguf")
    assert list(tmp_path.iterdir()) == []


async def test_fetch_variant_uses_published_name(hub, tmp_path, monkeypatch):
    monkeypatch.setenv(download.BASE_URL_ENV, hub.base)
    path = await download.fetch_variant("q8_0", tmp_path)
    assert path.name == "Kokoro_espeak_Q8.gguf" and path.read_bytes() == PAYLOAD
    assert download.variant_url("f32", "https://h/x") == "https://h/x/Kokoro_espeak.gguf"
    assert download.variant_url("q4_0", download.HF_BASE_URL) == (
        "https://huggingface.co/mmwillet2/Kokoro_GGUF/resolve/main/Kokoro_espeak_Q4.gguf"
    )


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str):
    """A real tmpfs of the given size (needs root); the test is skipped where mount is denied."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


async def test_disk_too_small_refused_up_front(hub, tmp_path):
    with small_tmpfs(tmp_path, "2m") as mnt:
        with pytest.raises(download.DiskFullError, match="not enough disk space.*needs 3 MB"):
            await download.fetch_file(f"{hub.base}/model.gguf", mnt / "model.gguf")
        assert list(mnt.iterdir()) == []


async def test_disk_filling_up_midway_leaves_no_partial_file(hub, tmp_path):
    hub.chunked = True  # no Content-Length (and no hub headers): the up-front check cannot know
    url = hub.base.replace("/resolve/main", "/cdn") + "/model.gguf"
    with small_tmpfs(tmp_path, "2m") as mnt:
        with pytest.raises(download.DiskFullError, match="disk filled up.*removed"):
            await download.fetch_file(url, mnt / "model.gguf")
        assert list(mnt.iterdir()) == []
