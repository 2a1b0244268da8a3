"""A webhook endpoint on 127.0.0.1 for the tests that deliver webhooks through real HTTP."""

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Receiver:
    """Records every POST, checks its signature, answers from a script; a context manager that serves
    while it is entered.

    `hold` is how long a request waits for `release` while `hang` is set (the sender's timeout, or a
    delivery kept in flight).
    """

    def __init__(self, hold: float = 10, tls: ssl.SSLContext | None = None) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []  # (lower-cased headers, body)
        self.secret: str | None = None  # once set, a bad signature gets 401
        self.answers: list[int] = []  # statuses for the next calls, then 204
        self.hang = threading.Event()  # while set, hold each request until `release`
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.calls.append((headers, body))
                if receiver.hang.is_set():
                    receiver.release.wait(timeout=hold)
                status = receiver.answers.pop(0) if receiver.answers else 204
                if receiver.secret is not None:
                    try:
                        Webhook(receiver.secret).verify(body, headers)
                    except WebhookVerificationError:
                        status = 401
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # HTTPS, with the certificate `tls` holds
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "http" if tls is None else "https"
        # A short poll keeps shutdown() quick; the default 0.5 s would be paid by every test.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release.set()  # no request left holding
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
