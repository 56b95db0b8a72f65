"""The release order: the branch the store reads names a version only once its images are public.

A real HTTP server on loopback stands in for the registry: it speaks the OCI distribution API
as ghcr.io does to an anonymous client (401 with a Bearer challenge, a token from its realm,
then the manifest), with public and private repositories. A bare git repository on disk stands
in for GitHub; script/release tag and publish run against both, as a maintainer runs them.
"""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "script" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


release_images = _module("release_images")


class Registry(http.server.ThreadingHTTPServer):
    """Manifests by (repository, tag); ``public`` repositories get anonymous pull tokens."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RegistryHandler)
        self.manifests: set[tuple[str, str]] = set()
        self.public: set[str] = set()
        self.asked: list[str] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class RegistryHandler(http.server.BaseHTTPRequestHandler):
    server: Registry

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _send(self, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - http.server's name
        url = urllib.parse.urlparse(self.path)
        if url.path != "/token":
            return self.do_HEAD()
        scope = urllib.parse.parse_qs(url.query).get("scope", [""])[0]
        repository = scope.split(":")[1] if scope.count(":") == 2 else ""
        if repository not in self.server.public:
            return self._send(403, body=b'{"errors":[{"code":"DENIED"}]}')
        return self._send(200, body=json.dumps({"token": f"pull:{repository}"}).encode())

    def do_HEAD(self):  # noqa: N802
        path = self.path
        self.server.asked.append(f"{self.command} {path}")
        if not path.startswith("/v2/") or "/manifests/" not in path:
            return self._send(404)
        repository, tag = path[4:].split("/manifests/")
        if self.headers.get("Authorization") != f"Bearer pull:{repository}":
            realm = f"http://{self.server.host}/token"
            challenge = (
                f'Bearer realm="{realm}",service="test",scope="repository:{repository}:pull"'
            )
            return self._send(401, {"WWW-Authenticate": challenge})
        if "application/vnd.oci.image.index.v1+json" not in self.headers.get("Accept", ""):
            return self._send(404)
        if (repository, tag) not in self.server.manifests:
            return self._send(404)
        return self._send(200, {"Docker-Content-Digest": "sha256:" + "0" * 64})


@pytest.fixture
def registry():
    server = Registry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_images_of_a_version_come_from_the_manifest():
    config = {"image": "ghcr.io/o/{arch}-kokoro_gguf", "arch": ["amd64", "aarch64"]}
    assert release_images.images(config, "1.2.3") == [
        "ghcr.io/o/amd64-kokoro_gguf:1.2.3",
        "ghcr.io/o/aarch64-kokoro_gguf:1.2.3",
    ]


def test_an_anonymous_pull_finds_public_images_only(registry):
    registry.manifests |= {("o/amd64-k", "1.0.0"), ("o/secret", "1.0.0")}
    registry.public.add("o/amd64-k")
    assert release_images.published(f"{registry.host}/o/amd64-k:1.0.0") == (
        True,
        "published sha256:" + "0" * 64,
    )
    ok, why = release_images.published(f"{registry.host}/o/amd64-k:1.0.1")
    assert not ok and why == "not there (no such image or tag)"
    ok, why = release_images.published(f"{registry.host}/o/secret:1.0.0")
    assert not ok and "not public" in why
    # the manifest was asked with a HEAD, first without then with the token
    assert registry.asked[:2] == ["HEAD /v2/o/amd64-k/manifests/1.0.0"] * 2


def test_an_unreachable_registry_is_a_clear_no(registry):
    port = registry.server_address[1]
    registry.shutdown()
    registry.server_close()
    ok, why = release_images.published(f"127.0.0.1:{port}/o/k:1.0.0")
    assert not ok and why.startswith(f"cannot reach 127.0.0.1:{port}")


# ---------------------------------------------------------------- script/release tag, publish

FILES = (
    "script/release",
    "script/release_steps.py",
    "script/release_images.py",
    "script/release_versions.py",
    "wyoming_kokoro_gguf/__init__.py",
    "pyproject.toml",
    "addon/config.yaml",
    "addon/CHANGELOG.md",
)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def _version_at(repo: Path, ref: str) -> str:
    config = _git(repo, "show", f"{ref}:addon/config.yaml")
    return next(ln.split()[1] for ln in config.splitlines() if ln.startswith("version:"))


@pytest.fixture
def project(tmp_path, registry):
    """A clone of a bare 'GitHub' repository holding the release files at version 1.0.0
    (released: tag v1.0.0), the next release's notes under Unreleased, and the add-on's
    images named on the loopback registry."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    _git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    _git(tmp_path, "clone", "--quiet", str(origin), str(work))
    for rel in FILES:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, work / rel)
    init = work / "wyoming_kokoro_gguf" / "__init__.py"
    from wyoming_kokoro_gguf import __version__

    init.write_text(init.read_text().replace(f'"{__version__}"', '"1.0.0"'))
    config = work / "addon" / "config.yaml"
    text = config.read_text().replace(f"version: {__version__}", "version: 1.0.0")
    text = text.replace("image: ghcr.io/", f"image: {registry.host}/")
    config.write_text(text)
    (work / "addon" / "CHANGELOG.md").write_text(
        "# Changelog\n\n## Unreleased\n\n- Faster starts.\n\n## 1.0.0\n\n- First release.\n"
    )
    for args in (
        ("config", "user.email", "t@example.invalid"),
        ("config", "user.name", "test"),
        ("add", "."),
        ("commit", "--quiet", "-m", "1.0.0"),
        ("tag", "v1.0.0"),
        ("push", "--quiet", "origin", "main", "v1.0.0"),
    ):
        _git(work, *args)
    return work, origin


