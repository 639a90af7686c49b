"""The fine-tuning module: layer-wise rates, the schedule, class weights, the auxiliary loss."""

import pytest
import torch

from components.model.classifier_module import (
    ClassifierModule,
    Schedule,
    balanced_weights,
    layer_depths,
    layerwise_groups,
)
from components.model.gpt import GPT, GPTClassifier, GPTConfig

TINY = GPTConfig(vocab_size=96, block_size=16, n_layer=3, n_head=2, n_embd=32)


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    return GPTClassifier(GPT(TINY), num_classes=2)


def test_depths_run_from_the_head_down_to_the_embeddings(classifier):
    depths = layer_depths(classifier)
    backbone = classifier.backbone
    assert depths[id(classifier.head.weight)] == depths[id(backbone.ln_f.weight)] == 0
    assert [depths[id(b.mlp.fc.weight)] for b in backbone.blocks] == [3, 2, 1]
    assert depths[id(backbone.wte.weight)] == depths[id(backbone.wpe.weight)] == 4


def test_each_block_learns_at_the_decay_times_the_rate_above_it(classifier):
    schedule = Schedule(lr=1e-3, weight_decay=0.1, layer_decay=0.5)
    groups = layerwise_groups(classifier, schedule)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    blocks = classifier.backbone.blocks
    assert rate[id(classifier.head.weight)] == pytest.approx(1e-3)
    assert rate[id(blocks[2].mlp.fc.weight)] == pytest.approx(5e-4)
    assert rate[id(blocks[0].mlp.fc.weight)] == pytest.approx(1.25e-4)
    assert rate[id(classifier.backbone.wte.weight)] == pytest.approx(6.25e-5)
    assert decay[id(blocks[0].mlp.fc.weight)] == 0.1
    assert decay[id(classifier.head.bias)] == 0.0  # biases and norm gains never decay
    trainable = {id(p) for p in classifier.parameters() if p.requires_grad}
    assert set(rate) == trainable  # every parameter once


def test_the_schedule_warms_up_then_falls_to_zero():
    schedule = Schedule(lr=1e-3, weight_decay=0.0, warmup_steps=4, total_steps=12)
    factors = [schedule.multiplier(step) for step in range(13)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0
    assert factors[8] == pytest.approx(0.5)
    assert factors[12] == 0.0


def test_balanced_weights_make_each_class_weigh_the_same():
    weights = balanced_weights([0, 0, 0, 1], classes=3)
    assert weights.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    counts = torch.tensor([3.0, 1.0, 0.0])
    assert (weights * counts)[:2].tolist() == pytest.approx([4 / 3, 4 / 3])


def _loss(classifier, lm_loss_weight: float) -> float:
    module = ClassifierModule(classifier, Schedule(lr=1e-3, weight_decay=0.0), None, lm_loss_weight)
    tokens = torch.randint(0, TINY.vocab_size, (4, 8))
    mask = torch.ones_like(tokens)
    mask[0, 5:] = 0
    module.log = lambda *args, **kwargs: None  # no trainer attached
    return module.training_step((tokens, mask, torch.tensor([0, 1, 0, 1])), 0).item()


def test_the_auxiliary_lm_loss_adds_its_weighted_next_token_loss(classifier):
    classifier.eval()  # no dropout: the three losses see the same network
    torch.manual_seed(0)
    plain = _loss(classifier, 0.0)
    torch.manual_seed(0)
    half = _loss(classifier, 0.5)
    torch.manual_seed(0)
    full = _loss(classifier, 1.0)
    # An untrained decoder's next-token loss is about ln(96): well above zero.
    assert full - plain == pytest.approx(2 * (half - plain), rel=1e-5)
    assert full - plain > 3.0
