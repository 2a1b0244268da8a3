"""Configuration is a pure function of the environment; production refuses unsafe secrets."""

from pathlib import Path

import pytest

from todoapi.config import DEV_SECRET, ConfigError, load_config

GOOD_SECRET = "s" * 32


def test_defaults_match_the_spec():
    config = load_config({})
    assert config["DATABASE_URL"] == "sqlite:///todo.db"
    assert config["REDIS_URL"] == "redis://localhost:6379/0"
    assert config["JWT_ACCESS_MINUTES"] == 60 and config["JWT_REFRESH_DAYS"] == 30
    assert config["NOTIFY_INTERVAL_SECONDS"] == 60
    assert config["SMTP_URL"] is None and config["WEBHOOK_ALLOW_PRIVATE"] is False
    assert config["LOGIN_RATE_LIMIT"] == "10/minute"
    assert config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    assert config["JWT_SECRET_KEY"] == DEV_SECRET


def test_environment_values_are_read():
    config = load_config(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "JWT_ACCESS_MINUTES": "5",
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "SMTP_URL": "smtp://localhost:25",
            "JWT_SECRET_KEY": GOOD_SECRET,
        }
    )
    assert config["DATABASE_URL"] == "postgresql://u@h/db"
    assert config["JWT_ACCESS_MINUTES"] == 5
    assert config["WEBHOOK_ALLOW_PRIVATE"] is True
    assert config["SMTP_URL"] == "smtp://localhost:25"
    assert config["JWT_SECRET_KEY"] == GOOD_SECRET


def example_secret() -> str:
    """The JWT_SECRET_KEY line of .env.example, which people copy to .env."""
    lines = (Path(__file__).resolve().parent.parent / ".env.example").read_text().splitlines()
    [secret] = [line.split("=", 1)[1] for line in lines if line.startswith("JWT_SECRET_KEY=")]
    return secret


@pytest.mark.parametrize(
    "secret", [None, "", "short", "x" * 31, DEV_SECRET, f" {DEV_SECRET} ", example_secret()]
)
def test_production_refuses_a_missing_short_or_published_secret(secret):
    env = {"APP_ENV": "production"} | ({"JWT_SECRET_KEY": secret} if secret is not None else {})
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        load_config(env)


def test_production_accepts_a_32_character_secret():
    assert load_config({"APP_ENV": "production", "JWT_SECRET_KEY": GOOD_SECRET})["APP_ENV"] == "production"


@pytest.mark.parametrize(("name", "value"), [("JWT_ACCESS_MINUTES", "soon"), ("JWT_REFRESH_DAYS", "0")])
def test_bad_numbers_are_refused_by_name(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


@pytest.mark.parametrize("value", ["ten a minute", "10/fortnight", "10"])
def test_a_bad_login_rate_limit_is_refused_by_name(value):
    with pytest.raises(ConfigError, match="LOGIN_RATE_LIMIT"):
        load_config({"LOGIN_RATE_LIMIT": value})


def test_a_login_rate_limit_may_use_the_long_form():
    assert load_config({"LOGIN_RATE_LIMIT": " 5 per hour "})["LOGIN_RATE_LIMIT"] == "5 per hour"


@pytest.mark.parametrize("value", ["prod", "staging", "Productoin"])
def test_an_unknown_app_env_is_refused_rather_than_run_as_development(value):
    with pytest.raises(ConfigError, match="APP_ENV"):
        load_config({"APP_ENV": value, "JWT_SECRET_KEY": GOOD_SECRET})


@pytest.mark.parametrize("value", ["", "development", " Test ", "PRODUCTION"])
def test_the_known_app_envs_in_any_case(value):
    assert load_config({"APP_ENV": value, "JWT_SECRET_KEY": GOOD_SECRET})["APP_ENV"] in {
        "development",
        "test",
        "production",
    }


def test_production_refuses_a_secret_of_blanks():
    with pytest.raises(ConfigError, match="JWT_SECRET_KEY"):
        load_config({"APP_ENV": "production", "JWT_SECRET_KEY": " " * 40})


def test_the_development_secret_is_announced_when_it_signs(make_app, caplog):
    make_app(JWT_SECRET_KEY=GOOD_SECRET)
    assert "JWT_SECRET_KEY is not set" not in caplog.text

    make_app(JWT_SECRET_KEY=DEV_SECRET)
    assert "JWT_SECRET_KEY is not set" in caplog.text
