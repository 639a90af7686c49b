import pytest
import pytorch_lightning as pl
import torch

from components.model.gpt import GPTConfig
from components.model.lm_module import (
    LanguageModel,
    cosine_with_warmup,
    param_groups,
)
from components.model.params import PretrainParams

TINY = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32)


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 0.1), (9, 1.0), (10, 1.0), (55, 0.55), (100, 0.1), (500, 0.1)],
)
def test_cosine_schedule_with_warmup(step, expected):
    cfg = PretrainParams(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100)
    assert cosine_with_warmup(step, cfg) == pytest.approx(expected)


def test_no_weight_decay_on_biases_and_norms():
    module = LanguageModel(
        GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16, bias=True),
        PretrainParams(),
    )
    decay, no_decay = param_groups(module.model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0
    counted = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert counted == sum(p.numel() for p in module.model.parameters())


def test_compiled_module_keeps_plain_parameter_names():
    module = LanguageModel(TINY, PretrainParams(), compile_model=True)
    assert all(key.startswith("model.") for key in module.state_dict())


def test_gradient_clipping_bounds_the_global_norm():
    module = LanguageModel(TINY, PretrainParams())
    for parameter in module.parameters():
        parameter.grad = torch.full_like(parameter, 10.0)
    module.configure_gradient_clipping(None, gradient_clip_val=1.0)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in module.parameters()]))
    assert norm.item() == pytest.approx(1.0, rel=1e-4)


class _ClipWatch(LanguageModel):
    """Records, at each clipping, the true gradient norm and the norm left after clipping."""

    def __init__(self) -> None:
        super().__init__(TINY, PretrainParams(warmup_steps=1, max_steps=3))
        self.norms: list[tuple[float, float]] = []

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, **kwargs):
        scale = self.trainer.precision_plugin.scaler.get_scale()
        true = _grad_norm(self) / scale
        super().configure_gradient_clipping(optimizer, gradient_clip_val, **kwargs)
        self.norms.append((true, _grad_norm(self)))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Fused, as on a GPU: such an optimizer unscales fp16 gradients only in its step.
        return torch.optim.AdamW(self.parameters(), lr=1e-3, fused=True)


def _grad_norm(module: torch.nn.Module) -> float:
    norms = torch.stack([p.grad.norm() for p in module.parameters()])
    return torch.linalg.vector_norm(norms).item()


def test_clipping_under_fp16_loss_scaling_bounds_the_true_gradients():
    from pytorch_lightning.plugins.precision import MixedPrecision

    torch.manual_seed(0)
    sequence = torch.randint(0, 64, (4, 17))
    loader = torch.utils.data.DataLoader([(sequence[:, :-1], sequence[:, 1:])] * 3, batch_size=None)
    module = _ClipWatch()
    scaling = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu", init_scale=2.0**16))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        gradient_clip_val=100.0,  # far above the true norms: nothing is clipped
        plugins=[scaling],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    assert len(module.norms) == 3
    for true, clipped in module.norms:
        assert true < 100.0
        assert clipped == pytest.approx(true, rel=1e-3)  # unscaled, and left as they were


def test_fit_learns_a_repeating_sequence():
    torch.manual_seed(0)
    sequence = torch.arange(17) % 8
    batches = [(sequence[:-1].repeat(4, 1), sequence[1:].repeat(4, 1))] * 40
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    module = LanguageModel(TINY, PretrainParams(lr=1e-2, min_lr=1e-3, warmup_steps=5, max_steps=40))
    inputs, targets = batches[0]
    before = module._loss(module.model, inputs, targets).item()
    trainer = pl.Trainer(
        max_steps=40,
        accelerator="cpu",
        logger=False,
        gradient_clip_val=1.0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train_dataloaders=loader)
    after = module._loss(module.model, inputs, targets).item()
    assert after < before / 4
