"""Test kit shared by the plugin tests, the end-to-end test and the benchmark.

- a tiny deterministic ONNX model with the trainer's metadata contract (yellow → nailong),
- synthetic images (stills, animated GIFs, broken and hostile files),
- a local HTTP image server with misbehaving routes,
- a fake OneBot v11 implementation that connects to the bot over a real reverse WebSocket.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
from PIL import ExifTags, Image, ImageDraw

YELLOW = (255, 220, 0)
BLUE = (40, 90, 220)
WHITE = (255, 255, 255)
FIVE_LABELS = ["nailong", "emoji", "anime", "others", "long"]
TINY_THRESHOLD = 0.7
# The superuser the plugin tests and the end-to-end test configure.
SUPERUSER = 10000


# --- the tiny model -------------------------------------------------------------------------------


def build_tiny_model(
    path: Path,
    *,
    labels: list[str] | None = None,
    metadata: bool = True,
    size: int = 64,
    threshold: float = TINY_THRESHOLD,
    metrics: dict[str, float] | None = None,
    top_half: bool = False,
    frames: int | None = None,
    version: str = "0.0.1",
    yellow: bool = True,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """GlobalAveragePool → Flatten → Gemm: logit(nailong) - logit(rest) = 2·(R + G − 2B − 5).

    On ImageNet-normalised input a yellow image scores ≈ 0.99, white, black, blue and red ≤ 0.1.
    Without ``metadata`` the input is dynamic in H/W and the file carries no metadata_props.
    ``top_half``: only the upper half of the input counts, so the model tells which way is up.
    ``frames``: the frame count written into the metadata (none written by default, as in older exports).
    ``yellow=False``: a model that learnt yellow is not nailong (every image scores low), as a refresh may.
    """
    import onnx
    from onnx import TensorProto, helper

    labels = labels or ["nailong", "other"]
    weights = np.zeros((len(labels), 3), dtype=np.float32)
    bias = np.zeros(len(labels), dtype=np.float32)
    weights[0] = [2.0, 2.0, -4.0]
    bias[0] = -10.0 if yellow else -40.0
    spatial: list[Any] = [size, size] if metadata else ["height", "width"]
    crop = [helper.make_node("Slice", ["input", "top", "middle", "rows"], ["seen"])] if top_half else []
    half_bounds = [
        helper.make_tensor(name, TensorProto.INT64, [1], [value])
        for name, value in (("top", 0), ("middle", size // 2), ("rows", 2))
    ]
    graph = helper.make_graph(
        [
            *crop,
            helper.make_node("GlobalAveragePool", ["seen" if top_half else "input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
            helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"], transB=1),
        ],
        "tiny_nailong",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, *spatial])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(labels)])],
        [
            helper.make_tensor("weight", TensorProto.FLOAT, weights.shape, weights.ravel().tolist()),
            helper.make_tensor("bias", TensorProto.FLOAT, bias.shape, bias.tolist()),
            *(half_bounds if top_half else []),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        props = {
            "labels": json.dumps(labels),
            "positive_label": "nailong",
            "input_size": str(size),
            "mean": json.dumps([0.485, 0.456, 0.406]),
            "std": json.dumps([0.229, 0.224, 0.225]),
            "resize": "bilinear",
            "threshold": str(threshold),
            "model_name": "tiny-test",
            "version": version,
            "metrics": json.dumps(metrics or {}),
            "data": json.dumps({}),
            "created_at": "2025-01-01T00:00:00Z",
        }
        if frames is not None:
            props["frames"] = str(frames)
        props.update(extra_metadata or {})
        helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_checksum(model_path: Path) -> Path:
    sidecar = model_path.with_name(model_path.name + ".sha256")
    sidecar.write_text(f"{hashlib.sha256(model_path.read_bytes()).hexdigest()}  {model_path.name}\n")
    return sidecar


# --- images ---------------------------------------------------------------------------------------


def framed(color: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    """``color`` with a border 3 levels off it: not blank to the frame rule (a solid frame scores 0 under
    every rule), still too flat for a pHash (the tests match such images by their bytes only). The border
    leans yellow (R, G up, B down, where the range allows), so the tiny model scores the image like
    ``color`` or a hair higher, never lower: yellow keeps its ≈ 0.995."""
    r, g, b = color
    image = Image.new("RGB", size, (r + 3 if r <= 252 else r, g + 3 if g <= 252 else g, b - 3 if b >= 3 else b))
    border = max(1, min(size) // 16)
    image.paste(color, (border, border, size[0] - border, size[1] - border))
    return image


def still(color: tuple[int, int, int], fmt: str = "JPEG", size: tuple[int, int] = (96, 96)) -> bytes:
    buffer = io.BytesIO()
    framed(color, size).save(buffer, format=fmt)
    return buffer.getvalue()


def patterned(
    color: tuple[int, int, int], seed: int, fmt: str = "JPEG", size: tuple[int, int] = (160, 160)
) -> bytes:
    """Shapes in shades of ``color``: the tiny model scores it like ``color``, and unlike a flat
    image it has a perceptual hash, far from other seeds' (same seed, other colour: the same hash)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        x0, y0 = (int(v) for v in rng.integers(0, size[0] - 30, 2))
        w, h = (int(v) for v in rng.integers(20, size[0] // 2, 2))
        shade = tuple(int(c * s) for c, s in zip(color, rng.uniform(0.55, 1.0, 3)))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=shade)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def reposted(data: bytes) -> bytes:
    """What a repost does to an image: half the size, re-encoded as JPEG at quality 60."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    buffer = io.BytesIO()
    half = image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)
    half.save(buffer, "JPEG", quality=60)
    return buffer.getvalue()


def animated_gif(colors: Iterable[tuple[int, int, int]], size: tuple[int, int] = (64, 64)) -> bytes:
    frames = [framed(color, size) for color in colors]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    return buffer.getvalue()


def transparent_sticker(color: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    """A sticker that is mostly transparent around a small coloured patch."""
    image = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    image.paste((*color, 255), (40, 40, 56, 56))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


# How a camera stores an upright picture under each EXIF orientation: the inverse of what a viewer applies.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright_scene(size: tuple[int, int] = (120, 80)) -> Image.Image:
    """Yellow on top, blue below, and a red corner top left: every orientation looks different."""
    image = Image.new("RGB", size, BLUE)
    image.paste(YELLOW, (0, 0, size[0], size[1] // 2))
    image.paste((220, 30, 30), (0, 0, size[0] // 4, size[1] // 4))
    return image


def saved_with_orientation(upright: Image.Image, orientation: int, fmt: str = "PNG", **options) -> bytes:
    """``upright`` as a camera saves it: pixels as the sensor saw them, and the EXIF tag to turn them."""
    stored = upright if orientation == 1 else upright.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format=fmt, exif=exif, **options)
    return buffer.getvalue()


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header announcing width×height pixels (10 G by default) over a tiny body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


def large_sparse_png(width: int, height: int) -> bytes:
    """A large RGBA PNG that compresses to little (a 6000×6600 one is ~180 KB): a nailong-yellow disc
    with a blue bar on a transparent sheet, as an attacker's sticker might be."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse([width // 6, height // 6, width * 5 // 6, height * 5 // 6], fill=(*YELLOW, 255))
    draw.rectangle([width // 3, height * 2 // 5, width * 2 // 3, height * 9 // 20], fill=(*BLUE, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


def png_variant(png: bytes, text: str) -> bytes:
    """The same pixels in other bytes: a tEXt chunk after the header (no new decode of the pixels)."""
    body = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    end_of_header = 8 + 25  # signature, then IHDR: length, type, 13 bytes, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]


def truncated_jpeg() -> bytes:
    noisy = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def gif_300_frames() -> bytes:
    return animated_gif([WHITE if i % 2 else (200, 200, 200) for i in range(300)], size=(160, 160))


# Bad input, each as the URL an image segment would carry (served by an ImageServer).
BAD_INPUTS = {
    "404": lambda server: server.url("status/404"),
    "time-out": lambda server: server.url("slow?s=2"),
    "connection-reset": lambda server: server.url("reset"),
    "html-as-jpeg": lambda server: server.url("html"),
    "truncated-jpeg": lambda server: server.add("truncated.jpg", truncated_jpeg()),
    "decompression-bomb-png": lambda server: server.add("bomb.png", bomb_png(), "image/png"),
    "over-the-byte-cap": lambda server: server.url("huge"),
    "declared-over-the-byte-cap": lambda server: server.url("huge-declared"),
    "300-frame-gif": lambda server: server.add("300.gif", gif_300_frames(), "image/gif"),
    "empty-body": lambda server: server.add("empty.jpg", b""),
}


def md5_name(data: bytes, ext: str = "jpg") -> str:
    """How OneBot implementations name a received image."""
    return hashlib.md5(data).hexdigest().upper() + "." + ext


# --- the image server -----------------------------------------------------------------------------


class _QuietHTTPServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on /huge and /reset are the point


class ImageServer:
    """Serves registered bytes at /img/<name> and misbehaves on purpose at:

    /status/<code>, /slow (answers after ``slow_seconds`` or ?s=<seconds>), /reset (TCP RST),
    /html (HTML as image/jpeg),
    /huge (an endless body without Content-Length), /huge-declared (Content-Length over any cap),
    /redirect-loop (redirects to itself), /redirect-file (redirects to file:///etc/passwd),
    /redirect?to=<url> (redirects there),
    /bad-gzip (a body that claims gzip and is not), /trickle/<name>?every=<seconds> (the registered
    file one byte at a time). ``requests`` counts every path asked for, ``host_headers`` every
    Host header. ``host``: the loopback address it listens on (Linux answers on all of 127.0.0.0/8).
    """

    def __init__(self, slow_seconds: float = 3.0, host: str = "127.0.0.1") -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.requests: Counter[str] = Counter()
        self.host_headers: Counter[str] = Counter()
        self.huge_bytes_sent = 0
        self.slow_seconds = slow_seconds
        # Requests to /slow being served right now, and the most at once.
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in one segment: with separate small writes, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every response.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                server.requests[path] = server.requests[path] + 1
                server.host_headers[self.headers.get("Host", "")] += 1
                route = getattr(server, "_route_" + path.strip("/").split("/")[0].replace("-", "_"), None)
                if route is None:
                    self._send(404, b"not found", "text/plain")
                else:
                    route(self, path)

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.host = host
        self._httpd = _QuietHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def add(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        self.files[name] = (data, content_type)
        return self.url(f"img/{name}")

    def _route_img(self, handler: Any, path: str) -> None:
        entry = self.files.get(path.removeprefix("/img/"))
        if entry is None:
            handler._send(404, b"not found", "text/plain")
        else:
            handler._send(200, entry[0], entry[1])

    def _route_slow(self, handler: Any, path: str) -> None:
        query = dict(part.partition("=")[::2] for part in handler.path.partition("?")[2].split("&"))
        seconds = float(query["s"]) if query.get("s") else self.slow_seconds
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(seconds)
            handler._send(200, still(YELLOW), "image/jpeg")
        finally:
            with self._lock:
                self.active -= 1

    def _route_trickle(self, handler: Any, path: str) -> None:
        data, content_type = self.files[path.removeprefix("/trickle/")]
        query = dict(part.partition("=")[::2] for part in handler.path.partition("?")[2].split("&"))
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            for byte in data:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(float(query.get("every") or 0.1))
        except OSError:
            pass

    def _route_redirect_loop(self, handler: Any, path: str) -> None:
        handler.send_response(302)
        handler.send_header("Location", "/redirect-loop")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _route_redirect(self, handler: Any, path: str) -> None:
        query = dict(part.partition("=")[::2] for part in handler.path.partition("?")[2].split("&"))
        handler.send_response(302)
        handler.send_header("Location", unquote(query["to"]))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _route_redirect_file(self, handler: Any, path: str) -> None:
        handler.send_response(302)
        handler.send_header("Location", "file:///etc/passwd")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _route_bad_gzip(self, handler: Any, path: str) -> None:
        body = b"this is not gzip at all"
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _route_status(self, handler: Any, path: str) -> None:
        handler._send(int(path.rsplit("/", 1)[1]), b"error", "text/plain")

    def _route_reset(self, handler: Any, path: str) -> None:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
        handler.close_connection = True

    def _route_html(self, handler: Any, path: str) -> None:
        handler._send(200, b"<!doctype html><html><body>403 Forbidden</body></html>", "image/jpeg")

    def _route_huge(self, handler: Any, path: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        block = b"\xff" * 65536
        try:
            for _ in range(2000):  # 128 MB at most
                handler.wfile.write(block)
                self.huge_bytes_sent += len(block)
        except OSError:
            pass

    def _route_huge_declared(self, handler: Any, path: str) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(1 << 30))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True


# --- OneBot v11 events ----------------------------------------------------------------------------


def image_segment(url: str | None, file: str | None = None, sub_type: int = 0) -> dict:
    data: dict[str, Any] = {"file": file or "", "sub_type": sub_type, "summary": ""}
    if url is not None:
        data["url"] = url
    return {"type": "image", "data": data}


def mface_segment(url: str, package: int = 1, emoji: str = "abc") -> dict:
    return {
        "type": "mface",
        "data": {"url": url, "emoji_package_id": package, "emoji_id": emoji, "key": "k", "summary": "[奶龙]"},
    }


def text_segment(text: str) -> dict:
    return {"type": "text", "data": {"text": text}}


_message_ids = itertools.count(1000)


def group_message_payload(
    segments: list[dict],
    *,
    self_id: int,
    group_id: int,
    user_id: int,
    role: str = "member",
    message_id: int | None = None,
) -> dict:
    """A `message.group.normal` event as OneBot v11 implementations post it."""
    raw = "".join(s["data"]["text"] if s["type"] == "text" else f"[CQ:{s['type']}]" for s in segments)
    return {
        "time": int(time.time()),
        "self_id": self_id,
        "post_type": "message",
        "message_type": "group",
        "sub_type": "normal",
        "message_id": next(_message_ids) if message_id is None else message_id,
        "group_id": group_id,
        "user_id": user_id,
        "anonymous": None,
        "message": segments,
        "raw_message": raw,
        "font": 0,
        "sender": {"user_id": user_id, "nickname": "tester", "card": "", "role": role},
    }


# --- a fake OneBot v11 implementation -------------------------------------------------------------


class FakeOneBot:
    """Connects to the bot by reverse WebSocket, posts events and records the API calls it gets.

    ``responses`` maps an action to the ``(retcode, data)`` to answer with, or to a function of the
    call's params that returns them; others get (0, {}).
    ``delays`` maps an action to the seconds its answer is held back (None: it is never answered);
    meanwhile other calls are answered.
    """

    def __init__(self, port: int, self_id: int = 42, access_token: str | None = None) -> None:
        self.port = port
        self.self_id = self_id
        self.access_token = access_token
        self.calls: list[tuple[float, str, dict]] = []
        self.responses: dict[str, tuple[int, Any] | Callable[[dict], tuple[int, Any]]] = {}
        self.delays: dict[str, float | None] = {}
        self._held: set[asyncio.Task] = set()
        self._new_call = asyncio.Event()
        self._ws: Any = None
        self._reader: asyncio.Task | None = None

    async def connect(self, timeout: float = 30.0) -> None:
        import websockets

        headers = {"X-Self-ID": str(self.self_id), "X-Client-Role": "Universal"}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._ws = await websockets.connect(
                    f"ws://127.0.0.1:{self.port}/onebot/v11/ws", additional_headers=headers, max_size=None
                )
                break
            except (OSError, websockets.InvalidHandshake):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
        for held in list(self._held):
            held.cancel()

    async def _read(self) -> None:
        async for raw in self._ws:
            request = json.loads(raw)
            action, params = request.get("action"), request.get("params", {})
            self.calls.append((time.monotonic(), action, params))
            self._new_call.set()
            if action not in self.delays:
                await self._answer(request)
            elif (delay := self.delays[action]) is not None:
                held = asyncio.create_task(self._answer(request, delay))
                self._held.add(held)
                held.add_done_callback(self._held.discard)

    async def _answer(self, request: dict, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        answer = self.responses.get(request.get("action"), (0, {}))
        retcode, data = answer(request.get("params", {})) if callable(answer) else answer
        await self._ws.send(
            json.dumps(
                {
                    "status": "ok" if retcode == 0 else "failed",
                    "retcode": retcode,
                    "data": data,
                    "message": "" if retcode == 0 else "failed on purpose",
                    "echo": request.get("echo"),
                }
            )
        )

    async def post(self, event: dict) -> None:
        await self._ws.send(json.dumps(event))

    async def wait_for(self, action: str, timeout: float = 10.0, **match: Any) -> tuple[float, dict]:
        """The first recorded call of ``action`` whose params include ``match``."""
        deadline = time.monotonic() + timeout
        while True:
            for at, name, params in self.calls:
                if name == action and all(params.get(k) == v for k, v in match.items()):
                    return at, params
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {action} {match} within {timeout}s; calls: {self.calls}")
            self._new_call.clear()
            try:
                await asyncio.wait_for(self._new_call.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def actions(self, name: str | None = None) -> list[tuple[str, dict]]:
        return [(a, p) for _, a, p in self.calls if name is None or a == name]


def live_members(group: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] not in "ZX":
            members.append(int(stat.parent.name))
    return members


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def group_event(
    segments: list[dict],
    *,
    group_id: int = 1,
    user_id: int = 5,
    role: str = "member",
    message_id: int | None = None,
    self_id: int = 42,
    reply_to: int | None = None,
):
    """The same payload as a parsed GroupMessageEvent, for nonebug tests; ``reply_to``: the message
    it replies to, filled in as the adapter does (from get_msg) before any handler runs."""
    from nonebot.adapters.onebot.v11 import GroupMessageEvent, Message
    from nonebot.adapters.onebot.v11.event import Reply, Sender
    from nonebot.compat import type_validate_python

    payload = group_message_payload(
        segments, self_id=self_id, group_id=group_id, user_id=user_id, role=role, message_id=message_id
    )
    event = type_validate_python(GroupMessageEvent, payload)
    if reply_to is not None:
        event.reply = Reply(
            time=payload["time"],
            message_type="group",
            message_id=reply_to,
            real_id=reply_to,
            sender=Sender(),
            message=Message(),
        )
    return event
