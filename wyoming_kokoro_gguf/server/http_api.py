"""Optional HTTP side door (--http-port): health for supervisors, WAV for scripts, a page to try voices.

Bound to --http-host, loopback by default: the API has no authentication.  It shares the
Wyoming server's engine, scheduler and phrase cache, so a browser request waits its turn like
any Wyoming client and never blocks one.

* GET /health      JSON: state, model, plan, voices, cache and load figures (503 once failed)
* GET /api/voices  JSON: every voice with language and description, and the default voice
* GET /api/tts     ?text=&voice=&speed= -> audio/wav (24 kHz, 16-bit, mono); errors as JSON;
                   ssml=1 (or a POST body of Content-Type application/ssml+xml): text is SSML
* POST /api/tts    the same fields as a JSON object or a form (texts too long for a URL)
* GET /            the test page (web/index.html)
"""

from __future__ import annotations

import io
import logging
import time
import wave
from pathlib import Path

import numpy as np
from aiohttp import web

from wyoming_kokoro_gguf.audio import CHANNELS, SAMPLE_RATE, SAMPLE_WIDTH
from wyoming_kokoro_gguf.server.context import ServerContext
from wyoming_kokoro_gguf.server.errors import RequestError
from wyoming_kokoro_gguf.server.segmenter import TextSegmenter
from wyoming_kokoro_gguf.server.voices import voice_description
from wyoming_kokoro_gguf.synth import ssml

_LOGGER = logging.getLogger(__name__)
WEB_DIR = Path(__file__).resolve().parent / "web"
CTX_KEY: web.AppKey = web.AppKey("ctx", object)


SSML_TYPES = ("application/ssml+xml", "application/xml", "text/xml")


def _error(status: int, text: str, code: str) -> web.Response:
    return web.json_response({"error": text, "code": code}, status=status)


def to_wav(chunks: list[np.ndarray]) -> bytes:
    """16-bit mono WAV bytes at the server's rate."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(SAMPLE_RATE)
        for chunk in chunks:
            wav.writeframes(chunk.astype("<i2", copy=False).tobytes())
    return buf.getvalue()


async def health(request: web.Request) -> web.Response:
    """Process health for supervisors and the test page."""
    ctx: ServerContext = request.app[CTX_KEY]
    doc = ctx.health()
    return web.json_response(doc, status=503 if doc["state"] == "failed" else 200)


async def voices(request: web.Request) -> web.Response:
    """The voice list, as describe gives it, for the page's picker."""
    ctx: ServerContext = request.app[CTX_KEY]
    items = [
        {
            "name": v.name,
            "language": v.language,
            "language_name": v.language_name,
            "gender": v.gender,
            "blend": v.blend,
            "description": voice_description(v),
        }
        for v in sorted(ctx.engine.voices.values(), key=lambda v: (v.language, v.name))
    ]
    return web.json_response(
        {"state": ctx.engine.state, "default": ctx.default_voice, "voices": items}
    )


async def _params(request: web.Request) -> dict[str, str]:
    """GET query parameters, or a POST's JSON object / form fields (for texts too long for a URL)."""
    if request.method != "POST":
        return dict(request.query)
    if request.content_type in SSML_TYPES:  # the body is the SSML itself
        return {**request.query, "text": await request.text(), "ssml": "1"}
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise RequestError("the request body is not valid JSON", "bad_request") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object", "bad_request")
    else:
        body = dict(await request.post())
    return {k: v if isinstance(v, str) else str(v) for k, v in body.items()}


def _units(text: str, params: dict[str, str]) -> list[str]:
    """The request's units of text: SSML parsed whole (synth/ssml.py), plain text segmented."""
    if params.get("ssml", "").lower() in ("1", "true", "yes"):
        return ssml.units(text)
    segmenter = TextSegmenter()
    return segmenter.feed(text) + segmenter.finish()


async def tts(request: web.Request) -> web.Response:
    """Synthesize text= with voice= (default voice if absent) at speed=; returns a WAV.

    GET /api/tts?text=...; POST /api/tts with a JSON object or form fields of the same names.
    """
    ctx: ServerContext = request.app[CTX_KEY]
    try:
        params = await _params(request)
    except RequestError as err:
        return _error(400, err.text, err.code)
    text = params.get("text", "")
    if not text.strip():
        return _error(400, "give the text to speak: /api/tts?text=...", "no_text")
    try:
        speed = float(params.get("speed", ctx.speed))
    except ValueError:
        return _error(400, "speed must be a number between 0.5 and 2.0", "bad_speed")
    if not 0.5 <= speed <= 2.0:
        return _error(400, "speed must be between 0.5 and 2.0", "bad_speed")
    started = time.monotonic()
    job = None
    try:
        ctx.check_text(text)
        voice = await ctx.resolve_voice(params.get("voice") or None, strict=True)
        job = ctx.scheduler.create_job(speed)
        for unit in _units(text, params):
            job.add_text(unit)
        job.close()
        job.start(voice)
        ctx.requests += 1
        chunks = [audio async for audio in job.chunks()]
    except RequestError as err:
        status = 503 if err.code in ("engine_failed", "engine_crashed", "busy") else 400
        _LOGGER.warning("/api/tts refused (%d): %s", status, err.text)
        return _error(status, err.text, err.code)
    finally:
        if job is not None:
            job.cancel()
    samples = sum(int(c.size) for c in chunks)
    elapsed = time.monotonic() - started
    _LOGGER.info(
        "/api/tts: %d chars, voice %s, %.2f s of audio in %.2f s",
        len(text),
        voice,
        samples / SAMPLE_RATE,
        elapsed,
    )
    return web.Response(
        body=to_wav(chunks),
        content_type="audio/wav",
        headers={
            "Cache-Control": "no-store",
            "X-Voice": voice,
            "X-Audio-Seconds": f"{samples / SAMPLE_RATE:.3f}",
            "X-Synthesis-Seconds": f"{elapsed:.3f}",
        },
    )


async def index(request: web.Request) -> web.StreamResponse:
    """The page to try the voices."""
    return web.FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def make_app(ctx: ServerContext) -> web.Application:
    """The aiohttp application (routes above) bound to a server context."""
    # A URL long enough for --max-text-chars characters, percent-encoded (up to 12 bytes each).
    line = 12 * ctx.max_text_chars + 8192
    app = web.Application(
        client_max_size=line,
        handler_args={"max_line_size": line, "max_field_size": 16384},
    )
    app[CTX_KEY] = ctx
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/api/voices", voices)
    app.router.add_get("/api/tts", tts)
    app.router.add_post("/api/tts", tts)
    return app


async def start_http(ctx: ServerContext, host: str, port: int) -> web.AppRunner:
    """Serve the HTTP API in the running event loop; OSError if the port is taken."""
    runner = web.AppRunner(make_app(ctx), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host=host, port=port, shutdown_timeout=1.0)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    for addr in runner.addresses:
        _LOGGER.info("HTTP on http://%s:%s/", *addr[:2])
    return runner
