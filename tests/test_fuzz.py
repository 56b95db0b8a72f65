"""Protocol robustness: the server's Wyoming input under malformed and hostile bytes.

First the bounded event reader (wyoming_kokoro_gguf.server.limits) on its own, then the real server on
loopback: crafted cases with the answer each must get, seeded random cases (random bytes,
mutated valid events, random headers), and floods that claim gigabytes.  Throughout, a good
client streams like Home Assistant on another connection and must be served every time.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest
from reliability_helpers import (
    RawReply,
    assert_no_traceback,
    header,
    mib,
    raw_exchange,
    record,
    server_rss,
    wait_idle,
)
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, async_write_event
from wyoming_helpers import running_server, stream_like_ha

from wyoming_kokoro_gguf.server.limits import (
    ProtocolError,
    ProtocolLimits,
    check_event,
    limits_for,
    read_event,
)

VOICE = "af_jf_alpha"
RANDOM_CASES = 120
FLOOD_MB = 64
MAX_TEXT = 2000

# ============================================================================ unit: the reader


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def _read(data: bytes, limits: ProtocolLimits | None = None, eof: bool = True):
    return await read_event(_reader(data, eof), limits or ProtocolLimits())


async def _encoded(event: Event) -> bytes:
    """The bytes wyoming's own writer produces for an event."""
    chunks: list[bytes] = []

    class Sink:
        def writelines(self, parts):
            chunks.extend(parts)

        def write(self, part):
            chunks.append(part)

        async def drain(self):
            return None

    await async_write_event(event, Sink())  # type: ignore[arg-type]
    return b"".join(chunks)


