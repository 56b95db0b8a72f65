"""Home Assistant add-on options (/data/options.json) -> server arguments.

Why the server reads them itself: the add-on's run script stays one ``exec`` line, and the
mapping (with its validation and error messages) is Python that tests can run.  The Supervisor
already checks options against config.yaml's schema; this re-validates because a user can also
hand the file to the server directly, and because a clear message naming the bad option beats a
traceback in the add-on log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import voluptuous as vol

from wyoming_kokoro_gguf.host.plan import VARIANT_NAMES
from wyoming_kokoro_gguf.synth.blend import EXAMPLE, BlendError, canonical_formula

_LOGGER = logging.getLogger(__name__)

# Stricter than the --voice-blend names: the add-on's form shows the name as typed.
BLEND_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_THREADS = 64


class AddonOptionsError(ValueError):
    """A bad options file or option; the message names the option."""


def _threads(value: Any) -> str:
    """'auto' or a whole number 1..64 (the Supervisor stores what the user typed)."""
    if isinstance(value, bool):
        raise vol.Invalid("expected 'auto' or a number of threads")
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
        raise vol.Invalid(f"expected 'auto' or a whole number from 1 to {MAX_THREADS}")
    return str(int(text))


def _formula(value: Any) -> str:
    """'af_heart:0.7,af_bella:0.3': voices with weights above 0 (voices are checked at load)."""
    if not isinstance(value, str):
        raise vol.Invalid(f"expected VOICE:WEIGHT,... such as {EXAMPLE}")
    try:
        return canonical_formula(value)
    except BlendError as err:
        raise vol.Invalid(str(err)) from None


def _speed(value: Any) -> float:
    if isinstance(value, bool):
        raise vol.Invalid("expected a number")
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise vol.Invalid("expected a number") from None
    if not 0.5 <= speed <= 2.0:
        raise vol.Invalid("must be between 0.5 and 2.0")
    return speed


# The `convolutions` option -> the server's --quant: the host plan's choice, or one forced.
CONVOLUTIONS = {"auto": "auto", "fp32": "conv=fp32", "int8": "conv=int8", "int8s": "conv=int8s"}
# Optional download settings -> the environment the downloads read (docs/DOWNLOADS.md): a
# Supervisor has no proxy or mirror setting of its own to hand an add-on.
DOWNLOAD_ENV = {"hf_endpoint": "HF_ENDPOINT", "hf_token": "HF_TOKEN", "https_proxy": "HTTPS_PROXY"}


def _url(value: Any) -> str:
    """An http(s) URL, as the Supervisor's `url` type accepts."""
    text = str(value).strip()
    if not re.match(r"^https?://[^\s/]+", text):
        raise vol.Invalid("expected a URL such as https://hf-mirror.com")
    return text


SCHEMA = vol.Schema(
    {
        vol.Optional("voice", default="af_heart"): vol.All(
            str, vol.Strip, vol.Length(min=1, max=100, msg="expected a voice name")
        ),
        vol.Optional("speed", default=1.0): _speed,
        vol.Optional("model", default="auto"): vol.In(
            ["auto", *VARIANT_NAMES], msg=f"expected one of auto, {', '.join(VARIANT_NAMES)}"
        ),
        vol.Optional("threads", default="auto"): _threads,
        vol.Optional("convolutions", default="auto"): vol.In(
            list(CONVOLUTIONS), msg=f"expected one of {', '.join(CONVOLUTIONS)}"
        ),
        vol.Optional("voice_blends", default=list): [
            vol.Schema(
                {
                    vol.Required("name"): vol.All(
                        str,
                        vol.Match(BLEND_NAME, msg="expected letters, digits, _ or - (at most 40)"),
                    ),
                    vol.Required("formula"): _formula,
                }
            )
        ],
        vol.Optional("streaming", default=True): vol.Boolean(),
        vol.Optional("debug_logging", default=False): vol.Boolean(),
        vol.Optional("hf_endpoint"): _url,
        vol.Optional("hf_token"): vol.All(str, vol.Strip, vol.Length(min=1, max=400)),
        vol.Optional("https_proxy"): _url,
    },
    extra=vol.ALLOW_EXTRA,
)
KNOWN = {str(k) for k in SCHEMA.schema}


def _where(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "options"


def _value_at(data: Any, path: list[Any]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def validate(data: Any) -> dict[str, Any]:
    """Validated options with defaults filled in; AddonOptionsError names the first bad option."""
    if not isinstance(data, dict):
        raise AddonOptionsError("add-on options must be a JSON object")
    try:
        options = SCHEMA(data)
    except vol.MultipleInvalid as err:
        first = sorted(err.errors, key=lambda e: [str(p) for p in e.path])[0]
        where = _where(list(first.path))
        value = _value_at(data, list(first.path))
        msg = first.error_message or str(first)
        if msg == "extra keys not allowed":
            msg = "unknown key"
        if msg.startswith("required key not provided"):
            raise AddonOptionsError(f"add-on option '{where}' is missing") from None
        got = "" if value is None else f" (got {value!r})"
        raise AddonOptionsError(f"add-on option '{where}': {msg}{got}") from None
    names = [b["name"] for b in options["voice_blends"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AddonOptionsError(
            f"add-on option 'voice_blends': the name {duplicates[0]!r} is used twice"
        )
    for key in sorted(set(data) - KNOWN):
        _LOGGER.warning("ignoring unknown add-on option %r", key)
        options.pop(key, None)
    return options


def load(path: str | Path) -> dict[str, Any]:
    """Read and validate an options.json file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AddonOptionsError(f"add-on options file not found: {path}") from None
    except OSError as err:
        raise AddonOptionsError(
            f"cannot read add-on options {path}: {err.strerror or err}"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise AddonOptionsError(
            f"add-on options {path} is not valid JSON: {err.msg} (line {err.lineno})"
        ) from None
    return validate(data)


def to_args(options: dict[str, Any], args: argparse.Namespace) -> argparse.Namespace:
    """Set the server arguments from validated options (the add-on's settings win)."""
    args.voice = options["voice"]
    args.speed = options["speed"]
    args.model = options["model"]
    args.threads = options["threads"]
    args.quant = CONVOLUTIONS[options["convolutions"]]
    args.voice_blend = [f"{b['name']}={b['formula']}" for b in options["voice_blends"]]
    args.no_streaming = not options["streaming"]
    args.debug = bool(options["debug_logging"]) or bool(args.debug)
    return args


def apply(args: argparse.Namespace) -> argparse.Namespace:
    """When args.addon_options names a file, read it and map it onto args (returned)."""
    path = args.addon_options
    if not path:
        return args
    options = load(path)
    to_args(options, args)
    for key, env in DOWNLOAD_ENV.items():  # the engine process inherits them
        if options.get(key):
            os.environ[env] = options[key]
    if args.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    _LOGGER.info(
        "add-on options: voice %s, speed %g, model %s, threads %s, convolutions %s, "
        "%d voice blend(s), streaming %s%s",
        options["voice"],
        options["speed"],
        options["model"],
        options["threads"],
        options["convolutions"],
        len(options["voice_blends"]),
        "on" if options["streaming"] else "off",
        "".join(f", {key} set" for key in DOWNLOAD_ENV if options.get(key)),  # never the token
    )
    return args
