"""Fetch: from an image segment to its bytes, whatever the source (a URL, base64, or what `get_image`
answers), each bounded in bytes, in time and in how many run at once."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import os
import socket
import ssl
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from nonebot.adapters.onebot.v11 import Bot
from nonebot.log import logger

from .images import ImageRef
from .shares import GroupSlot, SharedSlots

# QQ's image CDN only completes a TLS 1.2 handshake with RSA key exchange, which Python's default
# cipher list leaves out (the "SSLV3_ALERT_HANDSHAKE_FAILURE" other plugins' users hit).
_QQ_CDN_CIPHERS = "AES128-GCM-SHA256:AES256-GCM-SHA384"
# QQ's own image hosts: they serve the same image over plain http when TLS still fails, and they serve
# nearly every image, so the per-host limit (meant for a slow stranger) would only throttle the guard.
QQ_IMAGE_HOSTS = frozenset({"multimedia.nt.qq.com.cn", "gchat.qpic.cn", "c2cpicdw.qpic.cn"})
_CHUNK = 64 * 1024
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Kernel pseudo-files and devices: reads that never end (/proc/kmsg) or never should happen.
_SYSTEM_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
# Local reads run in their own daemon threads (a read() stuck in the kernel cannot be cancelled, and must
# not keep the process from exiting); at most this many at once, so stuck ones cannot pile up.
_LOCAL_READERS = 4


class FetchError(Exception):
    """The image could not be fetched; ``reason`` is short and bilingual, fit for a log line."""

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


def is_public_address(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet: not loopback, private, link-local, multicast,
    unspecified or reserved, nor an IPv6 spelling of such an IPv4 address (mapped, 6to4, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public_address(embedded)
    return address.is_global and not (address.is_multicast or address.is_reserved)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise FetchError(f"bad URL / 地址无效: {error}") from error
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"unsupported URL scheme / 不支持的地址: {parsed.scheme or url[:40]!r}")
    if not parsed.host:
        raise FetchError(f"bad URL / 地址无效: no host in {url[:80]!r}")
    return parsed


@dataclass(frozen=True)
class _Hop:
    """One request of a download: its URL, and the address its downloads are counted by (None for
    QQ's image hosts, which the group fetcher does not limit)."""

    url: httpx.URL
    address: IPAddress | None
    # Connected to ``address`` itself, with the URL's host name in the Host header and the TLS
    # handshake: where addresses are checked, a second DNS answer must not send the request elsewhere.
    pinned: bool = False


def decode_base64(text: str, max_bytes: int) -> bytes:
    if len(text) * 3 // 4 > max_bytes:
        raise FetchError(f"too large / 文件过大: > {max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise FetchError("bad base64 image / base64 图片无效") from error


def read_local_file(location: str, max_bytes: int, allowed_dirs: Iterable[Path] | None = None) -> bytes:
    """The image at ``location``, an absolute path or ``file://`` URL on this machine: what a standard
    OneBot v11 ``get_image`` answers (the implementation's own download). Only regular files outside
    /proc, /sys and /dev, and inside ``allowed_dirs`` when given (symlinks resolved first).
    Blocks: :class:`Fetcher` calls it in a thread with a deadline."""
    path = Path(url2pathname(urlsplit(location).path) if location.startswith("file://") else location)
    if not path.is_absolute():
        raise FetchError(f"get_image returned a relative path / get_image 返回了相对路径: {location!r}")
    real = Path(os.path.realpath(path))
    if any(real.is_relative_to(root) for root in _SYSTEM_ROOTS):
        raise FetchError(f"refused a system file / 拒绝读取系统文件: {location} → {real}")
    if allowed_dirs is not None and not any(real.is_relative_to(folder) for folder in allowed_dirs):
        raise FetchError(
            f"outside NAILONG_LOCAL_IMAGE_DIRS / 不在 NAILONG_LOCAL_IMAGE_DIRS 允许的目录里: {location} → {real}"
        )
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        descriptor = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise FetchError(f"not a regular file / 不是普通文件: {location}")
            with open(descriptor, "rb", closefd=False) as file:
                data = file.read(max_bytes + 1)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise FetchError(
            f"cannot read the file get_image named; does the OneBot implementation run on another machine "
            f"or in a container? / 读不到 get_image 给出的文件（OneBot 实现是否在另一台机器或容器里？）: "
            f"{location}: {error.strerror or error}"
        ) from error
    if len(data) > max_bytes:
        raise FetchError(f"too large / 文件过大: > {max_bytes} bytes")
    return data


@dataclass
class _HostSlots:
    slots: asyncio.Semaphore
    # Downloads from the host running or waiting for a slot.
    users: int = 0


class Fetcher:
    """One shared httpx client for every download of the plugin, and the limits on getting bytes:
    at most ``max_concurrent`` downloads, ``max_per_host`` of them from one host, and ``deadline``
    seconds for one image from its first request to giving up, retries included (local reads too)."""

    def __init__(
        self,
        *,
        max_bytes: int,
        connect_timeout: float,
        read_timeout: float,
        retries: int,
        max_concurrent: int,
        max_per_host: int = 2,
        deadline: float = 30.0,
        local_image_dirs: Iterable[Path] | None = None,
        http_fallback_hosts: frozenset[str] = QQ_IMAGE_HOSTS,
        retry_delay: float = 0.5,
        address_allowed: Callable[[IPAddress], bool] | None = None,
    ) -> None:
        """``address_allowed``: the addresses this fetcher may reach, checked after DNS and again after
        every redirect (the API's: :func:`is_public_address`); None: any (group images come from the
        OneBot implementation, whose URLs may rightly be local)."""
        self.max_bytes = max_bytes
        self.retries = retries
        self.max_per_host = max_per_host
        self.deadline = deadline
        self.local_image_dirs = (
            None if local_image_dirs is None else [Path(os.path.realpath(d)) for d in local_image_dirs]
        )
        self.http_fallback_hosts = http_fallback_hosts
        self.retry_delay = retry_delay
        self.address_allowed = address_allowed
        self._connect_timeout = connect_timeout
        # A server that trickles bytes just under the read time-out still leaves time for a retry.
        self._attempt_limit = connect_timeout + 2 * read_timeout
        # One group may take all download slots but one: another group's image always finds one, and a
        # slow host (max_per_host) cannot fill a group's share alone with the default four.
        self._downloads = SharedSlots(max_concurrent, share=max(1, max_concurrent - 1))
        # Only addresses with a download running or waiting: an entry goes with its last download.
        self._hosts: dict[IPAddress, _HostSlots] = {}
        self._local_readers = asyncio.Semaphore(_LOCAL_READERS)
        self._client = httpx.AsyncClient(
            verify=make_ssl_context(),
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
            # Followed here, each one resolved and checked like the first request.
            follow_redirects=False,
            # Where addresses are checked, connections go to them directly: a proxy (HTTP(S)_PROXY)
            # would reach whatever it resolves.
            trust_env=address_allowed is None,
            headers={"User-Agent": "nailong-bot (+https://github.com/nonebot/nonebot2)"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    @asynccontextmanager
    async def image_bytes(
        self, bot: Bot, ref: ImageRef, hold: asyncio.Semaphore | GroupSlot, *, group: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes of the image ``ref`` describes, with a slot of ``hold`` taken for as long as they
        are used: fetched bytes are always counted by one limit, the fetch's while they arrive, then
        ``hold``'s. ``group``: whose share of the download slots it takes (see shares.py). Raises
        :class:`FetchError`, or the adapter's error when ``get_image`` fails."""
        data = await self._bytes(bot, ref, hold, group)
        try:
            yield data
        finally:
            hold.release()

    async def _bytes(self, bot: Bot, ref: ImageRef, hold: asyncio.Semaphore | GroupSlot, group: int | None) -> bytes:
        if ref.url:
            return await self.fetch(ref.url, hold, group=group)
        if ref.file and ref.file.startswith("base64://"):
            return await self._decoded(ref.file.removeprefix("base64://"), hold)
        if not ref.file:
            raise FetchError("image segment without url or file / 图片消息没有地址")
        # No url in the segment: ask the OneBot implementation where the image is. Many answer with a url
        # or base64; the standard answer is only `file`, a path on the implementation's machine.
        found = await bot.get_image(file=ref.file)
        # Only string fields count: an implementation's odd answer is "no image", not a crash.
        answer = {k: v for k, v in found.items() if isinstance(v, str) and v} if isinstance(found, dict) else {}
        if "url" in answer:
            return await self.fetch(answer["url"], hold, group=group)
        if "base64" in answer:
            return await self._decoded(answer["base64"], hold)
        if "file" in answer:
            return await self._read_local(answer["file"], hold)
        raise FetchError(f"get_image returned no image / get_image 没有返回图片: {ref.file}")

    async def _decoded(self, text: str, hold: asyncio.Semaphore | GroupSlot) -> bytes:
        data = decode_base64(text, self.max_bytes)
        await hold.acquire()
        return data

    async def fetch(
        self, url: str, hold: asyncio.Semaphore | GroupSlot | None = None, *, group: int | None = None
    ) -> bytes:
        """The bytes at ``url``; raises :class:`FetchError` (never anything else) when it fails.
        With ``hold``, returns with a slot of it taken (see :meth:`image_bytes`)."""
        target = _parse_url(url)
        loop = asyncio.get_running_loop()
        give_up_at = 0.0  # set when the first try gets its slots
        attempt = 0
        while True:
            try:
                hop = await self._resolve(target)
                # Host first: waiting behind a slow host must not take a slot other hosts could use.
                async with self._host_slot(hop), self._downloads.slot(group):
                    give_up_at = give_up_at or loop.time() + self.deadline
                    data = await self._download(hop, give_up_at - loop.time())
                    if hold is not None:
                        await hold.acquire()
                    return data
            except FetchError as error:
                # Failed before any slot (the host did not resolve): the deadline starts now.
                give_up_at = give_up_at or loop.time() + self.deadline
                if error.tls and target.scheme == "https" and target.host in self.http_fallback_hosts:
                    logger.warning(
                        f"TLS 握手失败，改用 http 重新下载 / TLS handshake with {target.host} failed "
                        f"({error.reason}); retrying over http"
                    )
                    target = target.copy_with(scheme="http")
                    continue
                if not error.retryable or attempt >= self.retries:
                    raise
                # The back-off holds no slot, and a retry that cannot finish in time is not started.
                delay = self.retry_delay * 2**attempt
                if loop.time() + delay >= give_up_at:
                    raise
                attempt += 1
                logger.info(
                    f"下载失败，第 {attempt} 次重试 / download failed, retry {attempt}: {error.reason}"
                )
                await asyncio.sleep(delay)

    async def _resolve(self, url: httpx.URL) -> _Hop:
        """Where a request for ``url`` goes; FetchError when its host does not resolve, or resolves to
        an address this fetcher may not reach (any of them: the answer is the attacker's to choose)."""
        if self.address_allowed is None and url.host in QQ_IMAGE_HOSTS:
            return _Hop(url, None)
        host = url.raw_host.decode("ascii")
        try:
            addresses, named = [ipaddress.ip_address(host)], False
        except ValueError:
            addresses, named = await self._look_up(host), True
        # An IPv4-mapped IPv6 address is its IPv4 address: counted and connected to as that.
        addresses = [getattr(a, "ipv4_mapped", None) or a for a in addresses]
        refused = [a for a in addresses if self.address_allowed is not None and not self.address_allowed(a)]
        if refused:
            raise FetchError(
                f"refused a non-public address / 拒绝访问非公网地址: {url.host} → {refused[0]} "
                f"(NAILONG_API_ALLOW_PRIVATE_URLS)"
            )
        return _Hop(url, addresses[0], pinned=named and self.address_allowed is not None)

    async def _look_up(self, host: str) -> list[IPAddress]:
        try:
            found = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM), self._connect_timeout
            )
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
        except (OSError, UnicodeError, ValueError, asyncio.TimeoutError) as error:
            raise FetchError(f"cannot resolve the host / 域名解析失败: {host}", retryable=True) from error
        if not addresses:
            raise FetchError(f"cannot resolve the host / 域名解析失败: {host}", retryable=True)
        # IPv4 first: nearly every server reaches it, and the first address is the one connected to.
        return sorted(addresses, key=lambda address: address.version)

    @asynccontextmanager
    async def _host_slot(self, hop: _Hop) -> AsyncIterator[None]:
        # Counted by address, so a host's other names (or a stranger's many) share its slots.
        if hop.address is None or hop.url.host in QQ_IMAGE_HOSTS:
            yield
            return
        entry = self._hosts.setdefault(hop.address, _HostSlots(asyncio.Semaphore(self.max_per_host)))
        entry.users += 1
        try:
            async with entry.slots:
                yield
        finally:
            entry.users -= 1
            if not entry.users:
                del self._hosts[hop.address]

    async def _download(self, hop: _Hop, time_left: float) -> bytes:
        try:
            return await asyncio.wait_for(self._follow(hop), min(self._attempt_limit, time_left))
        except asyncio.TimeoutError as error:
            raise FetchError("download too slow / 下载超时", retryable=True) from error
        except httpx.TimeoutException as error:
            raise FetchError(f"timed out / 下载超时: {type(error).__name__}", retryable=True) from error
        except httpx.InvalidURL as error:  # asking again gets the same answer
            raise FetchError(f"unusable address / 地址不可用: {error}") from error
        except httpx.DecodingError as error:
            raise FetchError(f"bad content encoding / 内容编码无效: {error}") from error
        except (httpx.TransportError, ssl.SSLError) as error:
            if _is_tls_error(error):
                raise FetchError(f"TLS error / TLS 错误: {error}", tls=True) from error
            raise FetchError(
                f"network error / 网络错误: {type(error).__name__}: {error}", retryable=True
            ) from error

    async def _follow(self, hop: _Hop) -> bytes:
        """The body at ``hop``, after at most five redirects, each resolved and checked as the first."""
        redirects = 0
        while isinstance(answer := await self._get(hop), str):
            if redirects == _MAX_REDIRECTS:
                raise FetchError("too many redirects / 重定向过多")
            redirects += 1
            try:
                target = _parse_url(str(hop.url.join(answer)))
            except (FetchError, httpx.InvalidURL) as error:
                raise FetchError(f"unusable address / 地址不可用: redirect to {answer[:100]!r}") from error
            hop = await self._resolve(target)
        return answer

    async def _get(self, hop: _Hop) -> bytes | str:
        """The body of one GET, or the address it redirects to."""
        url, headers, extensions = hop.url, {}, {}
        if hop.pinned:
            # Connection: close, as a kept-alive connection to the address would serve the next
            # request for any other name of it, with this name's TLS handshake.
            headers = {"Host": url.netloc.decode("ascii"), "Connection": "close"}
            if url.scheme == "https":
                extensions = {"sni_hostname": url.raw_host.decode("ascii")}
            url = url.copy_with(host=str(hop.address))
        request = self._client.build_request("GET", url, headers=headers, extensions=extensions)
        response = await self._client.send(request, stream=True)
        try:
            if response.status_code in _REDIRECT_STATUS and "Location" in response.headers:
                return response.headers["Location"]
            if response.status_code != 200:
                raise FetchError(
                    f"HTTP {response.status_code}", retryable=response.status_code in _RETRY_STATUS
                )
            declared = response.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"too large / 文件过大: {declared} > {self.max_bytes} bytes")
            body = bytearray()
            async for chunk in response.aiter_bytes(_CHUNK):
                body += chunk
                if len(body) > self.max_bytes:
                    raise FetchError(f"too large / 文件过大: > {self.max_bytes} bytes")
            return bytes(body)
        finally:
            await response.aclose()

    async def _read_local(self, location: str, hold: asyncio.Semaphore | GroupSlot) -> bytes:
        """:func:`read_local_file` in a daemon thread, within the deadline. A read stuck in the kernel
        keeps its reader slot until it returns (if ever), so stuck reads cost local reads, nothing else."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.deadline
        try:
            await asyncio.wait_for(self._local_readers.acquire(), self.deadline)
        except asyncio.TimeoutError as error:
            raise FetchError("local file reads are stuck / 本地文件读取全部卡住") from error
        outcome: asyncio.Future[bytes] = loop.create_future()

        def finish(data: bytes | None, error: BaseException | None) -> None:  # on the event loop
            if outcome.cancelled():  # the coroutine gave up: the slot is free only now
                self._local_readers.release()
            elif error is not None:
                outcome.set_exception(error)
            else:
                outcome.set_result(data)

        def read() -> None:
            try:
                result = (read_local_file(location, self.max_bytes, self.local_image_dirs), None)
            except BaseException as error:  # handed to the coroutine, which decides what it costs
                result = (None, error)
            try:
                loop.call_soon_threadsafe(finish, *result)
            except RuntimeError:  # the event loop is closed: the bot is shutting down
                pass

        threading.Thread(target=read, name="nailong-local-read", daemon=True).start()
        try:
            data = await asyncio.wait_for(outcome, give_up_at - loop.time())
            await hold.acquire()
            return data
        except asyncio.TimeoutError as error:
            raise FetchError(f"reading the local file took too long / 读取本地文件超时: {location}") from error
        finally:
            if not outcome.cancelled():
                self._local_readers.release()
