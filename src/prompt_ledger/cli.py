"""``promptledger``: serve, migrate, seed-models. Commands call services, never SQL."""

from __future__ import annotations

import click

from prompt_ledger.config import get_settings
from prompt_ledger.db import migrate as migrations
from prompt_ledger.scripts.seed_models import seed


@click.group()
def main() -> None:
    """PromptLedger: prompt registry and LLM execution ledger."""


@main.command("migrate")
def migrate_command() -> None:
    """Apply pending database migrations (serialised by a database lock)."""
    url = get_settings().resolved_database_url
    migrations.upgrade(url)
    click.echo("database is at the newest schema")


@main.command("seed-models")
def seed_models_command() -> None:
    """Add the default models if they are missing."""
    added = seed(get_settings().resolved_database_url)
    click.echo(f"models seeded: {added} added")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1))
def serve_command(host: str, port: int, workers: int) -> None:
    """Migrate, seed the default models, and run the API."""
    import uvicorn

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
    uvicorn.run(
        "prompt_ledger.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="debug" if settings.debug else "warning",
    )


@main.command("worker")
@click.option("--loglevel", default="INFO", show_default=True)
def worker_command(loglevel: str) -> None:
    """Run a Celery worker for async executions (needs REDIS_URL; waits for migrations)."""
    settings = get_settings()
    if not settings.redis_url:
        raise click.UsageError("REDIS_URL is not set: without it `serve` runs executions itself")
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
        ]
    )


if __name__ == "__main__":
    main()
