"""The allocator setting of stages and their workers: freed memory is reused, not given back."""

import subprocess
import sys
import textwrap

import pytest

from components.core.parallel import ordered_map

# Ten arrays of 1 MB, held together then freed, a hundred times: page faults counted.
_CHURN = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from components.core.allocator import keep_freed_memory

    tuned = keep_freed_memory() if sys.argv[1] == "tuned" else None

    def churn():
        held = [np.ones(1 << 17) for _ in range(10)]
        del held

    churn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        churn()
    print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(setting: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", _CHURN, setting], capture_output=True, text=True, check=True
    )
    tuned, faults = done.stdout.split()
    return tuned, int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_arrays_are_reused_instead_of_faulted_in_again():
    _, by_default = _faults("default")
    tuned, kept = _faults("tuned")
    assert tuned == "True"
    # 100 rounds of 10 MB: by default the heap's top goes back to the kernel each round.
    assert by_default > 50 * 256
    assert kept < 1000


def _churn_faults(_: int) -> int:
    """In a worker: page faults over twenty rounds of ten 1 MB arrays held and freed."""
    import resource

    import numpy as np

    held = [np.ones(1 << 17) for _ in range(10)]
    del held
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        held = [np.ones(1 << 17) for _ in range(10)]
        del held
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_pool_workers_keep_freed_memory():
    faults = list(ordered_map(_churn_faults, range(4), workers=2))
    assert max(faults) < 1000
