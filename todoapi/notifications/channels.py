"""Outbound channels: signed webhooks (Standard Webhooks) and plain-text email."""

import base64
import ipaddress
import json
import secrets
import smtplib
import socket
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import httpcore
import httpx
from standardwebhooks import Webhook

# Short on purpose: a slow receiver must not hold a worker; RQ retries with backoff. Each socket
# operation has its own bound, and the whole attempt one more: a receiver that answers a byte at a
# time, each within the read timeout, would otherwise hold the worker as long as it liked.
WEBHOOK_TIMEOUT = httpx.Timeout(connect=3.0, read=5.0, write=5.0, pool=3.0)
WEBHOOK_ATTEMPT_SECONDS = 10.0
SMTP_TIMEOUT_SECONDS = 10


class DeliveryError(Exception):
    """A channel could not deliver; the message is safe to store and log (no secrets)."""


class UnsafeTarget(ValueError):
    """A webhook URL this service refuses to call."""


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# IPv6 addresses that carry an IPv4 address some router or translator delivers to: NAT64's
# well-known prefix and SIIT's IPv4-translated ::ffff:0:0:0/96 (and ::ffff:0:0/96 and 6to4, which
# `ipaddress` unwraps itself).
_TRANSLATED = tuple(ipaddress.ip_network(network) for network in ("64:ff9b::/96", "::ffff:0:0:0/96"))
# Not for the open internet, though `is_global` calls them global on Pythons without the fix for
# CVE-2024-4032 (before 3.11.10, as this host's): the 6to4 relay anycast, IETF protocol assignments,
# local-use NAT64, IPv6 site-local, and IPv4-compatible IPv6 (`::127.0.0.1`).
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(network)
    for network in ("192.88.99.0/24", "192.0.0.0/24", "64:ff9b:1::/48", "fec0::/10", "::/96")
)


def _is_public(address: str) -> bool:
    """Only globally routed unicast: an allow rule (`is_global`), so that ranges like 100.64.0.0/10
    (carrier-grade NAT, some clouds' metadata) are refused without being listed."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in network for network in _TRANSLATED):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        if embedded is not None:
            return _is_public(str(embedded))
    return ip.is_global and not ip.is_multicast and not any(ip in network for network in _NOT_GLOBAL)


def _checked(url: str, allow_private: bool) -> httpx.URL:
    """`url` if its form is one we call: http(s), no credentials, https unless private targets are
    allowed. No DNS look-up."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:  # e.g. an unclosed IPv6 bracket, a bad IDNA label
        raise UnsafeTarget("Must be an absolute http(s) URL.") from None
    if target.scheme not in {"https", "http"} or not target.raw_host or not 0 <= (target.port or 0) <= 65535:
        raise UnsafeTarget("Must be an absolute http(s) URL.")
    if target.userinfo:
        raise UnsafeTarget("Must not contain credentials.")
    if not allow_private and target.scheme != "https":
        raise UnsafeTarget("Must use https.")
    return target


def _host(target: httpx.URL) -> str:
    """The name as DNS, TLS's SNI and the certificate see it (IDNA), or an IP literal."""
    return target.raw_host.decode("ascii")


def _vetted_addresses(target: httpx.URL, allow_private: bool) -> list[str]:
    """The addresses `target`'s host resolves to, in the resolver's order; all of them must be
    public unless private targets are allowed."""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(_host(target), port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError):
        raise UnsafeTarget("The host name does not resolve.") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not allow_private and not all(_is_public(address) for address in addresses):
        raise UnsafeTarget("Must not point at a private, loopback or link-local address.")
    return addresses


def check_webhook_url(url: str, allow_private: bool) -> None:
    """Refuse plain http and private, loopback or link-local targets unless allowed (SSRF guard)."""
    target = _checked(url, allow_private)
    if not allow_private:
        _vetted_addresses(target, allow_private=False)


