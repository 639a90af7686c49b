"""Progress bars: silent off a terminal, and cheap to import for every stage."""

import io
import subprocess
import sys

from components.core.progress import progress


def test_a_bar_is_disabled_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress(total=3, desc="x") as bar:
        bar.update(3)
    assert bar.disable
    assert sys.stderr.getvalue() == ""


def test_importing_progress_leaves_asyncio_unloaded():
    """tqdm.auto imports asyncio: 20 ms of every stage's start-up."""
    code = "import sys, components.core.progress; assert 'asyncio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
