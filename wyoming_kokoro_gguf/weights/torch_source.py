"""Read the reference PyTorch checkpoint (hexgrad/Kokoro-82M ``kokoro-v1_0.pth``) and voice .pt files.

Needs the ``torch`` extra, only to unpickle the files (``torch.load(..., weights_only=True)``);
everything after that is numpy.  The checkpoint is a dict of per-module state dicts (``bert``,
``bert_encoder``, ``predictor``, ``text_encoder``, ``decoder``), keys possibly prefixed
``module.``; weight-normed layers store ``weight_g`` / ``weight_v`` (or the newer
``parametrizations.weight.original0`` / ``original1``), which are folded here into the plain
``weight`` TTS.cpp stores: ``g * v / ||v||`` with the norm over every axis where g has size 1
(torch's weight_norm with dim=0).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wyoming_kokoro_gguf.weights import layout


class TorchSourceError(Exception):
    """The checkpoint or voice files cannot be used (one-line message)."""


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise TorchSourceError(
            "reading .pth / .pt files needs PyTorch: pip install 'wyoming_kokoro_gguf[torch]'"
        ) from None
    return torch


def _load(path: Path) -> Any:
    torch = _torch()
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of every kind
        raise TorchSourceError(
            f"{path}: cannot load with torch ({type(exc).__name__}: {exc})"
        ) from None


def _to_numpy(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().to("cpu")
        if str(v.dtype) in ("torch.bfloat16", "torch.float16"):
            v = v.float()
        v = v.numpy()
    return np.asarray(v, dtype=np.float32)


def fold_weight_norm(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Replace every weight-norm pair by the weight it stands for; other entries pass through."""
    out: dict[str, np.ndarray] = {}
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, a in state.items():
        for g_sfx, v_sfx in (
            ("weight_g", "weight_v"),
            ("parametrizations.weight.original0", "parametrizations.weight.original1"),
        ):
            if name.endswith(g_sfx):
                pairs.setdefault(name[: -len(g_sfx)], {})["g"] = a
                break
            if name.endswith(v_sfx):
                pairs.setdefault(name[: -len(v_sfx)], {})["v"] = a
                break
        else:
            out[name] = a
    for base, gv in pairs.items():
        if "g" not in gv or "v" not in gv:
            raise TorchSourceError(f"incomplete weight norm pair for {base}weight")
        g = np.asarray(gv["g"], np.float64)
        v = np.asarray(gv["v"], np.float64)
        axes = tuple(i for i in range(v.ndim) if g.ndim != v.ndim or g.shape[i] == 1)
        norm = np.sqrt(np.sum(v * v, axis=axes, keepdims=True))
        with np.errstate(divide="ignore", invalid="ignore"):  # an all-zero v gives a zero weight
            w = np.where(norm > 0, g.reshape(norm.shape) * v / np.where(norm > 0, norm, 1.0), 0.0)
        out[base + "weight"] = w.astype(np.float32)
    return out


def flatten_checkpoint(ckpt: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """{"bert": {...}, "decoder": {...}} (or an already flat dict) -> flat KModel names."""
    flat: dict[str, np.ndarray] = {}
    for key, value in ckpt.items():
        if isinstance(value, Mapping):
            for sub, tensor in value.items():
                sub = sub[len("module.") :] if sub.startswith("module.") else sub
                flat[f"{key}.{sub}"] = _to_numpy(tensor)
        else:
            name = key[len("module.") :] if key.startswith("module.") else key
            flat[name] = _to_numpy(value)
    return flat


def kokoro_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The KModel parameters the GGUF needs, weight norm folded, shapes checked."""
    p = Path(path)
    ckpt = _load(p)
    if not isinstance(ckpt, Mapping):
        raise TorchSourceError(f"{p}: not a Kokoro checkpoint (expected a dict of state dicts)")
    params = fold_weight_norm(flatten_checkpoint(ckpt))
    emb = params.get("bert.embeddings.word_embeddings.weight")
    dims = (
        layout.KokoroDims(vocab_size=int(emb.shape[0])) if emb is not None else layout.KokoroDims()
    )
    want = layout.torch_shapes(dims)
    missing = [n for n in want if n not in params]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise TorchSourceError(
            f"{p}: not a Kokoro checkpoint: missing {', '.join(missing[:5])}{more}"
        )
    out = {}
    for n, shp in want.items():
        if params[n].shape != shp:
            raise TorchSourceError(
                f"{p}: parameter {n} has shape {list(params[n].shape)}, expected {list(shp)}"
            )
        out[n] = params[n]
    return out


def read_voice_dir(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Voices from a directory of ``<name>.pt`` files (each [510, 1, 256]) -> name -> [510, 256]."""
    p = Path(path)
    files = sorted(p.glob("*.pt"))
    if not files:
        raise TorchSourceError(f"{p}: no voice .pt files in this directory")
    out: dict[str, np.ndarray] = {}
    for f in files:
        a = _to_numpy(_load(f))
        if a.ndim == 3 and a.shape[1] == 1:
            a = a[:, 0, :]
        if a.ndim != 2:
            raise TorchSourceError(f"{f}: voice has shape {list(a.shape)}, expected [510, 1, 256]")
        out[f.stem] = np.ascontiguousarray(a)
    return out
