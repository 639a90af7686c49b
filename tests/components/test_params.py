from pathlib import Path

import pytest
import yaml

from components.core.errors import ConfigError
from components.core.paths import Paths, PathsParams
from components.params import Params, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]


def _with_text_keys(value: object) -> object:
    """``value`` with every mapping's keys as text (YAML reads ``5:`` as a number)."""
    if isinstance(value, dict):
        return {str(k): _with_text_keys(v) for k, v in value.items()}
    return value


def test_params_yaml_states_exactly_the_defaults_of_the_sections():
    # Each default lives in its section's model; params.yaml shows the same values, so that
    # a section left out of it, or a value changed in one place only, fails here.
    raw = _with_text_keys(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert raw == Params().model_dump(mode="json", by_alias=True)


def test_repository_params_yaml_is_valid_and_explicit():
    params = load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    # Every section of the model is spelled out in params.yaml: it is the one place to look.
    assert set(raw) == set(Params.model_fields) - {"validate_"} | {"validate"}
    assert set(raw["paths"]) == set(Paths.__dataclass_fields__) - {"root"}
    assert params.clean.min_stop_words == 2
    assert params.ingest.source == "builtin:enwiki-sample"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"clean": {"min_words": 0}}, "clean.min_words: Input should be greater than 0"),
        ({"clean": {"bogus": 1}}, "clean.bogus: Extra inputs are not permitted"),
        ({"bogus": {}}, "bogus: Extra inputs are not permitted"),
        (
            {"tokenize": {"vocab_size": "big"}},
            "tokenize.vocab_size: Input should be a valid integer",
        ),
        (
            {"clean": {"dedup": {"threshold": 1.5}}},
            "clean.dedup.threshold: Input should be less than 1",
        ),
        (
            {"clean": {"min_words": 10, "max_words": 5}},
            "clean.min_words: must not exceed max_words",
        ),
        (
            {"clean": {"language": "de", "stop_words": "gopher"}},
            "clean.stop_words: 'gopher' is an English list",
        ),
        ({"clean": {"language": "xx"}}, "clean.language: stopwordsiso has no stop-word list"),
        ({"ingest": {"checksum": "sha1:abc"}}, "ingest.checksum: a sha1 digest has 40 hex digits"),
        ({"ingest": {"checksum": "crc:00"}}, "ingest.checksum: String should match pattern"),
        ({"ingest": {"bz2_decoder": "zstd"}}, "ingest.bz2_decoder: Input should be 'auto'"),
        (
            {"ingest": {"source": "latest", "checksum": "sha1:" + "0" * 40}},
            "ingest.checksum: source 'latest' is checked against the sha1 the mirror publishes",
        ),
        ({"validate": {"min_chars": 10, "max_chars": 5}}, "validate.min_chars: must not exceed"),
        ({"tokenize": {"special_tokens": []}}, "tokenize.special_tokens: the first entry"),
        ({"tokenize": {"special_tokens": ["<a>", "<a>"]}}, "tokenize.special_tokens: entries must"),
        ({"trainer": {"devices": 0}}, "trainer.devices: must be at least 1"),
        ({"trainer": {"precision": "fp8"}}, "trainer.precision: Input should be"),
        ({"pretrain": {"lr": 1e-4, "min_lr": 1e-3}}, "pretrain.min_lr: must not exceed lr"),
        ({"pretrain": {"max_steps": 5, "warmup_steps": 9}}, "pretrain.warmup_steps: must not"),
        (
            {"finetune": {"val_fraction": 0.5, "test_fraction": 0.5}},
            "finetune.test_fraction: val_fraction + test_fraction",
        ),
        ({"finetune": {"max_length": 4096}}, "finetune.max_length: 4096 exceeds the model's"),
        (
            {"model": {"overrides": {"n_layer": 2}}, "finetune": {"freeze_layers": 3}},
            "finetune.freeze_layers: 3 exceeds the model's n_layer 2",
        ),
        ({"evaluate": {"tfidf_ngram_max": 5}}, "evaluate.tfidf_ngram_max: Input should be less"),
        ({"evaluate": {"logreg_c": [1, 0]}}, "evaluate.logreg_c: every C must be above 0"),
        ({"evaluate": {"logreg_c": []}}, "evaluate.logreg_c: List should have at least 1 item"),
        (
            {"export": {"latency_batch_sizes": [32]}},
            "export.latency_batch_sizes: must include 1",
        ),
        ({"export": {"latency_batch_sizes": [1, 0]}}, "export.latency_batch_sizes.1: Input should"),
        (
            {"clean": {"remove_stopwords": True}},
            "validate.min_stop_word_ratio: 0.05 cannot hold when clean.remove_stopwords",
        ),
        (
            {"promote": {"serve_int8": True}, "export": {"quantize": False}},
            "promote.serve_int8: true needs the int8 classifier",
        ),
    ],
    ids=lambda v: None if isinstance(v, dict) else v.split(":")[0],
)
def test_each_problem_names_its_key_path(raw, expected):
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_the_lbzip2_decoder_needs_lbzip2_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without lbzip2
    with pytest.raises(ConfigError) as caught:
        parse_params({"ingest": {"bz2_decoder": "lbzip2"}})
    assert caught.value.problems == [
        "ingest.bz2_decoder: lbzip2 is not installed (apt install lbzip2); "
        "or set 'auto' to use it only where it is"
    ]
    assert parse_params({"ingest": {"bz2_decoder": "auto"}}).ingest.bz2_decoder == "auto"


