"""Check that every place naming the release agrees with the package's one version.

The version lives only in wyoming_kokoro_gguf/__init__.py (__version__; pyproject.toml reads it
dynamically). The add-on manifest (addon/config.yaml `version`) and the newest heading of
addon/CHANGELOG.md must name the same version: the add-on image installs the wheel of its own
version (the Dockerfile's BUILD_VERSION build argument is the manifest's version). An
`## Unreleased` section may sit above it: the next release's notes, until script/release tag.

Usage: python script/release_versions.py [ROOT]
Prints the version and exits 0 when everything agrees; otherwise prints one line per
disagreement on stderr and exits 1.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import tomllib

PACKAGE_INIT = Path("wyoming_kokoro_gguf") / "__init__.py"
CONFIG = Path("addon") / "config.yaml"
CHANGELOG = Path("addon") / "CHANGELOG.md"
PYPROJECT = Path("pyproject.toml")
UNRELEASED = "Unreleased"
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?$")


def package_version(root: Path) -> str:
    tree = ast.parse((root / PACKAGE_INIT).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise ValueError(f"{PACKAGE_INIT}: no __version__")


def config_version(root: Path) -> str | None:
    # The manifest's top-level `version:` line (no YAML parser needed for one scalar).
    for line in (root / CONFIG).read_text().splitlines():
        match = re.match(r"""^version:\s*["']?([^"'\s#]+)["']?\s*(?:#.*)?$""", line)
        if match:
            return match.group(1)
    return None


def changelog_version(root: Path) -> str | None:
    """The newest released version's heading; an `## Unreleased` section above it (the notes
    of the next release, which script/release tag names) is skipped."""
    for line in (root / CHANGELOG).read_text().splitlines():
        match = re.match(r"^##\s+\[?v?([^\]\s]+)\]?", line)
        if match and match.group(1).lower() != UNRELEASED.lower():
            return match.group(1)
    return None


def problems(root: Path) -> tuple[str, list[str]]:
    version = package_version(root)
    found = []
    if not VERSION_RE.match(version):
        found.append(f"{PACKAGE_INIT}: __version__ {version!r} is not X.Y.Z")
    project = tomllib.loads((root / PYPROJECT).read_text())["project"]
    if "version" in project or "version" not in project.get("dynamic", []):
        found.append(
            f"{PYPROJECT}: the version must be dynamic (read from {PACKAGE_INIT}), not written there"
        )
    in_config = config_version(root)
    if in_config != version:
        found.append(
            f"{CONFIG}: version {in_config!r} but the package is {version!r}; set `version: {version}`"
        )
    in_changelog = changelog_version(root)
    if in_changelog != version:
        found.append(
            f"{CHANGELOG}: newest entry is {in_changelog!r} but the package is {version!r}; "
            f"add a `## {version}` section at the top"
        )
    return version, found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    version, found = problems(root)
    for line in found:
        print(f"release: {line}", file=sys.stderr)
    if found:
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
