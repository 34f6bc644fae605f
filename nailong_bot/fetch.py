"""Fetch: download an image over http(s) with time-outs, a byte cap and a bounded number at once."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

import httpx
from nonebot.log import logger

# QQ's image CDN only completes a TLS 1.2 handshake with RSA key exchange, which Python's default
# cipher list leaves out (the "SSLV3_ALERT_HANDSHAKE_FAILURE" other plugins' users hit).
_QQ_CDN_CIPHERS = "AES128-GCM-SHA256:AES256-GCM-SHA384"
# Hosts that serve the same image over plain http when TLS still fails.
QQ_IMAGE_HOSTS = frozenset({"multimedia.nt.qq.com.cn", "gchat.qpic.cn", "c2cpicdw.qpic.cn"})
_CHUNK = 64 * 1024
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class FetchError(Exception):
    """The image could not be downloaded; ``reason`` is short and bilingual, fit for a log line."""

    def __init__(self, reason: str, *, retryable: bool = False, tls: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.tls = tls


def make_ssl_context() -> ssl.SSLContext:
    """Certificate-verifying context (certifi roots) that also offers the ciphers QQ's CDN needs."""
    context = httpx.create_ssl_context()
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"]
    context.set_ciphers(":".join([*tls12, _QQ_CDN_CIPHERS]))
    return context


def _is_tls_error(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _over_http(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("http", parts.netloc, parts.path, parts.query, parts.fragment))


def read_local_file(location: str, max_bytes: int) -> bytes:
    """The image at ``location``, an absolute path or ``file://`` URL on this machine: what a standard
    OneBot v11 ``get_image`` answers (the implementation's own download). Blocks: call from a thread."""
    path = Path(url2pathname(urlsplit(location).path) if location.startswith("file://") else location)
    if not path.is_absolute():
        raise FetchError(f"get_image returned a relative path / get_image 返回了相对路径: {location!r}")
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
            raise FetchError(f"not a regular file / 不是普通文件: {location}")
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as error:
        raise FetchError(
            f"cannot read the file get_image named; does the OneBot implementation run on another machine "
            f"or in a container? / 读不到 get_image 给出的文件（OneBot 实现是否在另一台机器或容器里？）: "
            f"{location}: {error.strerror or error}"
        ) from error
    if len(data) > max_bytes:
        raise FetchError(f"too large / 文件过大: > {max_bytes} bytes")
    return data


class Fetcher:
    """One shared httpx client for every download of the plugin."""

    def __init__(
        self,
        *,
        max_bytes: int,
        connect_timeout: float,
        read_timeout: float,
        retries: int,
        max_concurrent: int,
        http_fallback_hosts: frozenset[str] = QQ_IMAGE_HOSTS,
        retry_delay: float = 0.5,
    ) -> None:
        self.max_bytes = max_bytes
        self.retries = retries
        self.http_fallback_hosts = http_fallback_hosts
        self.retry_delay = retry_delay
        # A server that trickles bytes just under the read time-out still cannot hold a slot forever.
        self._deadline = connect_timeout + 2 * read_timeout
        self._slots = asyncio.Semaphore(max_concurrent)
        self._client = httpx.AsyncClient(
            verify=make_ssl_context(),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": "nailong-bot (+https://github.com/nonebot/nonebot2)"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> bytes:
        """The bytes at ``url``; raises :class:`FetchError` (never anything else) when it fails."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise FetchError(f"unsupported URL scheme / 不支持的地址: {scheme or url[:40]!r}")
        attempt = 0
        while True:
            try:
                return await self._fetch_once(url)
            except FetchError as error:
                host = urlsplit(url).hostname or ""
                if error.tls and scheme == "https" and host in self.http_fallback_hosts:
                    logger.warning(
                        f"TLS 握手失败，改用 http 重新下载 / TLS handshake with {host} failed "
                        f"({error.reason}); retrying over http"
                    )
                    url, scheme = _over_http(url), "http"
                    continue
                if not error.retryable or attempt >= self.retries:
                    raise
                attempt += 1
                logger.info(
                    f"下载失败，第 {attempt} 次重试 / download failed, retry {attempt}: {error.reason}"
                )
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))

    async def _fetch_once(self, url: str) -> bytes:
        async with self._slots:
            try:
                return await asyncio.wait_for(self._stream(url), self._deadline)
            except asyncio.TimeoutError as error:
                raise FetchError("download too slow / 下载超时", retryable=True) from error
            except httpx.TimeoutException as error:
                raise FetchError(f"timed out / 下载超时: {type(error).__name__}", retryable=True) from error
            except (httpx.TransportError, ssl.SSLError) as error:
                if _is_tls_error(error):
                    raise FetchError(f"TLS error / TLS 错误: {error}", tls=True) from error
                raise FetchError(
                    f"network error / 网络错误: {type(error).__name__}: {error}", retryable=True
                ) from error

    async def _stream(self, url: str) -> bytes:
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchError(
                    f"HTTP {response.status_code}", retryable=response.status_code in _RETRY_STATUS
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"too large / 文件过大: {declared} > {self.max_bytes} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes(_CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchError(f"too large / 文件过大: > {self.max_bytes} bytes")
            return bytes(body)
