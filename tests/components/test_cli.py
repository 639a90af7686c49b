"""How the stage command ends its process."""

import subprocess
import sys
import textwrap


def _run(code, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )


def test_exit_runs_exit_handlers_and_flushes_output(tmp_path):
    done = _run(
        f"""
        import atexit, pathlib, sys
        from components.cli import exit_process
        atexit.register(lambda: pathlib.Path({str(tmp_path / "handled")!r}).touch())
        print("unflushed", end="")
        print("to stderr", end="", file=sys.stderr)
        exit_process(3)
        """,
        tmp_path,
    )
    assert done.returncode == 3
    assert (done.stdout, done.stderr) == ("unflushed", "to stderr")
    assert (tmp_path / "handled").exists()


def test_exit_waits_for_a_running_non_daemon_thread(tmp_path):
    done = _run(
        f"""
        import pathlib, threading, time
        from components.cli import exit_process
        def work():
            time.sleep(0.5)
            pathlib.Path({str(tmp_path / "finished")!r}).touch()
        threading.Thread(target=work).start()
        exit_process(0)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "finished").exists()
