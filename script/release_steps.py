"""The two release steps that keep the store from offering a version without images.

The store reads `version:` of addon/config.yaml from the default branch; images are built and
pushed when a `v*` tag is. So the version moves only in the tagged commit, and the branch
moves to that commit only once its images are public:

  tag X.Y.Z      the release commit (version in the package, the add-on manifest and the
                 changelog, whose `## Unreleased` section becomes `## X.Y.Z`) is made on top of
                 the default branch WITHOUT moving the branch, tagged vX.Y.Z, and only the tag
                 is pushed: the workflow builds and pushes the images and the GitHub release.
  publish X.Y.Z  every image of vX.Y.Z's manifest is asked for anonymously at the registry
                 (script/release_images.py); only when all are there does the default branch
                 fast-forward to the tag, which is when the store offers the update.

Usage: python script/release_steps.py tag|publish X.Y.Z [--wait S] [--remote R] [--branch B]
Exit 0 done, 1 refused (one line saying why, nothing moved).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parent))
import release_images  # noqa: E402 - this directory's modules
import release_versions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Refused(Exception):
    """A release step that must not go on; the message is one line for the maintainer."""


def git(*args: str, cwd: Path = ROOT, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise Refused(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def say(message: str) -> None:
    print(f"release: {message}", file=sys.stderr, flush=True)


def bump(root: Path, version: str) -> None:
    """Write ``version`` into the package and the manifest; name the changelog's Unreleased
    section after it (or find it named already)."""
    init = root / release_versions.PACKAGE_INIT
    new = f'__version__ = "{version}"'
    init.write_text(re.sub(r'(?m)^__version__ = "[^"]*"', new, init.read_text(), count=1))
    config = root / release_versions.CONFIG
    config.write_text(
        re.sub(r"(?m)^version: .*$", f"version: {version}", config.read_text(), count=1)
    )
    changelog = root / release_versions.CHANGELOG
    text = changelog.read_text()
    heading = re.search(r"(?m)^## +(.+?)[ \t]*$", text)
    if heading and heading.group(1).lower() == release_versions.UNRELEASED.lower():
        body = text[heading.end() :].split("\n## ", 1)[0]
        if not body.strip():
            raise Refused(f"{release_versions.CHANGELOG}: the Unreleased section is empty")
        text = text[: heading.start()] + f"## {version}" + text[heading.end() :]
        changelog.write_text(text)
    elif not heading or heading.group(1) != version:
        raise Refused(
            f"{release_versions.CHANGELOG}: put this release's notes under `## "
            f"{release_versions.UNRELEASED}` at the top"
        )
    found_version, problems = release_versions.problems(root)
    if problems or found_version != version:
        raise Refused("; ".join(problems) or f"the package still says {found_version}")


def _fetched_branch(remote: str, branch: str) -> str:
    git("fetch", "--quiet", "--tags", remote, branch)
    return git("rev-parse", "FETCH_HEAD")


def tag(version: str, remote: str, branch: str) -> None:
    """Make, tag and push the release commit; the branch stays where it is."""
    if not release_versions.VERSION_RE.match(version):
        raise Refused(f"{version!r} is not X.Y.Z")
    if git("status", "--porcelain"):
        raise Refused("the working tree has uncommitted changes; commit or stash them first")
    published = _fetched_branch(remote, branch)
    if git("rev-parse", "HEAD") != published:
        raise Refused(f"HEAD is not {remote}/{branch}: release from the published branch")
    current = release_versions.package_version(ROOT)
    first = not git("tag", "--list", "v*")
    if not (Version(version) > Version(current) or (first and version == current)):
        raise Refused(f"{version} is not newer than the current version {current}")
    name = f"v{version}"
    if git("tag", "--list", name) or git("ls-remote", "--tags", remote, f"refs/tags/{name}"):
        raise Refused(f"the tag {name} exists already")
    work = Path(tempfile.mkdtemp(prefix="release-")) / "tree"
    git("worktree", "add", "--quiet", "--detach", str(work), "HEAD")
    try:
        bump(work, version)
        git("commit", "--quiet", "-am", f"Release {version}", cwd=work)
        git("tag", "-a", name, "-m", f"Release {version}", cwd=work)
    finally:
        git("worktree", "remove", "--force", str(work), check=False)
        shutil.rmtree(work.parent, ignore_errors=True)
    git("push", "--quiet", remote, f"refs/tags/{name}")
    say(f"pushed the tag {name} ({git('rev-parse', '--short', name + '^{commit}')}); "
        f"{remote}/{branch} still names {current}")  # fmt: skip
    say(f"next: once the workflow has built {name}: script/release publish {version}")


def publish(version: str, remote: str, branch: str, wait_s: float) -> None:
    """Fast-forward the branch to the tag once its images are public."""
    name = f"v{version}"
    published = _fetched_branch(remote, branch)
    commit = git("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
    if not commit:
        raise Refused(f"no tag {name}: run script/release tag {version} first")
    ancestor = ["git", "merge-base", "--is-ancestor", published, commit]
    if subprocess.run(ancestor, cwd=ROOT, check=False).returncode != 0:
        raise Refused(
            f"{remote}/{branch} moved since {name} was made: merge {name} into {branch}, "
            f"then push it yourself once the images below are public"
        )
    config = release_images.config_at(ROOT, name)
    if str(config["version"]) != version:
        raise Refused(f"{name}'s addon/config.yaml names {config['version']}, not {version}")
    if not release_images.check(release_images.images(config, version), wait_s):
        raise Refused(
            f"{remote}/{branch} not moved: the images above must be public first "
            "(docs/RELEASING.md: the workflow's run of the tag; making a package public)"
        )
    git("push", "--quiet", remote, f"{commit}:refs/heads/{branch}")
    say(f"{remote}/{branch} is now {name}: the store offers {version}")
    if git("symbolic-ref", "--short", "-q", "HEAD", check=False) == branch:
        git("merge", "--quiet", "--ff-only", commit, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="script/release", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["tag", "publish"])
    parser.add_argument("version")
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--branch", default="main", help="the default branch the store reads")
    parser.add_argument("--wait", type=float, default=0.0, help="publish: wait for the images")
    args = parser.parse_args(argv)
    try:
        if args.step == "tag":
            tag(args.version, args.remote, args.branch)
        else:
            publish(args.version, args.remote, args.branch, args.wait)
    except Refused as why:
        say(f"refused: {why}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
