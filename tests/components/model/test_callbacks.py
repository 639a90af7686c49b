import pytest
import torch

from components.model import callbacks
from components.model.callbacks import LossCurve, Throughput, peak_flops


class _Trainer:
    world_size = 2


def test_rate_leaves_out_the_warm_up_window_once_another_exists():
    meter = Throughput(tokens_per_device_step=100, flops_per_token=6.0, every=10)
    meter.tokens_per_step = 200  # two ranks
    assert meter.rate() is None
    meter._windows = [(10, 5.0)]  # compile and warm-up: slow
    assert meter.rate() == pytest.approx(200 * 10 / 5.0)
    meter._windows = [(10, 5.0), (10, 1.0), (10, 1.0)]
    assert meter.rate() == pytest.approx(200 * 20 / 2.0)


def test_mfu_is_achieved_flops_over_the_peak_of_every_device(monkeypatch):
    meter = Throughput(tokens_per_device_step=100, flops_per_token=6e6, every=10)
    assert peak_flops(torch.device("cpu")) is None
    assert meter.mfu(1000.0, torch.device("cpu"), _Trainer()) is None
    monkeypatch.setattr(callbacks, "peak_flops", lambda device: 1e12)
    # 6e6 FLOPs/token x 1e5 tokens/s = 6e11 FLOP/s over two 1e12 FLOP/s devices.
    assert meter.mfu(1e5, torch.device("cpu"), _Trainer()) == pytest.approx(0.3)


def test_a_curve_without_validations_still_writes_both_files(tmp_path):
    (tmp_path / "val.csv").write_text("step,loss\n20,3.5\n")  # an earlier, longer run
    curve = LossCurve(every=5)
    curve.rows["train"] = [{"step": 5, "loss": 4.0}]
    assert curve.write(tmp_path) == [tmp_path / "train.csv", tmp_path / "val.csv"]
    assert (tmp_path / "train.csv").read_text().splitlines() == ["step,loss", "5,4.0"]
    assert (tmp_path / "val.csv").read_text().splitlines() == ["step,loss"]
