"""The downloader on its own, against a real local HTTP server."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import time
from urllib.parse import quote

import pytest

from nailong_bot.fetch import FetchError, Fetcher, is_public_address, make_ssl_context, read_local_file
from nailong_testkit import YELLOW, ImageServer, free_port, still


def fetcher(**overrides) -> Fetcher:
    settings = dict(
        max_bytes=1024 * 1024,
        connect_timeout=1.0,
        read_timeout=0.5,
        retries=0,
        max_concurrent=4,
        retry_delay=0.01,
    )
    return Fetcher(**{**settings, **overrides})


async def test_downloads_an_image(image_server) -> None:
    data = still(YELLOW)
    client = fetcher()
    assert await client.fetch(image_server.add("plain.jpg", data)) == data
    await client.aclose()


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "/local/path.jpg", "data:,x"]
)
async def test_only_http_and_https(url: str) -> None:
    client = fetcher()
    with pytest.raises(FetchError, match="unsupported URL scheme"):
        await client.fetch(url)
    await client.aclose()


async def test_client_errors_are_not_retried(image_server) -> None:
    client = fetcher(retries=2)
    before = image_server.requests["/status/404"]
    with pytest.raises(FetchError, match="HTTP 404"):
        await client.fetch(image_server.url("status/404"))
    assert image_server.requests["/status/404"] - before == 1
    await client.aclose()


async def test_server_errors_are_retried(image_server) -> None:
    client = fetcher(retries=2)
    before = image_server.requests["/status/503"]
    with pytest.raises(FetchError, match="HTTP 503"):
        await client.fetch(image_server.url("status/503"))
    assert image_server.requests["/status/503"] - before == 3
    await client.aclose()


async def test_time_out_is_retried_then_given_up(image_server) -> None:
    client = fetcher(retries=1)
    started = time.monotonic()
    before = image_server.requests["/slow"]
    with pytest.raises(FetchError, match="timed out|too slow"):
        await client.fetch(image_server.url("slow?s=3"))
    assert image_server.requests["/slow"] - before == 2
    assert time.monotonic() - started < 2.5
    await client.aclose()


async def test_connection_reset(image_server) -> None:
    client = fetcher()
    with pytest.raises(FetchError, match="network error") as caught:
        await client.fetch(image_server.url("reset"))
    assert caught.value.retryable
    await client.aclose()


async def test_nothing_listening() -> None:
    client = fetcher()
    with pytest.raises(FetchError, match="network error"):
        await client.fetch(f"http://127.0.0.1:{free_port()}/a.jpg")
    await client.aclose()


async def test_body_over_the_cap_is_abandoned_early(image_server) -> None:
    client = fetcher(max_bytes=256 * 1024)
    with pytest.raises(FetchError, match="too large"):
        await client.fetch(image_server.url("huge"))
    await asyncio.sleep(0.2)
    # The server could write 128 MB; the client stopped reading right after the cap.
    assert image_server.huge_bytes_sent < 16 * 1024 * 1024
    with pytest.raises(FetchError, match="too large"):
        await client.fetch(image_server.url("huge-declared"))
    await client.aclose()


async def test_downloads_at_once_are_bounded() -> None:
    client = fetcher(max_concurrent=2, read_timeout=2.0)
    with ImageServer() as server:  # its own server: others' slow requests would count here
        results = await asyncio.gather(*(client.fetch(server.url(f"slow?s=0.2&n={i}")) for i in range(6)))
        assert len(results) == 6
        assert server.max_active == 2
    await client.aclose()


async def test_tls_failure_on_qq_hosts_retries_over_http(image_server, caplog_loguru) -> None:
    # A plain-HTTP port answers a TLS handshake with garbage: the same failure as QQ's CDN gives.
    url = image_server.add("tls.jpg", still(YELLOW)).replace("http://", "https://")
    client = fetcher(http_fallback_hosts=frozenset({"127.0.0.1"}))
    assert await client.fetch(url) == still(YELLOW)
    assert any("retrying over http" in line for line in caplog_loguru)
    await client.aclose()


async def test_tls_failure_elsewhere_is_a_clear_error(image_server) -> None:
    url = image_server.add("tls-other.jpg", still(YELLOW)).replace("http://", "https://")
    client = fetcher(http_fallback_hosts=frozenset(), retries=2)
    with pytest.raises(FetchError, match="TLS error") as caught:
        await client.fetch(url)
    assert caught.value.tls and not caught.value.retryable
    assert image_server.requests["/img/tls-other.jpg"] == 0
    await client.aclose()


def test_ssl_context_verifies_and_offers_the_qq_cdn_ciphers() -> None:
    context = make_ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    names = {cipher["name"] for cipher in context.get_ciphers()}
    assert {"AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"} <= names


def test_reads_the_local_file_get_image_names(tmp_path) -> None:
    image = tmp_path / "图片 cache" / "6B4DE3DF.jpg"
    image.parent.mkdir()
    image.write_bytes(still(YELLOW))
    assert read_local_file(str(image), 1 << 20) == still(YELLOW)
    assert read_local_file(image.as_uri(), 1 << 20) == still(YELLOW)  # file:// URL, spaces and CJK escaped


def test_local_file_errors_are_clear(tmp_path) -> None:
    with pytest.raises(FetchError, match="another machine or in a container"):
        read_local_file(str(tmp_path / "missing.jpg"), 1 << 20)
    with pytest.raises(FetchError, match="relative path"):
        read_local_file("data/image/x.jpg", 1 << 20)
    with pytest.raises(FetchError, match="not a regular file"):
        read_local_file(str(tmp_path), 1 << 20)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    with pytest.raises(FetchError, match="not a regular file"):
        read_local_file(str(fifo), 1 << 20)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(FetchError, match="too large"):
        read_local_file(str(big), 1024)


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ("redirect-loop", "too many redirects"),
        ("redirect-file", "unusable address"),
        ("bad-gzip", "bad content encoding"),
    ],
)
async def test_errors_retrying_cannot_help_fail_at_once(image_server, route: str, reason: str) -> None:
    client = fetcher(retries=2)
    before = image_server.requests[f"/{route}"]
    with pytest.raises(FetchError, match=reason) as caught:
        await client.fetch(image_server.url(route))
    assert not caught.value.retryable
    # One request (a redirect loop: the redirects of one request), never a second round.
    assert image_server.requests[f"/{route}"] - before == (6 if route == "redirect-loop" else 1)
    await client.aclose()


@pytest.mark.parametrize("url", ["http://[::1/a.jpg", "http:///a.jpg"])
async def test_malformed_urls_are_a_fetch_error(url: str) -> None:
    client = fetcher(retries=2)
    with pytest.raises(FetchError):
        await client.fetch(url)
    await client.aclose()


async def test_one_deadline_across_retries() -> None:
    # Each try could last 1 + 2 × 2 s and there are five retries; the image gets 1 s in all.
    client = fetcher(retries=5, connect_timeout=1.0, read_timeout=2.0, deadline=1.0)
    with ImageServer() as server:
        with pytest.raises(FetchError, match="too slow"):
            await client.fetch(server.url("slow?s=3"))
        assert server.requests["/slow"] == 1
    await client.aclose()


async def test_downloads_from_one_address_are_bounded_whatever_its_names() -> None:
    client = fetcher(max_concurrent=4, max_per_host=1, read_timeout=3.0)
    with ImageServer() as server, ImageServer(host="127.0.0.2") as elsewhere:
        # Three names of one address (an IPv4-mapped IPv6 spelling too): one slot between them.
        names = ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"]
        slow = [
            asyncio.create_task(client.fetch(server.url(f"slow?s=0.5&n={i}").replace("127.0.0.1", name)))
            for i, name in enumerate(names)
        ]
        # Another address has slots of its own.
        assert await client.fetch(elsewhere.add("other-address.jpg", still(YELLOW))) == still(YELLOW)
        assert not any(task.done() for task in slow)
        assert len(await asyncio.gather(*slow)) == 3
        assert server.max_active == 1
    await client.aclose()


async def test_fetched_bytes_take_a_slot_of_the_next_stage(image_server) -> None:
    client = fetcher()
    deciding = asyncio.Semaphore(1)
    url = image_server.add("handed-over.jpg", still(YELLOW))
    assert await client.fetch(url, deciding) == still(YELLOW)
    assert deciding.locked()  # the caller now holds it, and releases it after the decision
    await client.aclose()


def test_system_files_are_refused_symlinks_too(tmp_path) -> None:
    link = tmp_path / "kmsg.jpg"
    link.symlink_to("/proc/kmsg")  # a "regular file" whose read() may wait for the kernel forever
    for location in ("/proc/kmsg", "/proc/self/environ", "/sys/kernel/notes", "/dev/zero", str(link)):
        with pytest.raises(FetchError, match="refused a system file"):
            read_local_file(location, 1 << 20)


def test_local_reads_can_be_restricted_to_directories(tmp_path) -> None:
    allowed, elsewhere = tmp_path / "napcat" / "cache", tmp_path / "home"
    allowed.mkdir(parents=True)
    elsewhere.mkdir()
    inside, outside = allowed / "A1.jpg", elsewhere / "secret.jpg"
    inside.write_bytes(still(YELLOW))
    outside.write_bytes(still(YELLOW))
    escape = allowed / "escape.jpg"
    escape.symlink_to(outside)
    assert read_local_file(str(inside), 1 << 20, [allowed]) == still(YELLOW)
    for location in (outside, escape, allowed / ".." / ".." / "home" / "secret.jpg"):
        with pytest.raises(FetchError, match="outside NAILONG_LOCAL_IMAGE_DIRS"):
            read_local_file(str(location), 1 << 20, [allowed])


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("2002:c0a8:101::", False),  # 6to4 of 192.168.1.1
    ],
)
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "169.254.169.254", "10.0.0.1"]
)
async def test_a_public_only_fetcher_refuses_local_addresses_before_connecting(image_server, host: str) -> None:
    client = fetcher(address_allowed=is_public_address, retries=2)
    url = image_server.add("never-fetched.jpg", still(YELLOW)).replace("127.0.0.1", host)
    with pytest.raises(FetchError, match="refused a non-public address") as caught:
        await client.fetch(url)
    assert not caught.value.retryable
    assert image_server.requests["/img/never-fetched.jpg"] == 0
    await client.aclose()


# Stands in for a public server in the tests: a second loopback address the fetcher is told to allow.
STAND_IN = "127.0.0.2"


def stand_in_only(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return str(address) == STAND_IN


async def test_every_redirect_is_checked_again(image_server) -> None:
    client = fetcher(address_allowed=stand_in_only)
    secret = image_server.add("behind-a-redirect.jpg", still(YELLOW))
    with ImageServer(host=STAND_IN) as public:
        public.add("fine.jpg", still(YELLOW))
        hop = public.url("redirect?to=" + quote(public.url("img/fine.jpg"), safe=""))
        assert await client.fetch(hop) == still(YELLOW)  # a redirect to an allowed address is followed
        for target in (secret, secret.replace("127.0.0.1", "localhost")):
            with pytest.raises(FetchError, match="refused a non-public address"):
                await client.fetch(public.url("redirect?to=" + quote(target, safe="")))
    assert image_server.requests["/img/behind-a-redirect.jpg"] == 0
    await client.aclose()


async def test_the_checked_address_is_the_one_connected_to(image_server, monkeypatch) -> None:
    # DNS rebinding: the name's first answer is allowed, later answers point inside.
    real = socket.getaddrinfo
    answers = iter([STAND_IN])

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            return real(next(answers, "127.0.0.1"), *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    client = fetcher(address_allowed=stand_in_only)
    image_server.add("rebound.jpg", still(YELLOW))
    with ImageServer(host=STAND_IN) as public:
        public.add("rebound.jpg", still(YELLOW))
        assert await client.fetch(f"http://rebind.test:{public.port}/img/rebound.jpg") == still(YELLOW)
        # The request went to the checked address, named as the URL names it.
        assert public.host_headers[f"rebind.test:{public.port}"] == 1
    assert image_server.requests["/img/rebound.jpg"] == 0
    await client.aclose()


async def test_group_fetches_reach_local_addresses_by_name(image_server) -> None:
    client = fetcher()  # no address check: the OneBot implementation's URLs may be local
    url = image_server.add("by-name.jpg", still(YELLOW)).replace("127.0.0.1", "localhost")
    assert await client.fetch(url) == still(YELLOW)
    assert image_server.host_headers[f"localhost:{image_server.port}"] >= 1
    await client.aclose()


async def test_a_name_that_fails_to_resolve_is_retried(image_server, monkeypatch) -> None:
    real = socket.getaddrinfo
    failures = iter([socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")])

    def flaky(host, *args, **kwargs):
        if host == "flaky.test":
            if (error := next(failures, None)) is not None:
                raise error
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    client = fetcher(retries=1, address_allowed=lambda address: True)  # connects to what it resolved
    url = image_server.add("flaky-name.jpg", still(YELLOW)).replace("127.0.0.1", "flaky.test")
    assert await client.fetch(url) == still(YELLOW)
    await client.aclose()
