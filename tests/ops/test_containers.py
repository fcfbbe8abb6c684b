"""The container files, checked without a Docker engine (none is available here).

What is checked: the compose files parse and name the services, ports, health checks, volumes
and environment variables the service really reads (``Settings`` fields); the commands the
image and the compose files run are real ``promptledger`` commands with real options; the
Dockerfile is multi-stage, non-root and installs from the lock file; and the Dockerfile's own
``uv sync`` steps, replayed on this machine, give an environment without dev tools in which
``promptledger migrate`` works from outside the source tree. Not run: ``docker build`` and
``docker compose up`` themselves (see README, "Containers").
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from prompt_ledger.cli import main as cli
from prompt_ledger.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["docker-compose.yml", "docker-compose.prod.yml"]
APP_SERVICES = {"migrate", "api", "worker"}
# Read by the package, but outside Settings (documented in docs/production.md).
EXTRA_ENV = {"PROMPTLEDGER_WORKER_MAX_IN_FLIGHT", "PROMETHEUS_MULTIPROC_DIR"}
SECRETS = {"API_KEY", "OPENAI_API_KEY", "POSTGRES_PASSWORD"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def settings_env_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def instruction(lines: list[str], name: str) -> list[str]:
    return [line[len(name) :].strip() for line in lines if line.split()[0].upper() == name]


def final_stage(lines: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return lines[starts[-1] :]


def check_cli(args: list[str]) -> None:
    """Parse ``promptledger <args>`` exactly as the container would, without running it."""
    assert args, "empty command"
    name, rest = args[0], args[1:]
    command = cli.commands.get(name)
    assert isinstance(command, click.Command), f"promptledger has no command {name!r}"
    with command.make_context(name, list(rest)) as ctx:  # raises on an unknown option
        assert ctx.command is command


def image_command() -> tuple[list[str], list[str]]:
    lines = final_stage(dockerfile())
    (entrypoint,) = instruction(lines, "ENTRYPOINT")
    (cmd,) = instruction(lines, "CMD")
    entry: list[str] = json.loads(entrypoint)  # exec form: signals reach the process
    default: list[str] = json.loads(cmd)
    return entry, default


# --- compose ------------------------------------------------------------------------------


@pytest.fixture(params=COMPOSE_FILES)
def compose(request: pytest.FixtureRequest) -> dict[str, Any]:
    return load(request.param)


class TestCompose:
    def test_services_and_images(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        assert {"postgres", "redis"} | APP_SERVICES <= set(services)
        for name in APP_SERVICES:
            assert "build" in services[name] and "image" in services[name], name
        for name, service in services.items():
            if name not in APP_SERVICES:
                image = service["image"]
                assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"

    def test_health_checks_on_every_long_running_service(self, compose: dict[str, Any]) -> None:
        for name, service in compose["services"].items():
            if name == "migrate":
                assert service["restart"] == "no"  # one-shot
                continue
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL"), name
        api_check = " ".join(compose["services"]["api"]["healthcheck"]["test"])
        assert "127.0.0.1:8000/health/ready" in api_check
        worker_check = " ".join(compose["services"]["worker"]["healthcheck"]["test"])
        assert "inspect ping" in worker_check and "prompt_ledger.workers.celery_app" in worker_check

    def test_dependencies_order_the_start(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        migrate_needs = services["migrate"]["depends_on"]
        assert migrate_needs["postgres"]["condition"] == "service_healthy"
        for name in ("api", "worker"):
            needs = services[name]["depends_on"]
            assert needs["migrate"]["condition"] == "service_completed_successfully"
            assert needs["redis"]["condition"] == "service_healthy"

    def test_commands_are_real_promptledger_commands(self, compose: dict[str, Any]) -> None:
        entry, _ = image_command()
        assert entry == ["promptledger"]
        expected = {"migrate": "migrate", "api": "serve", "worker": "worker"}
        for name, command_name in expected.items():
            command = compose["services"][name]["command"]
            assert command[0] == command_name
            check_cli(command)

    def test_api_port_matches_its_command(self, compose: dict[str, Any]) -> None:
        api = compose["services"]["api"]
        command = api["command"]
        port = command[command.index("--port") + 1]
        assert command[command.index("--host") + 1] == "0.0.0.0"  # reachable from outside
        published = [str(p) for p in api.get("ports", [])] + [str(p) for p in api.get("expose", [])]
        assert any(p == port or p.endswith(f":{port}") for p in published), published

    def test_environment_names_are_settings(self, compose: dict[str, Any]) -> None:
        known = settings_env_names() | EXTRA_ENV
        for name in APP_SERVICES:
            env = compose["services"][name]["environment"]
            assert isinstance(env, dict)
            unknown = set(env) - known
            assert not unknown, f"{name}: {unknown} are not settings PromptLedger reads"
            assert {"DATABASE_URL", "REDIS_URL", "API_KEY", "OPENAI_API_KEY"} <= set(env)

    def test_urls_point_at_the_compose_services(self, compose: dict[str, Any]) -> None:
        env = compose["services"]["api"]["environment"]
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
        user = compose["services"]["postgres"]["environment"]["POSTGRES_USER"]
        database = compose["services"]["postgres"]["environment"]["POSTGRES_DB"]
        assert env["DATABASE_URL"].startswith(f"postgresql://{user}:")
        assert env["DATABASE_URL"].endswith(f"/{database}")

    def test_named_volumes_are_declared(self, compose: dict[str, Any]) -> None:
        declared = set(compose.get("volumes") or {})
        assert any("postgresql/data" in v for v in compose["services"]["postgres"]["volumes"])
        for service in compose["services"].values():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if not source.startswith((".", "/")):
                    assert source in declared, source


class TestProductionCompose:
    @pytest.fixture
    def prod(self) -> dict[str, Any]:
        return load("docker-compose.prod.yml")

    def test_no_development_settings(self, prod: dict[str, Any]) -> None:
        services = prod["services"]
        for name in APP_SERVICES:
            assert services[name]["environment"]["DEBUG"] == "false"
        # only the proxy publishes a port: no database, Redis or bare API on the host
        published = {name for name, s in services.items() if s.get("ports")}
        assert published == {"proxy"}
        text = (ROOT / "docker-compose.prod.yml").read_text()
        assert "POSTGRES_PASSWORD: promptledger" not in text

    def test_secrets_come_from_the_environment_and_are_required(self, prod: dict[str, Any]) -> None:
        text = (ROOT / "docker-compose.prod.yml").read_text()
        for secret in SECRETS:
            assert re.search(rf"\$\{{{secret}:\?", text), f"{secret} must be required"
        env = prod["services"]["api"]["environment"]
        for secret in ("API_KEY", "OPENAI_API_KEY"):
            assert env[secret].startswith("${"), secret
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]

    def test_restart_policies_and_resource_limits(self, prod: dict[str, Any]) -> None:
        for name, service in prod["services"].items():
            if name == "migrate":
                assert service["restart"] == "no"
            else:
                assert service["restart"] == "unless-stopped", name
            limits = service["deploy"]["resources"]["limits"]
            assert limits["cpus"] and limits["memory"], name

    def test_app_containers_are_locked_down(self, prod: dict[str, Any]) -> None:
        for name in APP_SERVICES:
            service = prod["services"][name]
            assert service["read_only"] is True
            assert service["cap_drop"] == ["ALL"]
            assert "no-new-privileges:true" in service["security_opt"]
        assert prod["services"]["worker"]["stop_grace_period"] == "90s"

    def test_the_proxy_keeps_metrics_private(self, prod: dict[str, Any]) -> None:
        config = prod["configs"]["nginx"]["content"]
        assert "location = /metrics { return 404; }" in config
        assert "proxy_pass $$api;" in config  # $$: a literal $ after compose interpolation
        assert prod["services"]["api"]["deploy"]["replicas"] >= 2


# --- Dockerfile ---------------------------------------------------------------------------


class TestDockerfile:
    def test_multi_stage_non_root_and_exec_form(self) -> None:
        lines = dockerfile()
        stages = [line for line in lines if line.upper().startswith("FROM ")]
        assert len(stages) >= 2
        final = final_stage(lines)
        (user,) = instruction(final, "USER")
        assert user.split(":")[0] not in ("root", "0")
        assert instruction(final, "COPY") and all(
            "--from=build" in c for c in instruction(final, "COPY")
        ), "the runtime stage copies only the built environment"
        assert instruction(final, "EXPOSE") == ["8000"]
        assert instruction(final, "HEALTHCHECK")

    def test_default_command_is_serve_on_the_exposed_port(self) -> None:
        entry, default = image_command()
        assert entry == ["promptledger"]
        check_cli(default)
        assert default[0] == "serve"
        assert default[default.index("--port") + 1] == "8000"
        scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
        assert scripts["promptledger"] == "prompt_ledger.cli:main"

    def test_installs_from_the_lock_without_dev_dependencies(self) -> None:
        syncs = [r for r in instruction(dockerfile(), "RUN") if "uv sync" in r]
        assert syncs
        for run in syncs:
            assert "--locked" in run and "--no-dev" in run

    def test_dockerignore_keeps_secrets_and_state_out(self) -> None:
        ignored = (ROOT / ".dockerignore").read_text().split()
        for entry in (".env", ".git/", ".venv/", ".promptledger/", "tests/"):
            assert entry in ignored
        copied = [c.split()[0] for c in instruction(dockerfile(), "COPY") if "--from" not in c]
        assert not any(c.startswith(".env") for c in copied)


def uv_binary() -> str | None:
    return os.environ.get("UV") or shutil.which("uv")


@pytest.mark.skipif(uv_binary() is None, reason="uv is not on PATH")
def test_the_image_build_steps_give_a_working_environment(tmp_path: Path) -> None:
    """Replay the Dockerfile's build stage with this machine's uv: copy what it copies, run
    its ``uv sync`` commands, then use the environment from outside the source tree."""
    lines = dockerfile()
    build = lines[: [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")][1]]
    context = tmp_path / "src"
    context.mkdir()
    no_caches = shutil.ignore_patterns("__pycache__")
    for copy in instruction(build, "COPY"):
        *sources, _ = copy.split()
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, context / source, ignore=no_caches)
            else:
                shutil.copy(path, context / source)
    venv = tmp_path / "venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    uv = uv_binary()
    assert uv is not None
    for run in instruction(build, "RUN"):
        if "uv sync" not in run:
            continue
        args = shlex.split(run[run.index("uv sync") :])
        subprocess.run([uv, *args[1:], "--quiet"], cwd=context, env=env, check=True, timeout=300)
    shutil.rmtree(context)  # the runtime stage has no sources

    site = next((venv / "lib").glob("python3*/site-packages"))
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"prompt_ledger", "prometheus_client", "celery", "uvicorn"} <= installed
    assert not installed & {"pytest", "ruff", "mypy", "pyyaml"}, "dev tools in the image"

    data = tmp_path / "data"
    data.mkdir()
    run_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(data),
        "PROMPTLEDGER_HOME": str(data),
    }
    promptledger = str(venv / "bin" / "promptledger")
    for command in (["migrate"], ["serve", "--help"], ["worker", "--help"]):
        result = subprocess.run(
            [promptledger, *command], cwd=data, env=run_env, capture_output=True, timeout=60
        )
        assert result.returncode == 0, result.stderr.decode()
    assert (data / "promptledger.db").is_file()