class _Deadline(httpcore.NetworkBackend):
    """httpcore's sockets, each operation bounded by the time left of one attempt as well as by its
    own timeout."""

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds
        self._sockets = httpcore.SyncBackend()

    def left(self, timeout: float | None, expired: type[httpcore.TimeoutException]) -> float:
        left = self.until - time.monotonic()
        if left <= 0:
            raise expired("the attempt ran out of time")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        timeout = self.left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._sockets.connect_tcp(host, port, timeout, local_address, socket_options), self
        )

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = self._deadline.left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _failure(exc: Exception) -> DeliveryError:
    if isinstance(exc, httpcore.TimeoutException):
        return DeliveryError("timed out")
    return DeliveryError(f"connection failed: {type(exc).__name__}")


def send_webhook(
    url: str, secret: str, message_id: str, payload: dict[str, Any], allow_private: bool
) -> None:
    """POST one signed event. The message id stays the same on every retry, so receivers can dedupe.

    The target is checked again here (DNS may have changed since the URL was set), and the request
    goes to the addresses that check saw: the connection makes no look-up of its own, so a name
    that answers a public address to the check and a private one a moment later (DNS rebinding)
    still reaches only the public one. The Host header and TLS (SNI, the certificate's name) keep
    the URL's name. Only the answer's status is read, never its body (it could be gigabytes), and
    the attempt ends within WEBHOOK_ATTEMPT_SECONDS whatever the receiver does."""
    try:
        target = _checked(url, allow_private)
        addresses = _vetted_addresses(target, allow_private)
    except UnsafeTarget as exc:
        raise DeliveryError(f"refused target: {exc}") from None
    body = json.dumps(payload, separators=(",", ":")).encode()
    now = datetime.now(UTC)
    headers: dict[bytes | str, bytes | str] = {
        "Host": target.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body.decode()),
        "User-Agent": "todoapi-webhooks/1",
    }
    # httpcore, not httpx's client, for its network backend: the attempt's deadline lives there.
    # httpx's SSL context: certifi's roots, or SSL_CERT_FILE's.
    extensions = {"timeout": WEBHOOK_TIMEOUT.as_dict(), "sni_hostname": _host(target)}
    with httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(), network_backend=_Deadline(WEBHOOK_ATTEMPT_SECONDS)
    ) as pool:
        for position, address in enumerate(addresses, start=1):
            at = httpcore.URL(
                scheme=target.raw_scheme, host=address, port=target.port, target=target.raw_path
            )
            try:
                with pool.stream(
                    "POST", at, headers=headers, content=body, extensions=extensions
                ) as response:
                    status = response.status
                break
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                if position == len(addresses):
                    raise _failure(exc) from None
                # As a connect to the name would: the next address (IPv4, when IPv6 has no route).
            except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError) as exc:
                raise _failure(exc) from None
    if not 200 <= status < 300:
        raise DeliveryError(f"receiver answered HTTP {status}")


def _names_loopback(host: str) -> bool:
    """Whether an SMTP_URL's host is this machine by name (localhost, or a loopback address)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send_email(smtp_url: str, to: str, subject: str, text: str) -> None:
    """One plain-text message through the server in `SMTP_URL`: smtps:// is TLS from the start;
    smtp:// upgrades with STARTTLS whenever the server offers it, except on loopback (nothing leaves
    the machine), and never sends its password in clear to another machine. TLS checks the server's
    certificate against its name (httpx's SSL context: certifi's roots, or SSL_CERT_FILE's)."""
    parts = urlsplit(smtp_url)
    message = EmailMessage()
    sender = unquote(parts.username or "")
    message["From"] = sender if "@" in sender else "todoapi <todoapi@localhost>"
    message["To"] = to
    message["Subject"] = " ".join(subject.split())  # a title may hold line breaks; headers may not
    message.set_content(text)
    host, port = parts.hostname or "localhost", parts.port or 0
    credentials = (
        (unquote(parts.username), unquote(parts.password)) if parts.username and parts.password else None
    )
    tls = httpx.create_ssl_context()
    try:
        if parts.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=SMTP_TIMEOUT_SECONDS, context=tls)
        else:
            client = smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            if parts.scheme != "smtps" and not _names_loopback(host):
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=tls)
                elif credentials:
                    raise DeliveryError("smtp server offers no STARTTLS: the password is not sent in clear")
            if credentials:
                client.login(*credentials)
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"smtp failed: {type(exc).__name__}") from None
