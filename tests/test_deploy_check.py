"""``config.settings.production`` passes ``manage.py check --deploy`` with the documented environment."""

from __future__ import annotations

import os
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

REPO_ROOT = Path(__file__).resolve().parents[1]

# docs/DEPLOYMENT.md, "Environment": the variables a production process gets.
DOCUMENTED_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "events.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://events.example.com",
    "METRICS_TOKEN": secrets.token_urlsafe(32),
}


def _environment(**changes: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in {"DEBUG", "LOG_FORMAT"}}
    env.update(DOCUMENTED_ENV)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_finds_no_issue_with_the_documented_environment():
    result = _check(_environment())

    assert result.returncode == 0, result.stdout + result.stderr
    # Only the three "Django middleware not in MIDDLEWARE" warnings (config.middleware subclasses it).
    assert "System check identified no issues (3 silenced)." in result.stdout
    assert "WARNING" not in result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS"])
def test_production_settings_refuse_to_load_without_a_required_variable(monkeypatch, missing):
    for key, value in DOCUMENTED_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(missing)

    with pytest.raises(ImproperlyConfigured, match=missing):
        runpy.run_module("config.settings.production")
