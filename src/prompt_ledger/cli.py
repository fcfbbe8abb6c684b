"""``promptledger``: serve, migrate, seed-models, register. Commands call services, never SQL."""

from __future__ import annotations

import importlib
import os
import secrets
import sys
from typing import Any

import click

from prompt_ledger.config import get_settings

# Commands import what they use when they run, so `promptledger register` starts fast.


@click.group()
def main() -> None:
    """PromptLedger: prompt registry and LLM execution ledger."""


@main.command("migrate")
def migrate_command() -> None:
    """Apply pending database migrations (serialised by a database lock)."""
    from prompt_ledger.db import migrate as migrations

    url = get_settings().resolved_database_url
    migrations.upgrade(url)
    click.echo("database is at the newest schema")


@main.command("seed-models")
def seed_models_command() -> None:
    """Add the default models if they are missing."""
    from prompt_ledger.scripts.seed_models import seed

    added = seed(get_settings().resolved_database_url)
    click.echo(f"models seeded: {added} added")


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - only shown, not bound
        return "localhost"
    return f"[{host}]" if ":" in host else host


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
def serve_command(host: str, port: int, workers: int) -> None:
    """Migrate, seed the default models, and run the API."""
    import uvicorn

    from prompt_ledger.db import migrate as migrations
    from prompt_ledger.scripts.seed_models import seed

    settings = get_settings()
    settings.promptledger_home.mkdir(parents=True, exist_ok=True)
    key, generated = settings.ensure_api_key()
    url = settings.resolved_database_url
    migrations.upgrade(url)
    seed(url)
    if generated:
        click.echo(f"Generated an API key and stored it in {settings.api_key_path}")
    if not settings.api_key:  # a key from API_KEY is the operator's secret: never echoed
        click.echo(f"API key: {key}")
    if settings.ui_session_secret is None:
        # One secret for every worker process this command starts (they inherit the
        # environment), so a UI sign-in holds whichever worker answers; a restart signs out.
        os.environ["UI_SESSION_SECRET"] = secrets.token_urlsafe(32)
    click.echo(f"Web UI: http://{_display_host(host)}:{port}/ui")
    uvicorn.run(
        "prompt_ledger.api.app:serve_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="debug" if settings.debug else "warning",
    )


@main.command("worker")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option(
    "--hostname",
    "-n",
    default=None,
    help="Celery node name; give each worker on one host its own (e.g. worker2@%h).",
)
def worker_command(loglevel: str, hostname: str | None) -> None:
    """Run a Celery worker for async executions (needs REDIS_URL; waits for migrations)."""
    settings = get_settings()
    if not settings.redis_url:
        raise click.UsageError("REDIS_URL is not set: without it `serve` runs executions itself")
    from prompt_ledger.db import migrate as migrations

    migrations.wait_until_current(settings.resolved_database_url)
    from prompt_ledger.workers.celery_app import app

    # solo pool: the task only hands ids to this process's event loop, which keeps many
    # provider calls in flight (see workers/tasks.py), so no prefork/threads are needed.
    app.worker_main(
        [
            "worker",
            "--pool=solo",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            *([f"--hostname={hostname}"] if hostname else []),
        ]
    )


def _load_target(target: str) -> Any:
    """Import ``module`` or ``module:Object.attr`` (the working folder is importable)."""
    module_name, _, attr_path = target.partition(":")
    if not module_name:
        raise click.BadParameter("give MODULE or MODULE:OBJECT", param_hint="TARGET")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}") from exc
    for attr in filter(None, attr_path.split(".")):
        try:
            obj = getattr(obj, attr)
        except AttributeError as exc:
            raise click.BadParameter(f"{target!r}: no attribute {attr!r}") from exc
    return obj


def _default_api_key() -> str | None:
    """API_KEY, else the key ``serve`` stored in PROMPTLEDGER_HOME (same machine, same folder)."""
    try:
        keys = get_settings().accepted_api_keys()
    except ValueError:  # unreadable settings: the user has to pass --api-key
        return None
    return keys[0] if keys else None


@main.command("register")
@click.argument("target", metavar="MODULE[:OBJECT]")
@click.option(
    "--url",
    envvar="PROMPTLEDGER_URL",
    show_envvar=True,
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The service's URL.",
)
@click.option(
    "--api-key",
    envvar="PROMPTLEDGER_API_KEY",
    show_envvar=True,
    default=None,
    help="Default: API_KEY, else the key `serve` stored in PROMPTLEDGER_HOME.",
)
@click.option("--prefix", default=None, help="Name prefix (default: the class or module name).")
def register_command(target: str, url: str, api_key: str | None, prefix: str | None) -> None:
    """Register the prompts a class or module defines (tracking mode).

    Every UPPER_CASE str attribute becomes a prompt named Class.ATTR (for a module:
    the last part of its name, .ATTR). Prints one line per prompt with its change and
    versions; exits non-zero with the server's message on any error.

    \b
    Example:
      promptledger register myapp.prompts:Prompts
      Prompts.WELCOME: new_version v1 -> v2
    """
    from prompt_ledger.client import PromptLedger, PromptLedgerClientError

    source = _load_target(target)
    key = api_key or _default_api_key()
    if not key:
        raise click.UsageError("no API key: pass --api-key or set PROMPTLEDGER_API_KEY")
    try:
        with PromptLedger(url, key) as client:
            results = client.register_code(source, prefix=prefix)
    except PromptLedgerClientError as exc:
        raise click.ClickException(str(exc)) from exc
    except (TypeError, ValueError) as exc:  # not a class or module, or no prompts in it
        raise click.ClickException(str(exc)) from exc
    for result in results:
        before = result.previous_version_number
        versions = (
            f"v{before} -> v{result.version_number}"
            if before is not None and before != result.version_number
            else f"v{result.version_number}"
        )
        click.echo(f"{result.name}: {result.change} {versions}")


if __name__ == "__main__":
    main()
