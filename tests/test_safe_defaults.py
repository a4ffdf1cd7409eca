"""Safe defaults: DEBUG off unless asked, `check --deploy` clean with the README's production
settings, static files served by whitenoise under gunicorn with DEBUG off."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def readme_production_settings() -> dict[str, str]:
    """The ``NAME=value`` lines of the README's "# production settings" block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n# production settings\n(.*?)```", text, re.S)
    assert block, "README: no production settings block"
    pairs = [line.split("=", 1) for line in block.group(1).splitlines() if "=" in line]
    return {name.strip(): value.strip() for name, value in pairs}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DEBUG"}
    env.update(extra)
    return env


def test_debug_is_off_unless_the_environment_turns_it_on():
    code = "from django.conf import settings; print(settings.DEBUG)"
    run = [PY, "manage.py", "shell", "--verbosity", "0", "-c", code]
    off = subprocess.run(run, cwd=ROOT, env=_env(), capture_output=True, text=True, check=True)
    on = subprocess.run(
        run, cwd=ROOT, env=_env(DEBUG="1"), capture_output=True, text=True, check=True
    )
    assert (off.stdout.strip(), on.stdout.strip()) == ("False", "True")


def test_check_deploy_reports_nothing_with_the_readme_production_settings():
    settings = readme_production_settings()
    assert "DEBUG" not in settings  # off by default
    settings["SECRET_KEY"] = secrets.token_urlsafe(50)  # the README's is a placeholder
    result = subprocess.run(
        [PY, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env=_env(**settings),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_check_deploy_still_warns_without_them():
    """The check is not silenced: plain development settings are reported."""
    result = subprocess.run(
        [PY, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    for check_id in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check_id in output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn_debug_off(tmp_path):
    static_root = tmp_path / "static"
    env = _env(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        STATIC_ROOT=str(static_root),
        ALLOWED_HOSTS="127.0.0.1",
    )
    subprocess.run(
        [PY, "manage.py", "collectstatic", "--no-input", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(PY).parent / "gunicorn"),
            "billing_site.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):  # the worker imports the whole project first
            if server.poll() is not None:
                raise AssertionError(server.stderr.read().decode())
            try:
                requests.get(f"{base}/static/admin/css/base.css", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.25)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_gunicorn_with_debug_off_serves_the_admin_css_and_the_swagger_ui(gunicorn_debug_off):
    base = gunicorn_debug_off
    css = requests.get(f"{base}/static/admin/css/base.css", timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert b"body" in css.content
    swagger = requests.get(
        f"{base}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js", timeout=10
    )
    assert swagger.status_code == 200
    assert len(swagger.content) > 100_000
    assert requests.get(f"{base}/static/no-such-file.css", timeout=10).status_code == 404


def test_the_web_server_refuses_the_development_secret_key_with_debug_off():
    result = subprocess.run(
        [PY, "-c", "import billing_site.wsgi"],
        cwd=ROOT,
        env={k: v for k, v in _env().items() if k != "SECRET_KEY"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr
