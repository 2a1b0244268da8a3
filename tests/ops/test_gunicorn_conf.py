"""gunicorn.conf.py's hooks, called as gunicorn calls them."""

import gc
import runpy
from pathlib import Path

import pytest

from tests.processes import ROOT


def test_workers_fork_with_the_preloaded_app_frozen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["preload_app"] is True  # freezing only helps when the app is built before the fork
    before = gc.get_freeze_count()
    try:
        settings["pre_fork"](None, None)
        assert gc.get_freeze_count() > before
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
