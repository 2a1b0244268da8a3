"""The email channel's transport security, against a real SMTP server (aiosmtpd) on 127.0.0.1 that a
name of the test's own (`mail.example`) points at, so it counts as another machine."""

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from tests.processes import free_port
from todoapi.notifications import channels

NAME = "mail.example"


class Server:
    """An SMTP server: what it accepted, whether each message came over TLS, the logins it saw."""

    def __init__(self) -> None:
        self.received: list[tuple[Envelope, bool]] = []
        self.logins: list[tuple[str, bool]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append((envelope, session.ssl is not None))
        return "250 accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        self.logins.append((data.login.decode(), session.ssl is not None))
        return AuthResult(success=True)


@pytest.fixture
def authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # the roots the sender trusts
    return ca


@pytest.fixture(autouse=True)
def mail_example(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == NAME else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def tls_for(authority: trustme.CA, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(context)
    return context


@pytest.fixture
def serve() -> Iterator[Any]:
    controllers: list[Controller] = []

    def start(**options: Any) -> tuple[Server, int]:
        server, port = Server(), free_port()
        controller = Controller(
            server, hostname="127.0.0.1", port=port, authenticator=server.authenticate, **options
        )
        controller.start()
        controllers.append(controller)
        return server, port

    yield start
    for controller in controllers:
        controller.stop()


def send(url: str) -> None:
    channels.send_email(url, "ann@example.com", "Due soon: Pay rent", "Your todo is due.\n")


def test_starttls_is_used_when_offered_and_the_password_goes_over_it(
    serve: Any, authority: trustme.CA
) -> None:
    server, port = serve(tls_context=tls_for(authority, NAME))
    send(f"smtp://todoapi%40example.com:secret@{NAME}:{port}")
    assert [over_tls for _, over_tls in server.received] == [True]
    assert server.logins == [("todoapi@example.com", True)]


def test_starttls_checks_the_certificate_against_the_servers_name(serve: Any, authority: trustme.CA) -> None:
    server, port = serve(tls_context=tls_for(authority, "other.example"))
    with pytest.raises(channels.DeliveryError, match="SSLCertVerificationError"):
        send(f"smtp://user:secret@{NAME}:{port}")
    assert server.received == [] and server.logins == []


def test_no_password_in_clear_to_a_server_without_starttls(serve: Any) -> None:
    server, port = serve(auth_require_tls=False)
    with pytest.raises(channels.DeliveryError, match="no STARTTLS"):
        send(f"smtp://user:secret@{NAME}:{port}")
    assert server.received == [] and server.logins == []


def test_without_a_password_a_server_without_starttls_still_gets_the_message(serve: Any) -> None:
    server, port = serve()
    send(f"smtp://{NAME}:{port}")
    assert [over_tls for _, over_tls in server.received] == [False]


def test_on_loopback_the_password_may_go_in_clear(serve: Any) -> None:
    """A local relay or a developer's mail catcher: nothing leaves the machine."""
    server, port = serve(auth_require_tls=False)
    send(f"smtp://user:secret@127.0.0.1:{port}")
    assert server.logins == [("user", False)] and len(server.received) == 1


def test_smtps_checks_the_certificate_too(serve: Any, authority: trustme.CA) -> None:
    server, port = serve(ssl_context=tls_for(authority, "other.example"), auth_require_tls=False)
    with pytest.raises(channels.DeliveryError, match="SSLCertVerificationError"):
        send(f"smtps://user:secret@{NAME}:{port}")
    assert server.received == []
    trusted, port = serve(
        ssl_context=tls_for(authority, NAME), auth_require_tls=False
    )  # aiosmtpd: STARTTLS only
    send(f"smtps://user:secret@{NAME}:{port}")
    # The server speaks only TLS (aiosmtpd marks STARTTLS sessions alone as such).
    assert [login for login, _ in trusted.logins] == ["user"] and len(trusted.received) == 1
