"""Tests for xmodal.config: defaults, YAML recipes, ``--set`` overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmodal.config import (
    EncoderConfig,
    ExperimentConfig,
    ModelConfig,
    apply_override,
    config_from_dict,
    from_dict,
    load_config,
    to_dict,
)
from xmodal.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    cfg = load_config()
    assert cfg == ExperimentConfig()
    assert cfg.model.image_encoder == EncoderConfig(name="efficientnet_lite0")
    assert cfg.model.text_encoder.name == "minilm"
    assert cfg.model.init_temperature == 0.07 and cfg.model.max_logit_scale == 100.0
    assert cfg.optim.betas == (0.9, 0.98)
    assert cfg.eval.retrieval == ["emoji:test"] and cfg.eval.zero_shot == ["fashion-mnist:test"]
    # mutable defaults are not shared between instances
    other = ExperimentConfig()
    other.eval.retrieval.append("x:y")
    assert ExperimentConfig().eval.retrieval == ["emoji:test"]


def test_yaml_recipe_is_read_and_typed(tmp_path):
    path = write(
        tmp_path / "r.yaml",
        """
# a recipe
model:
  image_encoder: {name: vit, args: {depth: 3}, unlocked_blocks: -1, lr: 1e-4}
  embed_dim: 128
optim:
  lr: 1e-3          # YAML 1.1 reads this as a string: it must become a float
  weight_decay: 0   # an int where a float is expected
  betas: [0.8, 0.9]
train: {steps: 7, threads: 1}
eval: {zero_shot: []}
""",
    )
    cfg = load_config(path)
    expected = EncoderConfig(name="vit", args={"depth": 3}, unlocked_blocks=-1, lr=1e-4)
    assert cfg.model.image_encoder == expected
    assert cfg.model.embed_dim == 128
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.weight_decay == 0.0 and isinstance(cfg.optim.weight_decay, float)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.train.steps == 7 and cfg.train.threads == 1
    assert cfg.eval.zero_shot == [] and cfg.eval.retrieval == ["emoji:test"]
    assert cfg.model.text_encoder.name == "minilm"  # untouched sections keep their defaults


def test_empty_yaml_gives_defaults(tmp_path):
    assert load_config(write(tmp_path / "e.yaml", "# nothing\n")) == ExperimentConfig()


def test_overrides_nested_floats_lists_and_new_args(tmp_path):
    path = write(tmp_path / "r.yaml", "optim: {lr: 0.5}\n")
    cfg = load_config(
        path,
        [
            "optim.lr=1e-3",
            "model.image_head.dropout=0.25",
            "model.text_encoder.args.max_length=32",
            "eval.retrieval=[emoji:val, emoji:test]",
            "eval.max_images=200",
            "train.threads=null",
            "data.augment.enabled=false",
        ],
    )
    assert cfg.optim.lr == 1e-3
    assert cfg.model.image_head.dropout == 0.25
    assert cfg.model.text_encoder.args == {"max_length": 32}
    assert cfg.eval.retrieval == ["emoji:val", "emoji:test"]
    assert cfg.eval.max_images == 200
    assert cfg.train.threads is None
    assert cfg.data.augment.enabled is False


def test_override_wins_over_file_and_later_override_wins(tmp_path):
    path = write(tmp_path / "r.yaml", "train: {steps: 10}\n")
    assert load_config(path, ["train.steps=20", "train.steps=30"]).train.steps == 30


def test_unknown_key_names_the_dotted_path(tmp_path):
    path = write(tmp_path / "r.yaml", "model:\n  image_head:\n    knid: mlp\n")
    with pytest.raises(ConfigError, match=r"'model\.image_head\.knid'") as e:
        load_config(path)
    assert "\n" not in str(e.value)
    assert "kind" in str(e.value)  # the known keys are listed
    with pytest.raises(ConfigError, match=r"'optim\.learning_rate'"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ConfigError, match=r"'trainer'"):
        load_config(None, ["trainer.steps=1"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("model.embed_dim=abc", r"model\.embed_dim: expected int, got str 'abc'"),
        ("model.embed_dim=1.5", r"model\.embed_dim: expected int, got float"),
        ("train.steps=true", r"train\.steps: expected int, got bool"),
        ("data.augment.enabled=1", r"data\.augment\.enabled: expected bool, got int"),
        ("optim.lr=fast", r"optim\.lr: expected float, got str 'fast'"),
        ("optim.betas=[0.9]", r"optim\.betas: expected 2 values"),
        ("eval.retrieval=emoji:test", r"eval\.retrieval: expected a list"),
        ("model.image_encoder.args=3", r"model\.image_encoder\.args: expected a mapping"),
        ("model=3", r"model: expected a mapping"),
        ("train.threads=two", r"train\.threads: expected int \| None"),
    ],
)
def test_wrong_types_name_key_and_value(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


def test_bad_overrides():
    with pytest.raises(ConfigError, match=r"must look like key\.path=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match="empty key segment"):
        load_config(None, ["optim..lr=1"])
    with pytest.raises(ConfigError, match="'lr' is not a section"):
        load_config(None, ["optim.lr=1", "optim.lr.x=2"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, ["eval.retrieval=[unclosed"])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "model:\n  embed_dim: 64\n  image_head: [oops\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line \d+") as e:
        load_config(path)
    assert "\n" not in str(e.value)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path / "list.yaml", "- a\n- b\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_missing_required_field():
    with pytest.raises(ConfigError, match=r"model\.image_encoder: .*missing .* 'name'"):
        from_dict(EncoderConfig, {"args": {}}, "model.image_encoder")


def test_partial_section_keeps_the_default_of_its_other_keys(tmp_path):
    path = write(tmp_path / "r.yaml", "model:\n  image_encoder: {unlocked_blocks: 2}\n")
    cfg = load_config(path, ["model.text_encoder.lr=1e-5"])
    assert cfg.model.image_encoder == EncoderConfig(name="efficientnet_lite0", unlocked_blocks=2)
    assert cfg.model.text_encoder == EncoderConfig(name="minilm", lr=1e-5)
    assert cfg.model.embed_dim == ModelConfig().embed_dim
    # a section that names another encoder does not inherit the default's arguments
    cfg = from_dict(ModelConfig, {"image_encoder": {"name": "vit"}}, "model")
    assert cfg.image_encoder == EncoderConfig(name="vit")


def test_to_dict_round_trips_through_json_types():
    cfg = load_config(None, ["model.image_encoder.args={pooled_stages: [4, 5, 7]}", "optim.lr=3e-4"])
    data = to_dict(cfg)
    assert data["optim"]["betas"] == [0.9, 0.98]  # tuples become lists (JSON)
    assert config_from_dict(data) == cfg


def test_apply_override_in_place():
    data: dict = {"a": {"b": 1}}
    apply_override(data, "a.c.d=[1, 2.5, x]")
    assert data == {"a": {"b": 1, "c": {"d": [1, 2.5, "x"]}}}
    apply_override(data, "a.b=")
    assert data["a"]["b"] == ""
