"""Outbound channels: signed webhooks (Standard Webhooks) and plain-text email."""

import base64
import ipaddress
import json
import secrets
import smtplib
import socket
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from standardwebhooks import Webhook

# Short on purpose: a slow receiver must not hold a worker; RQ retries with backoff.
WEBHOOK_TIMEOUT = httpx.Timeout(connect=3.0, read=5.0, write=5.0, pool=3.0)
SMTP_TIMEOUT_SECONDS = 10


class DeliveryError(Exception):
    """A channel could not deliver; the message is safe to store and log (no secrets)."""


class UnsafeTarget(ValueError):
    """A webhook URL this service refuses to call."""


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# IPv6 addresses that carry an IPv4 address some router or translator delivers to: NAT64's
# well-known prefix (and ::ffff:0:0/96 and 6to4, which `ipaddress` unwraps itself).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not for the open internet, though Python 3.11's `is_global` calls them global: the 6to4 relay
# anycast, local-use NAT64, IPv6 site-local, and IPv4-compatible IPv6 (`::127.0.0.1`).
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(network) for network in ("192.88.99.0/24", "64:ff9b:1::/48", "fec0::/10", "::/96")
)


def _is_public(address: str) -> bool:
    """Only globally routed unicast: an allow rule (`is_global`), so that ranges like 100.64.0.0/10
    (carrier-grade NAT, some clouds' metadata) are refused without being listed."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.teredo is not None:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
        if embedded is not None:
            return _is_public(str(embedded))
    return ip.is_global and not ip.is_multicast and not any(ip in network for network in _NOT_GLOBAL)


def check_webhook_url(url: str, allow_private: bool) -> None:
    """Refuse plain http and private, loopback or link-local targets unless allowed (SSRF guard)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # e.g. an unclosed IPv6 bracket or a port out of range
        raise UnsafeTarget("Must be an absolute http(s) URL.") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise UnsafeTarget("Must be an absolute http(s) URL.")
    if parts.username or parts.password:
        raise UnsafeTarget("Must not contain credentials.")
    if allow_private:
        return
    if parts.scheme != "https":
        raise UnsafeTarget("Must use https.")
    try:
        addresses = {
            str(info[4][0]) for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
        }
    except (OSError, ValueError):
        raise UnsafeTarget("The host name does not resolve.") from None
    if not all(_is_public(address) for address in addresses):
        raise UnsafeTarget("Must not point at a private, loopback or link-local address.")


def send_webhook(
    url: str, secret: str, message_id: str, payload: dict[str, Any], allow_private: bool
) -> None:
    """POST one signed event. The message id stays the same on every retry, so receivers can dedupe."""
    try:
        check_webhook_url(url, allow_private)  # again at delivery: DNS may have changed
    except UnsafeTarget as exc:
        raise DeliveryError(f"refused target: {exc}") from None
    body = json.dumps(payload, separators=(",", ":"))
    now = datetime.now(UTC)  # standardwebhooks reads the timestamp as UTC whatever its zone
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "user-agent": "todoapi-webhooks/1",
    }
    try:
        response = httpx.post(
            url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT, follow_redirects=False
        )
    except httpx.TimeoutException:
        raise DeliveryError("timed out") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"connection failed: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"receiver answered HTTP {response.status_code}")


def send_email(smtp_url: str, to: str, subject: str, text: str) -> None:
    """One plain-text message through the server in `SMTP_URL` (smtp://, or smtps:// for TLS)."""
    parts = urlsplit(smtp_url)
    message = EmailMessage()
    sender = unquote(parts.username or "")
    message["From"] = sender if "@" in sender else "todoapi <todoapi@localhost>"
    message["To"] = to
    message["Subject"] = " ".join(subject.split())  # a title may hold line breaks; headers may not
    message.set_content(text)
    client_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    try:
        with client_class(
            parts.hostname or "localhost", parts.port or 0, timeout=SMTP_TIMEOUT_SECONDS
        ) as client:
            if parts.username and parts.password:
                client.login(unquote(parts.username), unquote(parts.password))
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"smtp failed: {type(exc).__name__}") from None
