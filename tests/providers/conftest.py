import sys
from pathlib import Path

# ``tests/`` has no __init__.py; make ``fixtures`` importable whichever conftests exist above.
_TESTS_DIR = str(Path(__file__).resolve().parents[1])
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from fixtures.stub_server import stub_server_url, stub_url  # noqa: E402

__all__ = ["stub_server_url", "stub_url"]
