"""Start-up and shutdown of the Wyoming server: flags to configuration, ports, engine, discovery.

The order matters: the ports are taken first (a server that cannot listen starts no engine),
then the engine process and the scheduler start, then the server is announced over zeroconf
once its voices are known (Home Assistant reads the voice list only when it sets the
integration up).  See docs/ARCHITECTURE.md for the flow from a Wyoming event to audio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from wyoming.server import AsyncServer, AsyncStdioServer

from wyoming_kokoro_gguf.host.plan import PlanError, parse_count
from wyoming_kokoro_gguf.server import addon_options
from wyoming_kokoro_gguf.server.config import ServerConfig
from wyoming_kokoro_gguf.server.context import ServerContext
from wyoming_kokoro_gguf.server.errors import EngineFailed, one_line
from wyoming_kokoro_gguf.server.handler import KokoroEventHandler
from wyoming_kokoro_gguf.synth.lowering import MAX_PASSES

if TYPE_CHECKING:
    from aiohttp import web

_LOGGER = logging.getLogger(__name__)


def _check_args(args: argparse.Namespace) -> ServerConfig:
    """Validate flags the parser cannot, then build the configuration; ValueError with one line."""
    if not 0.5 <= float(args.speed) <= 2.0:
        raise ValueError(f"--speed {args.speed}: must be between 0.5 and 2.0")
    if int(args.samples_per_chunk) <= 0:
        raise ValueError("--samples-per-chunk must be above 0")
    if int(args.max_text_chars) <= 0:
        raise ValueError("--max-text-chars must be above 0")
    if args.cache_mb is not None and float(args.cache_mb) < 0:
        raise ValueError("--cache-mb must be 0 (off) or more")
    if args.http_port is not None and not 0 <= int(args.http_port) <= 65535:
        raise ValueError(f"--http-port {args.http_port}: not a port number")
    try:
        parse_count(args.threads, "--threads")
        parse_count(args.passes, "--passes", MAX_PASSES)
    except PlanError as err:
        raise ValueError(str(err)) from None
    AsyncServer.from_uri(args.uri)  # raises ValueError for a bad URI
    return ServerConfig.from_args(args)


async def _register_zeroconf(ctx: ServerContext, config: ServerConfig) -> Any:
    """Announce the server for Home Assistant's discovery once the voices are known."""
    uri = urlparse(config.uri)
    if uri.scheme != "tcp":
        _LOGGER.warning("--zeroconf needs a tcp:// URI; not registering %s", config.uri)
        return None
    try:  # an optional extra: wyoming_kokoro_gguf[zeroconf]
        from wyoming.zeroconf import HomeAssistantZeroconf
    except ImportError:
        _LOGGER.error(
            "--zeroconf needs the zeroconf package: pip install 'wyoming_kokoro_gguf[zeroconf]'"
        )
        return None
    with contextlib.suppress(EngineFailed):
        # Home Assistant reads the voice list once, when it sets the integration up.
        await ctx.engine.wait_voices()
    host = uri.hostname if uri.hostname not in (None, "", "0.0.0.0", "::") else None
    try:
        zc = HomeAssistantZeroconf(port=int(uri.port or 10200), name=config.zeroconf, host=host)
        await zc.register_server()
    except Exception as err:  # noqa: BLE001 - discovery is a convenience, not a reason to stop
        _LOGGER.error("zeroconf registration failed: %s", one_line(err))
        return None
    _LOGGER.info("Zeroconf: registered %s._wyoming._tcp.local. on %s:%s", zc.name, zc.host, zc.port)
    return zc


class _CannotStart(Exception):
    """A port could not be taken (already logged): the server exits with status 1."""


