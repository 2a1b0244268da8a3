"""The webhook sender against receivers that misbehave on purpose: one attempt ends within its
deadline whatever the receiver does, and the answer's body is never read. Real sockets on 127.0.0.1."""

import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from todoapi.notifications import channels

PAYLOAD = {"type": "todo.due_soon", "data": {"id": 1}}
SECRET = "whsec_" + "A" * 32


class RawReceiver:
    """Takes one connection, reads the request, then runs `answer` on the socket; records how many
    bytes of the answer the sender let through before it hung up."""

    def __init__(self, answer: Callable[[socket.socket, "RawReceiver"], None]) -> None:
        self.answer = answer
        self.sent = 0
        self.hung_up = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            try:
                self.answer(conn, self)
            except OSError:  # the sender closed the connection
                self.hung_up.set()

    def __enter__(self) -> "RawReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.listener.close()
        self.thread.join(timeout=30)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each read may take 0.5 s, and the attempt 1.5 s."""
    monkeypatch.setattr(channels, "WEBHOOK_TIMEOUT", httpx.Timeout(0.5))
    monkeypatch.setattr(channels, "WEBHOOK_ATTEMPT_SECONDS", 1.5)
    yield


def send(url: str) -> None:
    channels.send_webhook(url, SECRET, "msg_1", PAYLOAD, allow_private=True)


@pytest.mark.usefixtures("quick")
def test_an_answer_trickling_in_within_each_read_timeout_still_ends_at_the_attempts_deadline() -> None:
    """A byte every 0.2 s never trips a 0.5 s read timeout; 200 of them would take 40 s."""

    def trickle(conn: socket.socket, receiver: RawReceiver) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:
            receiver.send(conn, bytes([byte]))
            time.sleep(0.2)
        receiver.send(conn, b"\r\nContent-Length: 0\r\n\r\n")

    with RawReceiver(trickle) as receiver:
        with pytest.raises(channels.DeliveryError, match="timed out"):
            send(receiver.url)
        assert receiver.hung_up.wait(5), "the sender kept the connection open"
    assert receiver.sent < 40  # ~1.5 s of it


@pytest.mark.usefixtures("quick")
def test_the_answers_body_is_never_read() -> None:
    """A 2xx counts as delivered once its status line and headers are in; a receiver that follows it
    with 256 MiB is cut off after what the sockets' buffers hold."""
    chunk = b"x" * 65536

    def flood(conn: socket.socket, receiver: RawReceiver) -> None:
        receiver.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (4096 * len(chunk)))
        for _ in range(4096):
            receiver.send(conn, chunk)

    with RawReceiver(flood) as receiver:
        send(receiver.url)
        assert receiver.hung_up.wait(5), "the sender read on"
    assert receiver.sent < 16 * 2**20


def test_a_receiver_that_answers_in_time_is_delivered_to_within_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deadline bounds the attempt, not each of its steps: a whole exchange well inside it passes
    (a new attempt gets a new deadline)."""
    monkeypatch.setattr(channels, "WEBHOOK_ATTEMPT_SECONDS", 1.0)

    def prompt(conn: socket.socket, receiver: RawReceiver) -> None:
        receiver.send(conn, b"HTTP/1.1 204 No Content\r\n\r\n")

    for _ in range(2):
        with RawReceiver(prompt) as receiver:
            send(receiver.url)
        time.sleep(0.6)  # two attempts together outlast one deadline
