"""Where the published files live and who may be told the user's token: the Hugging Face settings
read from the environment the way huggingface_hub reads them, without depending on it.

- ``HF_ENDPOINT`` (default https://huggingface.co): a mirror such as https://hf-mirror.com or a
  private hub; files are at ``<endpoint>/<repo>/resolve/main/<file>``.
- The token: ``HF_TOKEN``, else the legacy ``HUGGING_FACE_HUB_TOKEN``, else the file that
  ``hf auth login`` writes (``HF_TOKEN_PATH``, default ``$HF_HOME/token``, ``HF_HOME`` defaulting
  to ``$XDG_CACHE_HOME/huggingface`` or ``~/.cache/huggingface``).  A token from the file is not
  sent when ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` is true.
- The token goes only to the endpoint's origin (scheme, host, port): not to a
  ``WYOMING_KOKORO_GGUF_BASE_URL`` elsewhere, and not across the hub's redirect of LFS files to
  its CDN (aiohttp drops ``Authorization`` when a redirect leaves the origin; tests check it).

Proxies (``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) are honoured by the HTTP client itself
(``trust_env``), see download.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

HF_REPO = "mmwillet2/Kokoro_GGUF"
DEFAULT_ENDPOINT = "https://huggingface.co"
ENDPOINT_ENV = "HF_ENDPOINT"
BASE_URL_ENV = "WYOMING_KOKORO_GGUF_BASE_URL"  # the folder of the files; beats HF_ENDPOINT
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of a true flag


class HubSettingError(ValueError):
    """An environment setting cannot be used; the message is one line for the user."""


def endpoint() -> str:
    """The hub's base URL: HF_ENDPOINT or huggingface.co."""
    value = os.environ.get(ENDPOINT_ENV, "").strip().rstrip("/") or DEFAULT_ENDPOINT
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HubSettingError(
            f"{ENDPOINT_ENV}={value!r} is not a URL; write it as https://host (e.g. "
            "https://hf-mirror.com)"
        )
    return value


def repo_url(ep: str | None = None) -> str:
    """Folder of the published files on a hub: <endpoint>/<repo>/resolve/main."""
    return f"{(ep or endpoint()).rstrip('/')}/{HF_REPO}/resolve/main"


def base_url() -> str:
    """Folder the files are fetched from: WYOMING_KOKORO_GGUF_BASE_URL, else the hub's."""
    override = os.environ.get(BASE_URL_ENV, "").strip().rstrip("/")
    return override or repo_url()


def _is_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in _TRUE


OFFLINE_ENV = "HF_HUB_OFFLINE"


def offline() -> bool:
    """HF_HUB_OFFLINE set true: no request to any hub, as --local-files-only."""
    return _is_true(OFFLINE_ENV)


def _clean(token: str | None) -> str | None:
    return (token or "").replace("\r", "").replace("\n", "").strip() or None


def token_path() -> Path:
    """Where ``hf auth login`` keeps the token."""
    explicit = os.environ.get("HF_TOKEN_PATH")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "token"


def token() -> str | None:
    """The user's Hugging Face token, or None (public files need none)."""
    from_env = _clean(os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"))
    if from_env or _is_true("HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        return from_env
    try:
        return _clean(token_path().read_text(encoding="utf-8"))
    except OSError:  # no file (not logged in), or unreadable: go without
        return None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    try:
        port = parts.port or default_port
    except ValueError:  # a port that is not a number: no origin matches it
        return scheme, None, None
    return scheme, parts.hostname, port


def auth_headers(url: str) -> dict[str, str]:
    """``Authorization: Bearer`` for a URL on the endpoint's origin when there is a token."""
    if _origin(url) != _origin(endpoint()):
        return {}
    value = token()
    return {"Authorization": f"Bearer {value}"} if value else {}
