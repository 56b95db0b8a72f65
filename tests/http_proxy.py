"""A minimal forward proxy for http:// URLs (no CONNECT), on loopback, for the download tests.

A client configured to use a proxy sends the whole URL in the request line
(``GET http://host:port/path HTTP/1.1``, RFC 9112 section 3.2.2, "absolute-form"); a server only
ever receives that form from a client that treats it as its proxy, so the proxy records each
absolute-form target it forwarded.  ``hosts`` maps names only the proxy can resolve (such as
``kokoro-hub.test``, a reserved name no DNS answers) to addresses: a download from such a name
can only have come through the proxy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from yarl import URL

# Headers that concern one connection, not the message (RFC 9110 section 7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


@dataclass
class ForwardProxy:
    """What went through the proxy: (method, absolute target, headers the client sent)."""

    hosts: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        # The proxy's own client goes straight to the origin, whatever the environment says.
        self._client = aiohttp.ClientSession(trust_env=False, auto_decompress=False)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        target = request.raw_path
        if not target.startswith("http://"):
            return web.Response(status=400, text="not a proxy request (origin-form)")
        self.seen.append((request.method, target, dict(request.headers)))
        url = URL(target)
        upstream = url.with_host(self.hosts.get(url.host or "", url.host or ""))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = url.raw_authority  # the name the client asked for
        headers["Via"] = "1.1 test-proxy"
        assert self._client is not None
        async with self._client.request(
            request.method, upstream, headers=headers, allow_redirects=False
        ) as up:
            resp = web.StreamResponse(status=up.status, reason=up.reason)
            for key, value in up.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    resp.headers.add(key, value)
            await resp.prepare(request)
            async for chunk in up.content.iter_chunked(256 * 1024):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
