"""``workers/celery_app.py`` and ``workers/tasks.py``: importing them builds no Celery app and
reads no settings; ``celery -A prompt_ledger.workers.celery_app`` still finds the app, with the
execute task registered. Each check runs in a fresh interpreter, since this test process has
imported everything long before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

BROKER = "redis://127.0.0.1:1/7"  # never connected to: nothing here publishes or consumes


def run_fresh(code: str) -> Any:
    """Run ``code`` in a new interpreter with REDIS_URL set; it prints one JSON value."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"REDIS_URL": BROKER}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


class TestImport:
    def test_importing_the_worker_modules_builds_no_app_and_reads_no_settings(self) -> None:
        seen = run_fresh(
            """
            import json
            from celery import _state
            import prompt_ledger.workers.celery_app
            import prompt_ledger.workers.dispatch
            import prompt_ledger.workers.tasks
            from prompt_ledger.config import get_settings
            print(json.dumps({
                "apps": len(list(_state._get_active_apps())),
                "settings_read": get_settings.cache_info().currsize,
            }))
            """
        )
        assert seen == {"apps": 0, "settings_read": 0}


class TestCeleryCommandFindsTheApp:
    def test_find_app_resolves_the_module_to_one_app_on_redis_url_with_the_task(self) -> None:
        seen = run_fresh(
            """
            import json
            from celery.app.utils import find_app
            from prompt_ledger.workers import celery_app
            found = find_app("prompt_ledger.workers.celery_app")  # what `celery -A` does
            found.loader.import_default_modules()  # what the worker does at start-up
            from prompt_ledger.workers.celery_app import app
            print(json.dumps({
                "same_app": found is app is celery_app.celery_app is celery_app.get_app(),
                "broker": found.conf.broker_url,
                "tasks": sorted(t for t in found.tasks if t.startswith("promptledger.")),
            }))
            """
        )
        assert seen == {"same_app": True, "broker": BROKER, "tasks": ["promptledger.execute"]}

    def test_other_attributes_are_still_missing(self) -> None:
        seen = run_fresh(
            """
            import json
            from prompt_ledger.workers import celery_app
            print(json.dumps(hasattr(celery_app, "no_such_thing")))
            """
        )
        assert seen is False
