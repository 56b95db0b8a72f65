"""Model files on demand: resumable, verified downloads of the published Kokoro GGUF files.

Why not write straight to the final path (as wyoming-piper does): an interrupted download must
never look like a model.  Bytes go to ``<name>.part``; a later attempt resumes it with an HTTP
Range request; the file is renamed into place only after its size (and sha256, when the server
or our table knows it) checked out.  A download that cannot fit on the disk is refused before it
starts, or cleaned up when the disk fills mid-way, so no partial file is left behind.

Real networks: the client honours ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` (aiohttp's
``trust_env``), and hub.py supplies ``HF_ENDPOINT`` and the ``HF_TOKEN`` as huggingface_hub
reads them.  huggingface_hub itself is not used: it would add ~27 MB of packages for what these
few lines do (docs/DOWNLOADS.md).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import netrc
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; downloads are not serialized there
    fcntl = None  # type: ignore[assignment]

from wyoming_kokoro_gguf.host import hub
from wyoming_kokoro_gguf.host.plan import VARIANTS

if TYPE_CHECKING:
    import aiohttp

_LOGGER = logging.getLogger(__name__)

HF_REPO = hub.HF_REPO
HF_BASE_URL = hub.repo_url(hub.DEFAULT_ENDPOINT)
BASE_URL_ENV = hub.BASE_URL_ENV  # a folder of the files (a test server) instead of the hub
# sha256 of published files we have verified ourselves; Hugging Face also sends it for LFS
# files (X-Linked-Etag), which is what is checked when this table has no entry.
KNOWN_SHA256: dict[str, str] = {}
DISK_RESERVE_BYTES = 16 << 20  # leave this much free after a download
CHUNK_BYTES = 1 << 20
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(RuntimeError):
    """A download failed; the message is one line for the user."""


class OfflineError(DownloadError):
    """The server could not be reached at all (no network, DNS failure, refused)."""


class DiskFullError(DownloadError):
    """Not enough room on the disk; nothing partial is left behind."""


class VerifyError(DownloadError):
    """The downloaded bytes do not match the expected size or sha256."""


def base_url() -> str:
    """WYOMING_KOKORO_GGUF_BASE_URL, else <HF_ENDPOINT>/<repo>/resolve/main."""
    try:
        return hub.base_url()
    except hub.HubSettingError as err:
        raise DownloadError(str(err)) from None


def variant_url(variant: str, base: str | None = None) -> str:
    """URL of a published variant (f32, f16, q8_0, q5_0, q4_0)."""
    if variant not in VARIANTS:
        raise DownloadError(f"unknown variant {variant!r}: {', '.join(VARIANTS)}")
    return f"{(base or base_url()).rstrip('/')}/{VARIANTS[variant].filename}"


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _free_bytes(directory: Path) -> int:
    return shutil.disk_usage(directory).free


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _linked_sha256(resp: aiohttp.ClientResponse) -> str | None:
    """Hugging Face's X-Linked-Etag (the LFS sha256), on the redirect or the final response."""
    for r in (*resp.history, resp):
        for key in ("X-Linked-Etag", "X-Xet-Hash-Sha256"):
            value = r.headers.get(key, "").strip().strip('"').removeprefix("W/").strip('"').lower()
            if _SHA256_RE.match(value):
                return value
    return None


def _total_size(resp: aiohttp.ClientResponse, offset: int) -> int | None:
    content_range = resp.headers.get("Content-Range", "")
    match = re.match(r"bytes\s+\d+-\d+/(\d+)", content_range)
    if resp.status == 206 and match:
        return int(match.group(1))
    if resp.content_length is not None:
        return resp.content_length + (offset if resp.status == 206 else 0)
    for r in (*resp.history, resp):
        linked = r.headers.get("X-Linked-Size", "")
        if linked.isdigit():
            return int(linked)
    return None


