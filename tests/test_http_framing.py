"""What gunicorn and the application say about a connection, on the wire: the Procfile's web line,
raw sockets. Bodies over the limit, sent with a length or chunked, and requests gunicorn itself
refuses, all answer in the error shape, and a connection is closed only when the response says so."""

import json
import socket
from collections.abc import Iterator

import pytest

from tests.processes import PROCFILE, ShellProcess, platform_environ, run_release, wait_for

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    workdir = tmp_path_factory.mktemp("framing")
    env = platform_environ(workdir, "framing.db", WEB_CONCURRENCY="1")
    run_release(env)
    process = ShellProcess(PROCFILE["web"], env, workdir / "web.log")
    port = int(env["PORT"])
    try:
        wait_for(lambda: _answers(port), 30, "web answers /health", alive=(process,))
        yield port
    finally:
        process.stop()
    assert "Traceback" not in process.output(tail=10**6)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            return exchange(sock, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")[0] == 200
    except OSError:
        return False


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request, read one response (Content-Length framed): status, headers, body."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def register(email: str) -> bytes:
    return json.dumps({"email": email, "password": "password1"}).encode()


def post(path: str, body: bytes, chunked: bool = False) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    if not chunked:
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    pieces = [body[start : start + 65536] for start in range(0, len(body), 65536)]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    return f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + encoded


def padded_registration(email: str, size: int) -> bytes:
    """A registration body of exactly `size` bytes (an unknown field carries the padding)."""
    base = register(email)[:-1] + b', "pad": ""}'
    return base[:-2] + b"x" * (size - len(base)) + b'"}'


def assert_error_shape(status: int, headers: dict[str, str], body: bytes, code: int) -> None:
    assert status == code, body
    assert headers["content-type"].startswith("application/json")
    parsed = json.loads(body)
    assert parsed["code"] == code and parsed["status"] and parsed["message"], parsed


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_413_and_the_connection_says_close(web: int, chunked: bool) -> None:
    email = f"big-{chunked}@example.com"
    with socket.create_connection(("127.0.0.1", web)) as sock:
        status, headers, body = exchange(
            sock, post("/auth/register", padded_registration(email, LIMIT + 1), chunked)
        )

        assert_error_shape(status, headers, body, 413)
        assert headers["connection"] == "close"
        assert closed_by_server(sock)

    with socket.create_connection(("127.0.0.1", web)) as sock:
        # Nothing was stored: the same email registers now.
        assert exchange(sock, post("/auth/register", register(email)))[0] == 201


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_at_the_limit_is_read_and_the_connection_kept(web: int, chunked: bool) -> None:
    with socket.create_connection(("127.0.0.1", web)) as sock:
        body = padded_registration(f"edge-{chunked}@example.com", LIMIT)
        status, headers, answer = exchange(sock, post("/auth/register", body, chunked))

        # Read in full: the unknown padding field is what is refused, not the size.
        assert_error_shape(status, headers, answer, 422)
        assert "pad" in json.loads(answer)["errors"]["json"]
        assert headers["connection"] == "keep-alive"
        status, headers, _ = exchange(
            sock, post("/auth/register", register(f"kept-{chunked}@example.com"), chunked)
        )
        assert status == 201


@pytest.mark.parametrize(
    "request_bytes, code",
    [
        (b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"\xff\xfe /health HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nHost: t\r\nBad\x00Name: x\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    ],
    ids=["headers-too-large", "bad-method", "bad-header-name", "uri-too-long"],
)
def test_requests_gunicorn_refuses_get_the_error_shape_too(web: int, request_bytes: bytes, code: int) -> None:
    with socket.create_connection(("127.0.0.1", web)) as sock:
        status, headers, body = exchange(sock, request_bytes)

        assert_error_shape(status, headers, body, code)
        assert headers["connection"] == "close"