def _release(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [str(work / "script" / "release"), *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_tag_then_publish_moves_the_branch_only_once_the_images_are_public(project, registry):
    work, origin = project
    before = _git(origin, "rev-parse", "main")

    done = _release(work, "tag", "1.1.0")
    assert done.returncode == 0, done.stderr
    # The tag's commit names 1.1.0 everywhere; the branch (and the store) still 1.0.0.
    assert _version_at(origin, "v1.1.0") == "1.1.0"
    assert '__version__ = "1.1.0"' in _git(origin, "show", "v1.1.0:wyoming_kokoro_gguf/__init__.py")
    assert "## 1.1.0\n\n- Faster starts." in _git(origin, "show", "v1.1.0:addon/CHANGELOG.md")
    assert _git(origin, "rev-parse", "main") == before and _version_at(origin, "main") == "1.0.0"
    assert _git(work, "status", "--porcelain") == "" and _version_at(work, "HEAD") == "1.0.0"
    assert _git(origin, "rev-parse", "v1.1.0^") == before  # on top of the published branch

    # No images yet: refused, nothing moved.
    done = _release(work, "publish", "1.1.0")
    assert done.returncode == 1
    assert f"MISSING {registry.host}/wyoming-kokoro-gguf/amd64-kokoro_gguf:1.1.0" in done.stderr
    assert "not moved" in done.stderr and _git(origin, "rev-parse", "main") == before

    # Pushed but private (a first push to GHCR): still refused.
    for arch in ("amd64", "aarch64"):
        registry.manifests.add((f"wyoming-kokoro-gguf/{arch}-kokoro_gguf", "1.1.0"))
    registry.public.add("wyoming-kokoro-gguf/amd64-kokoro_gguf")
    done = _release(work, "publish", "1.1.0")
    assert done.returncode == 1
    assert "MISSING " in done.stderr and "aarch64-kokoro_gguf:1.1.0: no anonymous pull token" in (
        done.stderr
    )
    assert _git(origin, "rev-parse", "main") == before

    registry.public.add("wyoming-kokoro-gguf/aarch64-kokoro_gguf")
    done = _release(work, "publish", "1.1.0")
    assert done.returncode == 0, done.stderr
    assert _git(origin, "rev-parse", "main") == _git(origin, "rev-parse", "v1.1.0^{commit}")
    assert _version_at(work, "HEAD") == "1.1.0"  # the local branch followed


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        (None, ("tag", "1.0.0"), "1.0.0 is not newer than the current version 1.0.0"),
        (None, ("tag", "1.1"), "'1.1' is not X.Y.Z"),
        ("dirty", ("tag", "1.1.0"), "uncommitted changes"),
        ("no notes", ("tag", "1.1.0"), "put this release's notes under `## Unreleased`"),
        (None, ("publish", "1.2.0"), "no tag v1.2.0"),
    ],
)
def test_release_steps_refuse_with_one_line(project, change, args, message):
    work, origin = project
    if change == "dirty":
        (work / "addon" / "DOCS.md").write_text("edited")
    if change == "no notes":
        changelog = work / "addon" / "CHANGELOG.md"
        changelog.write_text("# Changelog\n\n## 1.0.0\n\n- First release.\n")
        _git(work, "commit", "--quiet", "-am", "notes")
        _git(work, "push", "--quiet", "origin", "main")
    done = _release(work, *args)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert _git(origin, "tag", "--list") == "v1.0.0"  # nothing pushed


def test_the_workflow_guard_checks_only_a_changed_version(project, registry):
    """What CI runs on pull requests and on the branch: a change that moves the version must
    find the images public (the branch protection's required check)."""
    work, _origin = project
    versions = [sys.executable, str(work / "script" / "release_versions.py"), str(work)]
    on_main = subprocess.run(versions, capture_output=True, text=True, timeout=60)
    assert on_main.stdout.strip() == "1.0.0", on_main.stderr  # Unreleased notes above 1.0.0
    script = str(work / "script" / "release_images.py")
    run = [sys.executable, script, "--root", str(work), "--base"]
    same = subprocess.run([*run, "HEAD"], capture_output=True, text=True, timeout=60)
    assert same.returncode == 0 and "version 1.0.0 unchanged since HEAD" in same.stderr
    config = work / "addon" / "config.yaml"
    config.write_text(config.read_text().replace("version: 1.0.0", "version: 1.1.0"))
    bumped = subprocess.run([*run, "HEAD"], capture_output=True, text=True, timeout=60)
    assert bumped.returncode == 1 and "1.0.0 -> 1.1.0" in bumped.stderr
    assert "MISSING" in bumped.stderr