class _Progress:
    """Logs every 10% (or every 64 MB when the size is unknown)."""

    def __init__(self, name: str, total: int | None, start: int) -> None:
        self.name, self.total, self.done = name, total, start
        self.started = time.monotonic()
        self.start_bytes = start
        self.next_mark = self._mark_after(start)

    def _mark_after(self, done: int) -> int:
        if self.total:
            step = max(self.total // 10, 1)
            return (done // step + 1) * step
        return (done // (64 << 20) + 1) * (64 << 20)

    def add(self, n: int) -> None:
        self.done += n
        if self.done >= self.next_mark and (not self.total or self.done < self.total):
            self.log()
            self.next_mark = self._mark_after(self.done)

    def log(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (self.done - self.start_bytes) / elapsed / (1 << 20)
        mb = self.done / (1 << 20)
        if self.total:
            pct = 100 * self.done / self.total
            _LOGGER.info(
                "downloading %s: %.0f%% (%.1f of %.1f MB, %.1f MB/s)",
                self.name,
                pct,
                mb,
                self.total / (1 << 20),
                rate,
            )
        else:
            _LOGGER.info("downloading %s: %.1f MB (%.1f MB/s)", self.name, mb, rate)


async def _attempt(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    expected_size: int | None,
    sha256: str | None,
    auth: dict[str, str],
) -> tuple[int, str | None, str]:
    """One request: append to the .part file. Returns (total size, expected sha256, digest)."""
    part = _part_path(dest)
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        _remove(part)
        offset = 0
    headers = {"Accept-Encoding": "identity", **auth}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    async with session.get(url, headers=headers) as resp:
        if resp.status == 416 and offset:
            # Nothing left to fetch: the part file may already be complete; verify it below.
            total = expected_size if expected_size is not None else offset
            digest = await asyncio.to_thread(_hash_file, part)
            return total, sha256 or _linked_sha256(resp), digest
        if resp.status == 404:
            raise DownloadError(f"{url}: not found on the server (HTTP 404)")
        if resp.status >= 400:
            raise DownloadError(
                f"{url}: the server answered HTTP {resp.status} {resp.reason or ''}".strip()
            )
        if resp.status != 206:
            offset = 0  # the server ignored the Range request: start over
        total = _total_size(resp, offset)
        if expected_size is not None and total is not None and total != expected_size:
            raise VerifyError(
                f"{dest.name}: the server offers {total} bytes, expected {expected_size}"
            )
        if total is None:
            total = expected_size
        want_sha = sha256 or _linked_sha256(resp)
        need = (total - offset) if total is not None else 0
        free = _free_bytes(part.parent)
        if total is not None and free < need + DISK_RESERVE_BYTES:
            _remove(part)
            raise DiskFullError(
                f"not enough disk space in {part.parent} for {dest.name}: it needs "
                f"{need / (1 << 20):.0f} MB, {free / (1 << 20):.0f} MB free"
            )
        hasher = hashlib.sha256()
        if offset:
            await asyncio.to_thread(_hash_into, part, hasher)
            _LOGGER.info("resuming %s at %.1f MB", dest.name, offset / (1 << 20))
        progress = _Progress(dest.name, total, offset)
        mode = "ab" if offset else "wb"
        try:
            with open(part, mode) as out:
                async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
                    out.write(chunk)
                    hasher.update(chunk)
                    progress.add(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                _remove(part)
                raise DiskFullError(
                    f"the disk filled up while downloading {dest.name} to {part.parent}; "
                    "the partial file was removed"
                ) from None
            raise
        progress.log()
        return (total if total is not None else progress.done), want_sha, hasher.hexdigest()


def _hash_into(path: Path, hasher: Any) -> None:
    with open(path, "rb") as src:
        while chunk := src.read(CHUNK_BYTES):
            hasher.update(chunk)


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    _hash_into(path, hasher)
    return hasher.hexdigest()


async def fetch_file(
    url: str,
    dest: Path | str,
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    session: aiohttp.ClientSession | None = None,
    retries: int = 3,
    connect_timeout: float = 15.0,
    read_timeout: float = 60.0,
) -> Path:
    """Download url to dest (resuming dest.part), verify, then rename into place.

    Retries broken transfers (resuming each time); raises OfflineError when the host cannot be
    reached, DiskFullError, VerifyError, or DownloadError with one clear line.  Downloads into
    one directory take turns (a lock on the directory), so two server processes starting at
    once never write the same .part file; the second one then finds the file ready.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(dest.parent, os.O_RDONLY) if fcntl is not None else None
    try:
        if lock_fd is not None:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _LOGGER.info("another download into %s is running; waiting for it", dest.parent)
                await asyncio.to_thread(fcntl.flock, lock_fd, fcntl.LOCK_EX)
                if dest.is_file():
                    return dest
        return await _fetch_unlocked(
            url,
            dest,
            expected_size=expected_size,
            sha256=sha256,
            session=session,
            retries=retries,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # releases the lock


async def _fetch_unlocked(
    url: str,
    dest: Path,
    *,
    expected_size: int | None,
    sha256: str | None,
    session: aiohttp.ClientSession | None,
    retries: int,
    connect_timeout: float,
    read_timeout: float,
) -> Path:
    # aiohttp is imported here, not at the top: the engine process resolves its model through
    # this module and loads the HTTP client only when it really downloads.
    import aiohttp

    # A connection that cannot even be opened in time (a firewall dropping packets) is offline too.
    connect_timeouts: tuple[type[BaseException], ...] = tuple(
        t for t in (getattr(aiohttp, "ConnectionTimeoutError", None),) if t is not None
    )
    sha256 = (sha256 or KNOWN_SHA256.get(dest.name) or "").lower() or None
    auth = _auth_for(url)
    own_session = session is None
    if session is None:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        # trust_env: HTTP(S)_PROXY and NO_PROXY from the environment, as curl and pip do.
        session = aiohttp.ClientSession(timeout=timeout, trust_env=True)
    part = _part_path(dest)
    restarted = False
    try:
        attempt = 0
        while True:
            attempt += 1
            resumed = part.exists() and part.stat().st_size > 0
            try:
                total, want_sha, digest = await _attempt(
                    session, url, dest, expected_size, sha256, auth
                )
            except aiohttp.ClientProxyConnectionError as err:
                raise OfflineError(
                    f"cannot reach the proxy {err.host}:{err.port} (HTTP_PROXY/HTTPS_PROXY) to "
                    f"download {dest.name}: {_reason(err)}"
                ) from None
            except (aiohttp.ClientConnectorError, *connect_timeouts) as err:
                raise OfflineError(
                    f"cannot reach {_host(url)} to download {dest.name}: {_reason(err)}"
                ) from None
            except (
                aiohttp.ClientPayloadError,
                aiohttp.ServerDisconnectedError,
                aiohttp.ClientOSError,
                asyncio.TimeoutError,
            ) as err:
                if attempt > retries:
                    raise DownloadError(
                        f"download of {dest.name} kept failing ({_reason(err)}); "
                        f"{part.name} is kept and the next start resumes it"
                    ) from None
                _LOGGER.warning(
                    "download of %s interrupted (%s); resuming", dest.name, _reason(err)
                )
                await asyncio.sleep(min(2 ** (attempt - 1), 10) * 0.5)
                continue
            except aiohttp.ClientHttpProxyError as err:  # HTTPS through a proxy: CONNECT refused
                proxy = err.request_info.real_url  # host and port only: never its credentials
                raise DownloadError(
                    f"the proxy {proxy.host}:{proxy.port} refused to open "
                    f"{_host(url)} for {dest.name}: HTTP {err.status} {err.message}".strip()
                ) from None
            except aiohttp.ClientError as err:  # a bad redirect, an invalid URL, ...
                raise DownloadError(f"download of {dest.name} failed: {_reason(err)}") from None
            size = part.stat().st_size if part.exists() else 0
            problem = None
            if size != total:
                problem = f"size {size} bytes, expected {total}"
            elif want_sha and digest != want_sha:
                problem = f"sha256 {digest}, expected {want_sha}"
            if problem is None:
                os.replace(part, dest)
                _LOGGER.info(
                    "downloaded %s (%.1f MB%s)",
                    dest.name,
                    size / (1 << 20),
                    ", sha256 verified" if want_sha else "",
                )
                return dest
            _remove(part)
            if resumed and not restarted:
                # The resumed bytes may belong to an older file: start over once.
                restarted = True
                _LOGGER.warning(
                    "%s failed verification (%s); downloading again", dest.name, problem
                )
                continue
            raise VerifyError(f"downloaded {dest.name} is corrupt ({problem}); removed it")
    finally:
        if own_session:
            await session.close()


def _auth_for(url: str) -> dict[str, str]:
    """The hub token's header for url, unless ~/.netrc has credentials for its host: aiohttp
    (trust_env) sends those itself and refuses a second Authorization; the user's file wins."""
    try:
        auth = hub.auth_headers(url)
    except hub.HubSettingError as err:
        raise DownloadError(str(err)) from None
    host = urlsplit(url).hostname
    if auth and host and _netrc_knows(host):
        _LOGGER.info("using the .netrc credentials for %s instead of the Hugging Face token", host)
        return {}
    return auth


def _netrc_knows(host: str) -> bool:
    """Whether the .netrc aiohttp reads ($NETRC, else ~/.netrc) has an entry for host."""
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        return netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _host(url: str) -> str:
    match = re.match(r"^[a-z]+://([^/]+)", url)
    return match.group(1) if match else url


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


async def fetch_variant(variant: str, dest_dir: Path | str, base: str | None = None) -> Path:
    """Download a published variant into dest_dir under its published file name."""
    url = variant_url(variant, base)
    dest = Path(dest_dir) / VARIANTS[variant].filename
    _LOGGER.info("fetching Kokoro %s (~%d MB) from %s", variant, VARIANTS[variant].size_mb, url)
    return await fetch_file(url, dest)


def download_variant(variant: str, dest_dir: Path | str, base: str | None = None) -> Path:
    """Blocking wrapper of fetch_variant (runs its own event loop; call it from a thread)."""
    return asyncio.run(fetch_variant(variant, dest_dir, base))
