"""Fetching a reference clip the caller points at, without becoming an SSRF proxy.

A URL is fetched only over https (http too with F5TTS_ALLOW_HTTP), only when every
address its host resolves to is a public one, and the connection goes to the
address that was checked (so DNS cannot answer differently the second time).
Redirects are followed by hand and every hop is checked again. Size and time are
capped. `s3://` goes through the configured object store; `data:` URIs and plain
base64 (in `ref_audio` too, as many clients send it) are decoded with the same cap.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from handler.errors import UserError, cut, shown
from handler.settings import Settings
from handler.storage import ObjectStore, parse_s3_uri

MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
# Cloud metadata services answer on names as well as on link-local addresses.
BLOCKED_HOSTNAMES = {
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "localhost",
}

# A clip as plain base64 (standard or URL-safe alphabet, maybe line-wrapped); shorter
# strings are names or paths, never a whole audio file.
BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
MIN_BASE64_CHARS = 64
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(ip: IpAddress) -> bool:
    """False for loopback, private, link-local (metadata), multicast, reserved, CGNAT..."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and ip.sixtofour is not None:
        ip = ip.sixtofour
    # fec0::/10 (deprecated site-local) still routes inside some networks, and Python
    # counts it as global.
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_link_local or site_local
    )


class ReferenceFetcher:
    def __init__(
        self,
        settings: Settings,
        store: ObjectStore | None = None,
        *,
        resolve: Resolver = resolve_host,
        address_allowed: Callable[[IpAddress], bool] = is_public_address,
    ) -> None:
        self.settings = settings
        self.store = store
        self.resolve = resolve
        self.address_allowed = address_allowed

    # -- entry points ------------------------------------------------------------
    def fetch(self, source: str) -> bytes:
        """Bytes of a reference given as an https URL, an s3:// URI, a data: URI or plain
        base64."""
        if source.startswith("data:"):
            header, sep, payload = source.partition(",")
            if not sep or not header.endswith(";base64"):
                raise UserError(
                    "A data: URI reference must be base64-encoded (data:audio/wav;base64,...)"
                )
            return self.decode_base64(payload)
        if source.startswith("s3://"):
            return self._fetch_s3(source)
        if URL_SCHEME.match(source):
            return self._fetch_url(source)
        compact = "".join(source.split())
        if len(compact) >= MIN_BASE64_CHARS and BASE64_TEXT.fullmatch(compact):
            return self.decode_base64(compact)
        raise UserError(
            f"ref_audio {shown(source, 40)} is not a reference clip: give an https:// URL, "
            "s3://bucket/key, a data: URI or the audio file as base64 (to use a saved voice, "
            "send its id as voice)"
        )

    def decode_base64(self, payload: str) -> bytes:
        cap = self.settings.max_ref_bytes
        if len(payload) * 3 // 4 > cap + 3:
            raise UserError(
                f"The base64 reference is over {cap} bytes (F5TTS_MAX_REF_BYTES); "
                "send a shorter clip or a URL"
            )
        compact = "".join(payload.split()).replace("-", "+").replace("_", "/")
        try:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise UserError(
                "The reference is not valid base64; encode the audio file's bytes with base64"
            ) from None
        if len(data) > cap:
            raise UserError(f"The reference is {len(data)} bytes; the limit is {cap}")
        return data

    # -- s3 ----------------------------------------------------------------------
    def _fetch_s3(self, uri: str) -> bytes:
        bucket, key = parse_s3_uri(uri)
        if self.store is None:
            raise UserError(
                f"{cut(uri)} needs object storage credentials; set S3_BUCKET and the AWS_* "
                "variables, or give the reference as an https URL"
            )
        if bucket not in self.settings.readable_ref_buckets:
            raise UserError(
                f"s3:// references may only name the bucket {self.settings.s3_bucket!r}, "
                f"not {shown(bucket, 64)}; copy the clip there or list the bucket in "
                "F5TTS_S3_REF_BUCKETS"
            )
        return self.store.get(key, self.settings.max_ref_bytes, bucket=bucket)

    # -- http(s) -----------------------------------------------------------------
    def _fetch_url(self, url: str) -> bytes:
        deadline = time.monotonic() + self.settings.fetch_timeout_s
        for _hop in range(MAX_REDIRECTS + 1):
            status, location, body = self._request(url, deadline)
            if location is None:
                if status != 200:
                    raise UserError(
                        f"Fetching the reference from {_shown(url)} returned HTTP {status}; "
                        "check that the URL is right and publicly readable"
                    )
                return body
            url = urljoin(url, location)
        raise UserError(
            f"The reference URL redirected more than {MAX_REDIRECTS} times; give the final URL"
        )

    def _check_url(self, url: str) -> tuple[str, str, int, str]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise UserError(f"{_shown(url)} is not a valid URL") from None
        scheme = parts.scheme.lower()
        allowed = ("https", "http") if self.settings.allow_http else ("https",)
        if scheme not in allowed:
            hint = " (plain http needs F5TTS_ALLOW_HTTP=1)" if scheme == "http" else ""
            raise UserError(
                f"Reference URLs must use https{hint}, got {_shown(url)}; "
                "give an https:// URL, an s3:// URI or base64 data"
            )
        host = (parts.hostname or "").rstrip(".").lower()
        if not host:
            raise UserError(f"{_shown(url)} has no host name; give a full https:// URL")
        port = port or (443 if scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        return scheme, host, port, target

    def _pinned_address(self, host: str, port: int) -> str:
        refused = UserError(
            f"Refusing to fetch from {cut(host)}: it is a private, loopback, link-local or "
            "metadata address; host the reference on a public https server or use s3://"
        )
        if host in BLOCKED_HOSTNAMES or host.endswith((".internal", ".local", ".localhost")):
            raise refused
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            candidates = [str(literal)]
        except ValueError:
            try:
                candidates = self.resolve(host, port)
            except (OSError, UnicodeError):
                raise UserError(
                    f"The reference host {cut(host)} does not resolve; check the URL"
                ) from None
        if not candidates:
            raise UserError(f"The reference host {cut(host)} does not resolve; check the URL")
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in candidates]
        # All of them: a name that also resolves to a private address is refused.
        if not all(self.address_allowed(a) for a in addresses):
            raise refused
        return str(addresses[0])

    def _request(self, url: str, deadline: float) -> tuple[int, str | None, bytes]:
        scheme, host, port, target = self._check_url(url)
        ip = self._pinned_address(host, port)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timeout()
        conn: _PinnedHTTPConnection | _PinnedHTTPSConnection
        if scheme == "https":
            conn = _PinnedHTTPSConnection(host, ip, port, remaining)
        else:
            conn = _PinnedHTTPConnection(host, ip, port, remaining)
        # The socket timeout bounds each read, not the exchange: a server that trickles
        # its headers or TLS handshake byte by byte would never hit it. This watchdog
        # cuts the connection at the deadline.
        watchdog = threading.Timer(remaining, conn.abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request("GET", target, headers={"User-Agent": "f5tts-runpod-worker"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
                return resp.status, resp.getheader("Location"), b""
            if resp.status != 200:
                return resp.status, None, b""
            return 200, None, self._read_capped(resp, deadline, conn.aborted)
        except TimeoutError:
            raise self._timeout() from None
        except ssl.SSLError as exc:
            if conn.aborted.is_set():
                raise self._timeout() from None
            raise UserError(
                f"TLS with {cut(host)} failed ({cut(exc.reason or exc)}); the server needs a valid "
                "certificate"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            if conn.aborted.is_set():
                raise self._timeout() from None
            raise UserError(
                f"Could not fetch the reference from {cut(host)} ({type(exc).__name__}); "
                "check the URL and that the server is up"
            ) from None
        finally:
            watchdog.cancel()
            conn.close()

    def _read_capped(
        self, resp: http.client.HTTPResponse, deadline: float, aborted: threading.Event
    ) -> bytes:
        cap = self.settings.max_ref_bytes
        declared = resp.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise self._too_big(int(declared))
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise self._timeout()
            chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
            if not chunk:
                if aborted.is_set():  # the watchdog cut it: what was read is not the file
                    raise self._timeout()
                # read1 reports a connection closed before Content-Length as a normal end.
                if resp.length:
                    raise UserError(
                        f"The reference server closed the connection after {size} of "
                        f"{size + resp.length} bytes; check the URL or host the clip elsewhere"
                    )
                return b"".join(chunks)
            size += len(chunk)
            if size > cap:
                raise self._too_big(size)
            chunks.append(chunk)

    def _too_big(self, size: int) -> UserError:
        return UserError(
            f"The reference is over {self.settings.max_ref_bytes} bytes (got at least {size}; "
            "F5TTS_MAX_REF_BYTES); send a shorter or compressed clip"
        )

    def _timeout(self) -> UserError:
        return UserError(
            f"Fetching the reference took over {self.settings.fetch_timeout_s:g} s "
            "(F5TTS_FETCH_TIMEOUT_S); host it somewhere faster or send it as base64"
        )


def _shown(url: str) -> str:
    return shown(url)


class _Abortable:
    """Remembers the raw socket so another thread can cut the exchange (`abort`)."""

    _raw: socket.socket | None = None
    aborted: threading.Event

    def _open_raw(self, ip: str, port: int, timeout: float) -> socket.socket:
        self._raw = socket.create_connection((ip, port), timeout)
        if self.aborted.is_set():  # the deadline passed while connecting
            self._raw.close()
            raise TimeoutError
        return self._raw

    def abort(self) -> None:
        self.aborted.set()
        raw = self._raw
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)


class _PinnedHTTPConnection(_Abortable, http.client.HTTPConnection):
    """Connects to the checked address while the Host header keeps the name."""

    def __init__(self, host: str, ip: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip
        self.aborted = threading.Event()

    def connect(self) -> None:
        self.sock = self._open_raw(self._ip, self.port, self.timeout)


class _PinnedHTTPSConnection(_Abortable, http.client.HTTPSConnection):
    """TLS to the checked address, with SNI and certificate checks for the host name."""

    def __init__(self, host: str, ip: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip
        self.aborted = threading.Event()

    def connect(self) -> None:
        sock = self._open_raw(self._ip, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]
