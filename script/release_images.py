"""Are the add-on's images of a version published, and can anyone pull them?

The store offers the `version:` of addon/config.yaml on the default branch to every user at
once; each user's Supervisor then pulls `image:` (with `{arch}` filled in) at that version.
So the default branch may only name a version whose images exist for every `arch:` and are
public. This asks the registry the way a Supervisor's pull does, anonymously: a manifest HEAD
(the OCI distribution API), with the bearer token the registry hands out for anonymous pulls
(`WWW-Authenticate: Bearer realm=...`, as ghcr.io does). A private package refuses that token,
so "published" here also means "public".

Usage:
  python script/release_images.py [--root ROOT] [--version X.Y.Z] [--wait SECONDS]
  python script/release_images.py --base GIT_REF   # only when the version differs from REF's
Prints one line per image; exit 0 when all are there, 1 when one is not (the line says why).
Registries on loopback (127.0.0.1, localhost) are asked over plain HTTP, as Docker does.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path("addon") / "config.yaml"
# What a pull accepts: the multi-arch index and the single-image manifests, OCI and Docker.
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
TIMEOUT_S = 20


def images(config: dict, version: str) -> list[str]:
    """The image references the Supervisors pull for this version, one per architecture."""
    template = config["image"]
    return [f"{template.replace('{arch}', arch)}:{version}" for arch in config["arch"]]


def _split(reference: str) -> tuple[str, str, str]:
    """registry host, repository, tag of ``host/owner/name:tag``."""
    host, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    if not host or not repository or not tag or "/" in tag:
        raise ValueError(f"{reference!r} is not REGISTRY/REPOSITORY:TAG")
    return host, repository, tag


def _challenge(header: str) -> dict[str, str]:
    """The parameters of a `Bearer realm="...",service="...",scope="..."` challenge."""
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def _anonymous_token(header: str, repository: str) -> str:
    params = _challenge(header)
    if not header.lower().startswith("bearer") or "realm" not in params:
        raise PermissionError(f"the registry wants credentials ({header or 'no challenge'})")
    query = {"scope": params.get("scope", f"repository:{repository}:pull")}
    if "service" in params:
        query["service"] = params["service"]
    url = f"{params['realm']}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310 - registry
            body = json.load(answer)
    except urllib.error.HTTPError as err:
        raise PermissionError(f"no anonymous pull token (HTTP {err.code}): not public") from None
    token = body.get("token") or body.get("access_token")
    if not token:
        raise PermissionError("the registry's token answer holds no token")
    return token


def _head(url: str, token: str | None) -> urllib.response.addinfourl:
    headers = {"Accept": MANIFEST_TYPES}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method="HEAD", headers=headers)
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 - registry URL


def published(reference: str) -> tuple[bool, str]:
    """Whether an anonymous pull of ``reference`` would find its manifest, and why not."""
    host, repository, tag = _split(reference)
    scheme = "http" if host.split(":")[0] in LOOPBACK or host.startswith("[::1]") else "https"
    url = f"{scheme}://{host}/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
    token = None
    for _attempt in range(2):
        try:
            with _head(url, token) as answer:
                digest = answer.headers.get("Docker-Content-Digest", "")
                return True, f"published {digest}".strip()
        except urllib.error.HTTPError as err:
            if err.code == 401 and token is None:
                try:
                    token = _anonymous_token(err.headers.get("WWW-Authenticate", ""), repository)
                except PermissionError as why:
                    return False, str(why)
                continue
            if err.code == 404:
                return False, "not there (no such image or tag)"
            if err.code in (401, 403):
                return False, f"refused to an anonymous pull (HTTP {err.code}): not public"
            return False, f"HTTP {err.code} from the registry"
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            return False, f"cannot reach {host} ({reason})"
    return False, "refused to an anonymous pull: not public"


def check(refs: list[str], wait_s: float = 0.0, poll_s: float = 15.0) -> bool:
    """Print one line per image; True when all are published (waiting up to ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        results = [(ref, *published(ref)) for ref in refs]
        if all(ok for _, ok, _ in results) or time.monotonic() >= deadline:
            break
        missing = ", ".join(ref for ref, ok, _ in results if not ok)
        print(f"release: waiting for {missing}", file=sys.stderr, flush=True)
        time.sleep(poll_s)
    for ref, ok, why in results:
        print(f"release: {'ok' if ok else 'MISSING'} {ref}: {why}", file=sys.stderr)
    return all(ok for _, ok, _ in results)


def config_at(root: Path, ref: str | None) -> dict:
    if ref is None:
        return yaml.safe_load((root / CONFIG).read_text())
    done = subprocess.run(
        ["git", "-C", str(root), "show", f"{ref}:{CONFIG.as_posix()}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"release: cannot read {CONFIG} at {ref}: {done.stderr.strip()}")
    return yaml.safe_load(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this)")
    parser.add_argument("--ref", help="read addon/config.yaml at this git commit or tag")
    parser.add_argument("--version", help="the version to check (default: the manifest's)")
    parser.add_argument("--base", help="check only if the version differs from this git ref's")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the images")
    args = parser.parse_args(argv)
    config = config_at(args.root, args.ref)
    version = args.version or str(config["version"])
    if args.base is not None:
        before = str(config_at(args.root, args.base)["version"])
        if before == version:
            print(f"release: version {version} unchanged since {args.base}", file=sys.stderr)
            return 0
        print(
            f"release: version {before} -> {version}: its images must be public first",
            file=sys.stderr,
        )
    return 0 if check(images(config, version), args.wait) else 1


if __name__ == "__main__":
    sys.exit(main())