async def _serve(config: ServerConfig) -> int:
    """Serve until a signal, the end of stdio, or an engine that cannot load; the exit status."""
    ctx = ServerContext(config)
    server = AsyncServer.from_uri(config.uri)
    stop = _stop_on_signals()
    http_runner: web.AppRunner | None = None
    zeroconf_task: asyncio.Task | None = None
    server_task: asyncio.Task | None = None
    try:
        if config.http_port is not None:
            http_runner = await _start_http(ctx, config)
        server_task = await _listen(server, partial(KokoroEventHandler, ctx), config.uri)
        ctx.start()  # only once the ports are ours: no engine for a server that cannot listen
        if config.zeroconf:
            zeroconf_task = asyncio.create_task(_register_zeroconf(ctx, config))
        waiters = {
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(ctx.engine.failed.wait()),
        }
        if server_task is not None:
            waiters.add(server_task)
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            if w is not server_task:
                w.cancel()
        return 1 if ctx.engine.failed.is_set() else 0
    except _CannotStart:
        return 1
    finally:
        await _shut_down(ctx, server, server_task, zeroconf_task, http_runner)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (where the loop can handle signals)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def _start_http(ctx: ServerContext, config: ServerConfig) -> web.AppRunner:
    """The HTTP side door on --http-host:--http-port; _CannotStart if the port is taken.

    Its module is imported only here, when the door is asked for: aiohttp's server costs the
    front end 13 MB of RSS (measured), memory a 2 GB board running without it keeps.
    """
    from wyoming_kokoro_gguf.server.http_api import start_http

    assert config.http_port is not None
    try:
        return await start_http(ctx, config.http_host, config.http_port)
    except OSError as err:
        _LOGGER.error(
            "cannot serve HTTP on %s:%s: %s",
            config.http_host,
            config.http_port,
            _os_error_text(err),
        )
        raise _CannotStart from err


async def _listen(
    server: AsyncServer, factory: Callable[..., Any], uri: str
) -> asyncio.Task | None:
    """Take the Wyoming port (the task serving stdio, for stdio://); _CannotStart if taken."""
    if isinstance(server, AsyncStdioServer):
        return asyncio.create_task(server.run(factory))
    try:
        await server.start(factory)
    except OSError as err:
        _LOGGER.error("cannot listen on %s: %s", uri, _os_error_text(err))
        raise _CannotStart from err
    _log_listening(server, uri)
    return None


async def _shut_down(
    ctx: ServerContext,
    server: AsyncServer,
    server_task: asyncio.Task | None,
    zeroconf_task: asyncio.Task | None,
    http_runner: web.AppRunner | None,
) -> None:
    """Close everything _serve opened, the engine process last."""
    if server_task is not None and not server_task.done():
        server_task.cancel()
    with contextlib.suppress(Exception):
        await server.stop()
    if zeroconf_task is not None:
        zeroconf_task.cancel()
        with contextlib.suppress(BaseException):
            zc = await zeroconf_task
            if zc is not None:
                await zc._aiozc.async_close()
    if http_runner is not None:
        with contextlib.suppress(Exception):
            await http_runner.cleanup()
    await ctx.stop()
    _LOGGER.info("Stopped")


def _os_error_text(err: OSError) -> str:
    """'address already in use' rather than asyncio's long wrapper text."""
    if err.errno:
        return os.strerror(err.errno).lower()
    return str(err)


def _log_listening(server: Any, uri: str) -> None:
    inner = getattr(server, "_server", None)
    sockets = getattr(inner, "sockets", None) or []
    for sock in sockets:
        addr = sock.getsockname()
        if isinstance(addr, tuple):
            _LOGGER.info("Listening on tcp://%s:%s", addr[0], addr[1])
        else:
            _LOGGER.info("Listening on unix://%s", addr)
    if not sockets:
        _LOGGER.info("Listening on %s", uri)


def main(args: argparse.Namespace) -> int:
    """Run the server with the parsed command line (from __main__.run); the exit status."""
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format=args.log_format,
        stream=sys.stderr,
    )
    try:
        args = addon_options.apply(args)
    except Exception as err:  # noqa: BLE001 - AddonOptionsError (or an unreadable file): one line
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    try:
        config = _check_args(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _LOGGER.debug("configuration: %s", config)
    try:
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:
        return 0