async def test_reader_round_trips_what_wyoming_writes() -> None:
    text = "Ünïcödé 🌙 " * (MAX_TEXT // 10)  # every character non-ASCII or an emoji
    for event in [
        Event("describe"),
        Event("synthesize", {"text": text, "voice": {"name": VOICE}}),
        Event("audio-chunk", {"rate": 24000, "width": 2, "channels": 1}, b"\x01\x02" * 100),
    ]:
        got = await _read(await _encoded(event), limits_for(MAX_TEXT))
        assert got is not None
        assert (got.type, got.data, got.payload) == (event.type, event.data, event.payload)
    # Escaped as \uXXXX by a client with ensure_ascii=True: still within the data limit.
    escaped = json.dumps({"text": "😀" * MAX_TEXT}).encode()
    raw = header("synthesize", data_length=len(escaped)) + escaped
    got = await _read(raw, limits_for(MAX_TEXT))
    assert got is not None and got.data["text"] == "😀" * MAX_TEXT


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"hello\n", "bad_event"),
        (b"[1, 2]\n", "bad_event"),
        (b"5\n", "bad_event"),
        (b"null\n", "bad_event"),
        (b"\n", "bad_event"),
        (b'{"data": {}}\n', "bad_event"),
        (b'{"type": 5}\n', "bad_event"),
        (b'{"type": ""}\n', "bad_event"),
        (header("x" * 1000), "bad_event"),
        (b'{"type": "describe\xff\xfe"}\n', "bad_event"),
        (b'{"type": "synthesize", "data": "x"}\n', "bad_event"),
        (header(data_length="10"), "bad_event"),
        (header(data_length=1.5), "bad_event"),
        (header(data_length=-1), "bad_event"),
        (header(data_length=True), "bad_event"),
        (header(payload_length=[1]), "bad_event"),
        (header(data_length=3) + b"[1]", "bad_event"),
        (header(data_length=4) + b"\xff\xfe{}", "bad_event"),
        (b"[" * 60000 + b"\n", "bad_event"),  # nesting deeper than json's recursion limit
        (header(data_length=4_000_000_000), "too_large"),
        (header(payload_length=2**62), "too_large"),
        (b'{"type": "describe", "pad": "' + b"x" * 70_000 + b'"}\n', "too_large"),
        (b"x" * 200_000, "too_large"),  # no newline at all
    ],
)
async def test_reader_refuses_malformed_and_oversized_events(raw: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        await _read(raw)
    assert err.value.code == code
    assert "\n" not in err.value.text and len(err.value.text) < 200


async def test_reader_never_waits_for_data_beyond_the_limit() -> None:
    """A header claiming 4 GB is refused at once, before any of it is read (no EOF needed)."""
    raw = header(data_length=4_000_000_000) + b"\0" * 1000
    with pytest.raises(ProtocolError):
        await asyncio.wait_for(_read(raw, eof=False), timeout=5)


async def test_reader_end_of_stream_inside_an_event_is_a_clean_end() -> None:
    assert await _read(b"") is None
    assert await _read(b'{"type": "desc') is None
    assert await _read(header(data_length=100) + b'{"te') is None
    assert await _read(header(payload_length=10) + b"abc") is None


def test_check_event_fields() -> None:
    ok = check_event(Event("synthesize", {"text": "Hi \udcff", "voice": {"name": "a\ud800"}}))
    assert ok.data == {"text": "Hi \ufffd", "voice": {"name": "a\ufffd"}}
    json.dumps(ok.data, ensure_ascii=False).encode()  # encodable again
    assert check_event(Event("synthesize-start", {})).data == {}
    assert check_event(Event("describe", {"x": 1})).data == {"x": 1}
    for bad in [
        Event("synthesize", {}),
        Event("synthesize", {"text": 5}),
        Event("synthesize", {"text": ["a"]}),
        Event("synthesize", {"text": "a", "voice": "af_heart"}),
        Event("synthesize", {"text": "a", "voice": {"name": 1}}),
        Event("synthesize-chunk", {"text": None}),
        Event("synthesize-start", {"voice": [1]}),
    ]:
        with pytest.raises(ProtocolError):
            check_event(bad)


# ============================================================================ the real server


@pytest.fixture(scope="module")
def server(english_model: Path, tmp_path_factory: pytest.TempPathFactory):
    extra = ("--cache-mb", "0", "--max-text-chars", str(MAX_TEXT))
    with running_server(english_model, tmp_path_factory.mktemp("fuzz"), *extra) as srv:
        yield srv


# What each crafted case must get.  "close": an error event, then the server closes (the byte
# stream cannot be trusted any more); "error": an error event and the connection stays usable
# (a describe that follows is answered); "usable": no error, the connection stays usable.
CRAFTED: list[tuple[str, bytes, str]] = [
    ("not json", b"hello\n", "close"),
    ("json list", b"[1, 2]\n", "close"),
    ("json number", b"5\n", "close"),
    ("empty line", b"\n", "close"),
    ("no type", b'{"data": {}}\n', "close"),
    ("type not a string", b'{"type": 5}\n', "close"),
    ("invalid utf-8 header", b'{"type": "describe\xff"}\n', "close"),
    ("invalid utf-8 data", header(data_length=14) + b'{"text": "\xc3("}', "close"),
    ("data not an object", b'{"type": "synthesize", "data": "x"}\n', "close"),
    ("data_length a string", header(data_length="12"), "close"),
    ("data_length a float", header(data_length=1.5) + b"{", "close"),
    ("data a json list", header(data_length=3) + b"[1]", "close"),
    ("deep nesting", b"[" * 60000 + b"\n", "close"),
    ("huge data_length", header(data_length=4_000_000_000), "close"),
    ("huge payload_length", header(payload_length=2**40), "close"),
    ("header line over 64 KiB", b'{"type": "describe", "p": "' + b"x" * 70_000 + b'"}\n', "close"),
    ("nul bytes", b"\0" * 64 + b"\n", "close"),
    ("text not a string", header(data={"text": 5}), "error"),
    ("text missing", header(data={}), "error"),
    ("voice a string", header(data={"text": "Hi.", "voice": "name"}), "error"),
    ("voice name a number", header(data={"text": "Hi.", "voice": {"name": 7}}), "error"),
    ("chunk text a list", header("synthesize-chunk", data={"text": ["a"]}), "error"),
    ("unknown event type", header("no-such-event", data={"a": 1}), "usable"),
    ("audio sent to a tts server", header("audio-chunk", payload_length=4) + b"\0\0\0\0", "usable"),
    ("stop without start", header("synthesize-stop"), "usable"),
    ("chunk without start", header("synthesize-chunk", data={"text": "Hi."}), "usable"),
    ("stopped from a client", header("synthesize-stopped"), "usable"),
]


def _verdict(reply: RawReply, expected: str) -> str | None:
    """None when the reply is what ``expected`` asks for, else what was wrong."""
    types = reply.types()
    if expected == "close":
        if not reply.closed:
            return f"connection left open: {types}"
        if "error" not in types and not reply.reset:
            return f"closed without an error event: {types}"
    elif expected == "error":
        if "error" not in types:
            return f"no error event: {types}"
        if reply.closed or types[-1] != "info":
            return f"connection not usable after the error: {types} closed={reply.closed}"
    elif expected == "usable" and (
        "error" in types or reply.closed or not types or types[-1] != "info"
    ):
        return f"connection not usable: {types} closed={reply.closed}"
    return None


async def _good_client_loop(port: int, stop: asyncio.Event, results: list[list[str]]) -> None:
    """Home Assistant's streaming request, over and over, until ``stop``."""
    i = 0
    while not stop.is_set():
        async with AsyncTcpClient("127.0.0.1", port) as c:
            ex = await stream_like_ha(c, f"Number {i}.", VOICE, delay=0.0, seed=i)
            results.append(ex.shape())
        i += 1


@pytest.mark.slow
def test_crafted_bad_input_is_refused_and_other_clients_are_served(server) -> None:
    async def scenario() -> tuple[dict[str, str], list[list[str]]]:
        stop = asyncio.Event()
        good: list[list[str]] = []
        loop_task = asyncio.create_task(_good_client_loop(server.port, stop, good))
        wrong: dict[str, str] = {}
        try:
            replies = await asyncio.gather(
                *(
                    raw_exchange(server.port, raw, wait=3.0, then_describe=expected != "close")
                    for _, raw, expected in CRAFTED
                )
            )
            for (name, _, expected), reply in zip(CRAFTED, replies, strict=True):
                problem = _verdict(reply, expected)
                if problem:
                    wrong[name] = problem
            while len(good) < 2:  # at least one good request ran during the bad ones
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loop_task
        return wrong, good

    wrong, good = asyncio.run(scenario())
    assert server.proc.poll() is None
    assert not wrong, json.dumps(wrong, indent=1)
    want = ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"]
    assert all(shape == want for shape in good), good
    record("fuzz_crafted_cases", len(CRAFTED))
    assert wait_idle(server)["active_jobs"] == 0
    assert_no_traceback(server)


def _random_cases(seed: int, count: int) -> list[bytes]:
    """Random bytes, mutated valid events and random headers (deterministic per seed)."""
    rng = random.Random(seed)
    valid = [
        header("describe"),
        header("synthesize", data={"text": "Hi.", "voice": {"name": VOICE}}),
        header("synthesize-start", data={"voice": {"name": VOICE}}),
        header("synthesize-chunk", data={"text": "Hi"}),
        header("synthesize-stop"),
    ]
    values: list[object] = [
        None, True, -1, 0, 1, 2**31, 2**63, 1e308, "", "x" * 300, [], {}, [1], {"a": None},
    ]  # fmt: skip
    cases: list[bytes] = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            data = rng.randbytes(rng.randint(1, 400)).replace(b"\n", b"")
            cases.append(data + b"\n")
        elif kind == 1:
            data = bytearray(rng.choice(valid)[:-1])
            for _ in range(rng.randint(1, 6)):
                pos = rng.randrange(len(data))
                op = rng.randrange(3)
                if op == 0:
                    data[pos] = rng.randrange(256)
                elif op == 1:
                    del data[pos]
                else:
                    data.insert(pos, rng.randrange(256))
            cases.append(bytes(data).replace(b"\n", b"") + b"\n")
        else:
            fields = {
                k: rng.choice(values)
                for k in rng.sample(["data", "data_length", "payload_length", "version"], 2)
            }
            event_type = rng.choice(["synthesize", "describe", "synthesize-chunk", 7, None, ""])
            cases.append(json.dumps({"type": event_type, **fields}).encode() + b"\n")
    return cases


@pytest.mark.slow
def test_random_bad_input_never_harms_the_server(server) -> None:
    """Every random case ends closed, answered or waiting for the rest of an event it announced;
    the server stays up, logs no traceback, and serves a good client meanwhile."""
    cases = _random_cases(seed=9, count=RANDOM_CASES)
    rss_before = server_rss(server)

    async def scenario() -> tuple[list[RawReply], list[list[str]]]:
        stop = asyncio.Event()
        good: list[list[str]] = []
        loop_task = asyncio.create_task(_good_client_loop(server.port, stop, good))
        replies: list[RawReply] = []
        try:
            for start in range(0, len(cases), 20):
                batch = cases[start : start + 20]
                replies += await asyncio.gather(
                    *(raw_exchange(server.port, raw, wait=1.5) for raw in batch)
                )
            while len(good) < 1:
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loop_task
        return replies, good

    replies, good = asyncio.run(scenario())
    assert server.proc.poll() is None
    want = ["audio-start", "audio-chunk+", "audio-stop", "synthesize-stopped"]
    assert good and all(shape == want for shape in good), good
    closed = sum(r.closed for r in replies)
    answered = sum(bool(r.events) for r in replies)
    record(
        "fuzz_random_cases",
        {"cases": len(cases), "closed": closed, "answered": answered, "seed": 9},
    )
    # A line that is not a well-formed event header is refused: only cases that happen to
    # announce more data than they sent may leave a connection waiting.
    waiting = [i for i, r in enumerate(replies) if not r.closed and not r.events]
    assert len(waiting) <= len(cases) // 5, waiting
    assert wait_idle(server)["connections"] == 0
    assert server_rss(server) - rss_before < 32 * 1024 * 1024
    assert_no_traceback(server)


@pytest.mark.parametrize("field", ["data_length", "payload_length"])
@pytest.mark.slow
def test_a_peer_claiming_gigabytes_cannot_grow_the_server(server, field: str) -> None:
    """The header claims 4 GB and the peer keeps sending: the server's memory stays bounded by
    its limits (it refuses the event at once and closes), whatever the peer sends."""
    before = server_rss(server)

    async def flood() -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(header("synthesize", **{field: 4_000_000_000}))
        block = b"\0" * (1 << 20)
        sent, peak = 0, 0
        try:
            for _ in range(FLOOD_MB):
                writer.write(block)
                await asyncio.wait_for(writer.drain(), timeout=10)
                sent += 1
                peak = max(peak, server_rss(server))
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()
        return sent, peak

    started = time.monotonic()
    sent, peak = asyncio.run(flood())
    growth = max(peak, server_rss(server)) - before
    record(f"flood_{field}", {"sent_mib": sent, "rss_growth_mib": mib(growth)})
    assert growth < 16 * 1024 * 1024, f"server RSS grew {mib(growth)} MiB for {sent} MiB sent"
    assert time.monotonic() - started < 120
    assert server.proc.poll() is None and server.health()["state"] == "ready"


@pytest.mark.slow
def test_after_the_fuzz_a_plain_request_still_works(server) -> None:
    async def scenario() -> list[str]:
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            return (await stream_like_ha(c, "All good.", VOICE)).shape()

    assert asyncio.run(scenario()) == [
        "audio-start",
        "audio-chunk+",
        "audio-stop",
        "synthesize-stopped",
    ]
    assert_no_traceback(server)