def test_all_problems_are_reported_at_once():
    raw = {
        "ingest": {"workers": -1},
        "clean": {"min_words": 0, "typo": True},
        "tokenize": {"vocab_size": "x"},
    }
    with pytest.raises(ConfigError) as caught:
        parse_params(raw)
    keys = sorted(p.split(":")[0] for p in caught.value.problems)
    assert keys == ["clean.min_words", "clean.typo", "ingest.workers", "tokenize.vocab_size"]
    assert caught.value.exit_code == 2


def test_params_are_frozen():
    params = Params()
    with pytest.raises(ValueError, match="frozen"):
        params.clean.min_words = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("clean: [unclosed", "not valid YAML"),
        ("- a list\n- not a mapping\n", "the top level must be a mapping"),
    ],
)
def test_unreadable_files_are_config_errors(tmp_path, content, expected):
    path = tmp_path / "params.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_params(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda path: path.mkdir(), "cannot read it"),
        (lambda path: path.write_bytes(b"clean:\n  language: \xff\xfe\n"), "not UTF-8 text"),
    ],
    ids=["a-folder", "not-utf8"],
)
def test_an_unreadable_params_file_is_a_config_error(tmp_path, make, expected):
    path = tmp_path / "params.yaml"
    make(path)
    with pytest.raises(ConfigError, match=expected):
        load_params(path)


def test_empty_file_gives_defaults(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("")
    assert load_params(path) == Params()


def test_paths_resolve_against_root(tmp_path):
    paths = Paths.resolve(Params().paths, tmp_path)
    assert paths.ingest == tmp_path.resolve() / "data" / "ingest"
    assert paths.validate == tmp_path.resolve() / "reports" / "validate"
    assert paths.metrics_file("clean") == tmp_path.resolve() / "metrics" / "clean.json"


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ({"ingest": "."}, "paths.ingest: .* is the project folder or holds it"),
        ({"ingest": ""}, "paths.ingest: .* is the project folder or holds it"),
        ({"tokens": ".."}, "paths.tokens: .* is the project folder or holds it"),
        ({"clean": "data"}, "paths.ingest: .* overlaps paths.clean"),
        ({"clean": "data/ingest"}, "paths.ingest: .* overlaps paths.clean"),
        ({"checkpoints": "models/pretrain/state"}, "paths.pretrain: .* overlaps paths.checkpoints"),
    ],
)
def test_paths_that_would_delete_other_files_are_config_errors(tmp_path, paths, expected):
    with pytest.raises(ConfigError, match=expected):
        Paths.resolve(PathsParams(**paths), tmp_path)


def test_model_preset_with_overrides():
    params = parse_params({"model": {"preset": "gpt2-small", "overrides": {"n_layer": 6}}})
    shape = params.model.shape()
    assert (shape.n_layer, shape.n_embd, shape.block_size) == (6, 768, 1024)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"preset": "huge"}, "model.preset: unknown preset 'huge'"),
        ({"overrides": {"layers": 3}}, "model.overrides: unknown keys ['layers']"),
        ({"overrides": {"n_layer": 0}}, "model.overrides.n_layer: Input should be greater"),
    ],
)
def test_model_problems_name_their_keys(model, expected):
    with pytest.raises(ConfigError) as caught:
        parse_params({"model": model})
    assert any(p.startswith(expected) for p in caught.value.problems), caught.value.problems


def test_field_problems_of_one_section_are_reported_together():
    with pytest.raises(ConfigError) as caught:
        parse_params({"ingest": {"workers": -1, "checksum": "sha1:abc"}})
    keys = sorted(p.split(":")[0] for p in caught.value.problems)
    assert keys == ["ingest.checksum", "ingest.workers"]


@pytest.mark.parametrize("field", ["top_ngram_char_fraction", "duplicate_ngram_char_fraction"])
def test_repetition_ngram_sizes_are_bounded(field):
    with pytest.raises(ConfigError) as caught:
        parse_params({"clean": {"repetition": {field: {12: 0.1}}}})
    assert caught.value.problems == [
        f"clean.repetition.{field}: n-gram sizes must be between 1 and 10, got [12]"
    ]


@pytest.mark.parametrize("name", ["ingest", "clean", "validate", "tokenize", "model"])
def test_sections_by_their_params_yaml_name(name):
    params = Params()
    section = params.section(name)
    assert section is (params.validate_ if name == "validate" else getattr(params, name))
