import itertools
import pickle

import numpy as np
import pytest
import torch

from components.core.errors import ArtifactError
from components.data.tokenbin import write_tokens
from components.model.token_data import (
    TokenWindows,
    WindowSpec,
    evaluation_batches,
    window_offsets,
)


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "train.bin"
    write_tokens(path, [np.arange(1000) % 97], vocab_size=97)
    return path


def _take(dataset, n):
    return list(itertools.islice(iter(dataset), n))


def test_targets_are_inputs_shifted_by_one(token_file):
    ((inputs, targets),) = _take(TokenWindows(token_file, WindowSpec(16, 4, seed=1)), 1)
    assert inputs.shape == targets.shape == (4, 16)
    assert inputs.dtype == torch.int64
    torch.testing.assert_close(inputs[:, 1:], targets[:, :-1])
    # The file holds 0, 1, 2, ... mod 97: every window is consecutive.
    assert torch.all((targets - inputs) % 97 == 1)


def test_resuming_at_a_step_gives_the_same_batches(token_file):
    spec = WindowSpec(8, 3, seed=7)
    straight = _take(TokenWindows(token_file, spec), 10)
    resumed = _take(TokenWindows(token_file, spec, start_step=6), 4)
    for (a, b), (c, d) in zip(straight[6:], resumed, strict=True):
        torch.testing.assert_close(a, c)
        torch.testing.assert_close(b, d)


def test_ranks_and_seeds_draw_different_windows():
    base = WindowSpec(8, 16, seed=1)
    first = window_offsets(base, 0, 10_000)
    assert not np.array_equal(first, window_offsets(WindowSpec(8, 16, seed=1, rank=1), 0, 10_000))
    assert not np.array_equal(first, window_offsets(WindowSpec(8, 16, seed=2), 0, 10_000))
    assert not np.array_equal(first, window_offsets(base, 1, 10_000))
    np.testing.assert_array_equal(first, window_offsets(base, 0, 10_000))


def test_windows_never_run_past_the_end():
    spec = WindowSpec(block_size=10, batch_size=5000, seed=3)
    offsets = window_offsets(spec, 0, n_tokens=11)
    assert set(offsets.tolist()) == {0}  # exactly one window of 10 + 1 fits


def test_too_few_tokens_is_an_actionable_error():
    with pytest.raises(ArtifactError, match="lower model.block_size"):
        window_offsets(WindowSpec(16, 2, seed=0), 0, n_tokens=16)


def test_dataset_pickles_without_the_token_array(token_file):
    dataset = TokenWindows(token_file, WindowSpec(8, 2, seed=0))
    assert len(pickle.dumps(dataset)) < 1000


def test_evaluation_batches_are_fixed_and_disjoint(token_file):
    batches = evaluation_batches(token_file, block_size=16, batch_size=4, max_batches=3)
    assert len(batches) == 3
    starts = torch.cat([inputs[:, 0] for inputs, _ in batches])
    assert starts.tolist() == [(i * 16) % 97 for i in range(12)]
    again = evaluation_batches(token_file, block_size=16, batch_size=4, max_batches=3)
    torch.testing.assert_close(batches[0][0], again[0][0])


def test_evaluation_needs_one_window(tmp_path):
    path = tmp_path / "val.bin"
    write_tokens(path, [np.arange(5)], vocab_size=10)
    with pytest.raises(ArtifactError, match="add validation data"):
        evaluation_batches(path, block_size=8, batch_size=2, max_batches=1)
