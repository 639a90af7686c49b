import pytest
import torch

from components.model.gpt import GPT, GPTClassifier, GPTConfig, padded_vocab

TINY = GPTConfig(vocab_size=96, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(TINY).eval()


def test_logits_shape(model):
    idx = torch.randint(0, TINY.vocab_size, (3, 10))
    assert model(idx).shape == (3, 10, TINY.vocab_size)


def test_attention_is_causal(model):
    idx = torch.randint(0, TINY.vocab_size, (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % TINY.vocab_size
    with torch.no_grad():
        before, after = model(idx), model(changed)
    torch.testing.assert_close(before[:, :8], after[:, :8])
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_embeddings_are_tied(model):
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()


def test_residual_projections_are_scaled_down():
    torch.manual_seed(0)
    deep = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=8, n_head=2, n_embd=64))
    std = deep.blocks[0].attn.proj.weight.std().item()
    assert std == pytest.approx(0.02 / 4, rel=0.15)
    assert deep.blocks[0].mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.15)


def test_gpt2_small_has_124m_parameters():
    with torch.device("meta"):
        model = GPT(GPTConfig(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    assert model.num_parameters(non_embedding=False) == pytest.approx(124.5e6, rel=0.01)
    # nanoGPT's FLOPs-per-token estimate for this model at T=1024.
    assert model.flops_per_token() == pytest.approx(
        6 * model.num_parameters() + 12 * 12 * 768 * 1024
    )


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPTConfig(n_embd=30, n_head=4)


@pytest.mark.parametrize(("size", "padded"), [(8192, 8192), (8193, 8256), (50257, 50304)])
def test_padded_vocab(size, padded):
    assert padded_vocab(size) == padded


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_classifier_ignores_right_padding(model, pooling):
    classifier = GPTClassifier(model, num_classes=3, pooling=pooling).eval()
    short = torch.randint(1, TINY.vocab_size, (1, 5))
    padded = torch.cat([short, torch.zeros(1, 7, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 5), torch.zeros(1, 7)], dim=1)
    garbage = padded.clone()
    garbage[0, 5:] = torch.randint(1, TINY.vocab_size, (7,))
    with torch.no_grad():
        alone = classifier(short, torch.ones(1, 5))
        with_pad = classifier(padded, mask)
        with_garbage = classifier(garbage, mask)
    assert alone.shape == (1, 3)
    torch.testing.assert_close(alone, with_pad)
    torch.testing.assert_close(alone, with_garbage)


def test_classifier_trains_end_to_end(model):
    torch.manual_seed(0)
    classifier = GPTClassifier(model.train(), num_classes=2)
    idx = torch.randint(0, TINY.vocab_size, (8, 6))
    labels = (idx[:, 0] % 2).long()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3)
    mask = torch.ones_like(idx)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(classifier(idx, mask), labels)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 4


def test_mean_pooling_averages_the_real_tokens_states(model):
    classifier = GPTClassifier(model, num_classes=3, pooling="mean").eval()
    idx = torch.randint(1, TINY.vocab_size, (1, 6))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        hidden = model.hidden_states(idx)
        expected = classifier.head(hidden[:, :4].mean(dim=1))
        torch.testing.assert_close(classifier(idx, mask), expected)
        assert not torch.allclose(expected, classifier.head(hidden[:, 3]))  # not the last token's


def test_an_unknown_pooling_is_refused(model):
    with pytest.raises(ValueError, match="pooling must be one of"):
        GPTClassifier(model, num_classes=2, pooling="max")


def test_set_dropout_reaches_embeddings_attention_and_residuals(model):
    model.set_dropout(0.3)
    rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates == {0.3}
    assert all(block.attn.dropout == 0.3 for block in model.blocks)
    model.train()
    idx = torch.randint(0, TINY.vocab_size, (2, 8))
    assert not torch.allclose(model(idx), model(idx))  # dropout is active in training
