"""One source of configuration: the workflow schema follows the settings dataclasses, key for key."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from unsamv2.core.constants import SAM2_SIZES
from unsamv2.datasets.registry import dataset_names
from unsamv2.discovery.config import (
    DIVIDE_METHODS,
    GRANULARITY_FORMULAS,
    REFINERS,
    RELATIONS,
    DiscoveryConfig,
)
from unsamv2.evaluate.config import EVALUATED_MODELS, EvaluationConfig
from unsamv2.evaluate.video_config import VideoConfig
from unsamv2.evaluate.whole_image_config import POSTPROCESSORS, WHOLE_IMAGE_IMAGE_IDS, WholeImageConfig
from unsamv2.train.config import CORRECTION_METHODS, TRAINABLE_MODES, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
SECTIONS = {"discovery": DiscoveryConfig, "train": TrainConfig, "evaluation": EvaluationConfig,
            "whole_image": WholeImageConfig, "video": VideoConfig}


def _default(f: dataclasses.Field) -> Any:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_schema_keys_and_defaults_are_the_dataclass_fields(section: str) -> None:
    props = SCHEMA["properties"][section]
    assert props["additionalProperties"] is False, f"{section}: unknown keys must fail validation"
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
    assert set(props["properties"]) == set(fields)
    for name, f in fields.items():
        assert props["properties"][name].get("default") == _default(f), f"{section}.{name}"


@pytest.mark.parametrize(("path", "values"), [
    (("train", "trainable"), TRAINABLE_MODES),
    (("train", "correction_sampler"), CORRECTION_METHODS),
    (("train", "model_size"), SAM2_SIZES),
    (("evaluation", "sam2_size"), SAM2_SIZES),
    (("discovery", "divide"), DIVIDE_METHODS),
    (("discovery", "relation"), RELATIONS),
    (("discovery", "refine"), REFINERS),
    (("granularity", "formula"), GRANULARITY_FORMULAS),
    (("whole_image", "postprocess"), POSTPROCESSORS),
    (("whole_image", "image_ids"), WHOLE_IMAGE_IMAGE_IDS),
])
def test_schema_enums_are_the_package_constants(path: tuple[str, str], values: tuple[str, ...]) -> None:
    section, key = path
    spec = SCHEMA["properties"][section]["properties"][key]
    assert spec["enum"] == list(values)


def test_granularity_formula_default_is_the_scoring_default() -> None:
    assert SCHEMA["properties"]["granularity"]["properties"]["formula"]["default"] == GRANULARITY_FORMULAS[0]


def test_schema_list_items_are_the_known_models_and_datasets() -> None:
    props = SCHEMA["properties"]["evaluation"]["properties"]
    assert props["models"]["items"]["enum"] == list(EVALUATED_MODELS)
    assert sorted(props["datasets"]["items"]["enum"]) == sorted(dataset_names())


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "demo_photos.yaml"])
def test_shipped_configs_build_every_dataclass(name: str) -> None:
    """The sections of every shipped config are accepted by the dataclasses (which validate again)."""
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    DiscoveryConfig.from_dict(cfg["discovery"])
    TrainConfig.from_dict({**(cfg.get("train") or {}), "base_checkpoint": None})
    EvaluationConfig.from_dict(cfg.get("evaluation") or {})
    VideoConfig.from_dict(cfg.get("video") or {})


def test_sentinels_resolve_in_the_package() -> None:
    ev = EvaluationConfig(models=("unsamv2", "sam2"), sam2_checkpoint="train_baseline")
    assert ev.checkpoint("unsamv2", "results/x") == "results/x/train/final.pt"
    assert ev.checkpoint("sam2", "results/x") == "results/x/train_baseline/final.pt"
    assert ev.trains_baseline
    stock = EvaluationConfig(sam2_size="large")
    assert stock.checkpoint("sam2", "results/x") == "resources/checkpoints/sam2.1_hiera_large.pt"
    assert stock.model_size("sam2", trained_size="tiny") == "large"
    assert ev.model_size("sam2", trained_size="tiny") == "tiny"
    assert EvaluationConfig(unsamv2_checkpoint="/w/u.pt").checkpoint("unsamv2", "r") == "/w/u.pt"
    train = TrainConfig(model_size="tiny", base_checkpoint="sam2")
    assert train.resolve_base_checkpoint().base_checkpoint == "resources/checkpoints/sam2.1_hiera_tiny.pt"
    base = train.baseline()
    assert (base.trainable, base.lora_rank, base.lr) == ("baseline_no_granularity", 0, train.lr)


def test_bad_values_name_the_key() -> None:
    with pytest.raises(ValueError, match="evaluation.max_clicks"):
        EvaluationConfig(max_clicks=0)
    with pytest.raises(ValueError, match="unknown evaluation config key.*max_click"):
        EvaluationConfig.from_dict({"max_click": 3})
    with pytest.raises(ValueError, match="evaluation.models"):
        EvaluationConfig(models=("sam3",))
    with pytest.raises(ValueError, match="train.model_size"):
        TrainConfig(model_size="huge")


def test_cli_defaults_are_the_config_defaults() -> None:
    from unsamv2.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["evaluate-interactive", "--dataset", "grabcut", "--root", "x", "--model", "sam2",
                              "--out-dir", "o"])
    ev = EvaluationConfig()
    assert (args.image_size, args.max_clicks, args.limit, args.device, args.model_size) == (
        ev.image_size, ev.max_clicks, ev.limit, ev.device, ev.sam2_size)


def test_workflow_dag_does_not_import_torch(tmp_path: Path) -> None:
    """`snakemake -n` reads the config dataclasses but must not pay for importing torch (or need it at all)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch imported while building the DAG')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(blocker)!r})
        from snakemake.cli import main
        sys.argv = ["snakemake", "-n", "--configfile", "config/demo.yaml", "--quiet", "rules"]
        main()
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_video_schema_lists_the_video_datasets_and_models() -> None:
    props = SCHEMA["properties"]["video"]["properties"]
    assert props["datasets"]["items"]["enum"] == dataset_names("video")
    assert props["models"]["items"]["enum"] == list(EVALUATED_MODELS)
