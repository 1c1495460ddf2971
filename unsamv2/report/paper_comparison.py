"""This run's numbers beside the paper's: ``paper_comparison.csv`` (long format) and ``tables.md`` (one Markdown
table per paper table).

The paper's values live in one data file, ``paper_values.csv`` beside this module (columns ``table, method, dataset,
metric, value, source``; ``source`` names the table and column they were copied from, method.md §6). Our values
are read from the run's summary CSVs:

- interactive (Tables 1, 2 and the run's own tables, e.g. the demo's): ``evaluation/interactive/<model>/<dataset>/
  summary.csv``, one row per granularity mode; the "average" dataset is :func:`unsamv2.evaluate.summary.paper_average`
  over the table's datasets, whose NoC90 column takes NoC85 on part datasets exactly as the paper's does;
- whole image (Table 3): ``evaluation/whole_image/<model>/<dataset>/summary.csv`` (``ar1000`` in percent), the
  average over the five benchmarks as the paper's "Avg" column;
- video (no paper table): ``evaluation/video/<model>/<dataset>/summary.csv``;
- the ablations (Tables 4, 5, 6, Fig. 10) and UnSAMv2+ (Tables 1, 2, 5): the summaries of the run's variants,
  ``variants/<name>/evaluation/interactive/<model>/<dataset>/summary.csv`` (config section ``experiments``), each
  beside the paper row its ``paper`` key names; the rows of the paper's default recipe come from the run itself
  (``report.paper_rows``). These tables appear only in runs with variants.

A value that is missing is left empty with the reason in ``note`` (stage not run, dataset not configured, job not
run yet, method not reproduced here) — never written as zero.
"""
from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from unsamv2.io.atomic import atomic_write_text

__all__ = [
    "COMPARISON_COLUMNS",
    "PAPER_VALUES_FILE",
    "ComparisonRow",
    "RunInfo",
    "build_comparison",
    "config_hash",
    "markdown_to_html",
    "read_paper_values",
    "tables_markdown",
    "write_comparison",
]

PAPER_VALUES_FILE = Path(__file__).with_name("paper_values.csv")
COMPARISON_COLUMNS: tuple[str, ...] = ("table", "method", "dataset", "metric", "paper", "ours", "delta", "note")

#: Summary-CSV column of each interactive metric name the paper uses.
INTERACTIVE_METRICS: dict[str, str] = {"NoC80": "noc80", "NoC85": "noc85", "NoC90": "noc90", "1-IoU": "iou1"}
#: Metrics of a run's own interactive table (no paper counterpart): NoC90 is the paper's mixed column.
OWN_TABLE_METRICS: tuple[str, ...] = ("NoC80", "NoC85", "NoC90", "1-IoU")
#: Paper method → (our model, our granularity mode) that reproduces it. SAM-2's protocol (single mask or best of 3)
#: is not stated in the paper (method.md §5.1), so both of our SAM-2 modes stand beside its row.
INTERACTIVE_COUNTERPARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "UnSAMv2∗": (("unsamv2", "oracle"),),
    "SAM-2": (("sam2", "none"), ("sam2", "best_of_3")),
}
WHOLE_IMAGE_COUNTERPARTS: dict[str, tuple[str, ...]] = {"UnSAMv2": ("unsamv2",)}
#: Our rows without a paper value, and why.
OWN_ONLY_NOTES: dict[str, str] = {
    "interactive": "not in the paper",
    "whole_image": "not in the paper (its Table 3 lists SAM-1, not SAM-2)",
    "video": "the paper reports no video numbers (Fig. 9 shows pictures only)",
}
MODEL_NAMES: dict[str, str] = {"unsamv2": "UnSAMv2", "sam2": "SAM-2"}
#: Paper methods this pipeline does not reproduce (other papers' models, or variants not in this run).
NOT_REPRODUCED = "not reproduced by this pipeline"
VARIANT_NOT_RUN = "UnSAMv2+ (pseudo-labels + SA-1B ground truth) is not part of this run"
#: The paper's ablation tables, built from the run's variants (method.md §6).
ABLATION_TABLES: tuple[str, ...] = ("table4", "table5", "table6", "fig10")
#: The evaluated modes that stand beside a paper row of a variant: the paper's numbers are UnSAMv2∗ (the
#: granularity oracle); a variant of the stock architecture (``trainable: baseline_no_granularity``) shows both
#: SAM-2 modes.
VARIANT_MODES: dict[str, tuple[str, ...]] = {"unsamv2": ("oracle",), "sam2": ("none", "best_of_3")}
NO_VARIANT = "no variant of this run reproduces it (experiments.<name>.paper)"
WHOLE_IMAGE_METRIC = "AR1000"
VIDEO_METRICS: dict[str, str] = {"J&F": "jf_mean", "J": "j_mean", "F": "f_mean"}
AVERAGE = "average"


@dataclass(frozen=True)
class RunInfo:
    """What produced "ours": written into the header of ``tables.md`` and used to explain missing values."""

    run: str
    config_hash: str
    git_commit: str
    stages: list[str]
    models: list[str]
    #: model → granularity modes evaluated (``unsamv2_modes`` / ``sam2_modes``)
    modes: dict[str, list[str]]
    #: model → checkpoint path (or "train" description) evaluated
    checkpoints: dict[str, str]
    interactive_datasets: list[str]
    #: the run's interactive tables (``evaluation.tables``): name → datasets
    interactive_tables: dict[str, list[str]]
    backbone: str
    model_size: str
    n_train_images: int | None
    random_init: bool
    synthetic: bool
    #: ``evaluation.max_clicks``: with one click, NoC is not measured (every object counts as "1 click")
    max_clicks: int = 20
    whole_image_datasets: list[str] = field(default_factory=list)
    whole_image_models: list[str] = field(default_factory=list)
    video_datasets: list[str] = field(default_factory=list)
    video_models: list[str] = field(default_factory=list)
    #: the run's variants (config section ``experiments``): name → {"model", "modes", "datasets", "paper"}, where
    #: "paper" maps a paper table to the rows of ``paper_values.csv`` the variant reproduces
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the paper rows the run's own training reproduces (``report.paper_rows``): table → rows
    paper_rows: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        data = json.loads(text)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"run info: unknown keys {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @property
    def comparable(self) -> bool:
        return not (self.random_init or self.synthetic)


def config_hash(config: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the config as canonical JSON (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ComparisonRow:
    table: str
    method: str
    dataset: str
    metric: str
    paper: float | None
    ours: float | None
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.paper is None or self.ours is None:
            return None
        return self.ours - self.paper


# ------------------------------------------------------------------------------------------------ inputs


def read_paper_values(path: str | Path = PAPER_VALUES_FILE) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["value"] = float(row["value"])
    return rows


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _number(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    value = float(text)
    return None if math.isnan(value) else value


class _RunResults:
    """Finds the run's summary CSVs and says why a value is missing."""

    def __init__(self, run_dir: Path, info: RunInfo, shown_from: Path | None = None) -> None:
        self.run_dir = run_dir
        self.info = info
        # Missing files are named relative to this folder (the results folder of every run).
        self.shown_from = run_dir.parent if shown_from is None else shown_from

    def _path(self, kind: str, model: str, dataset: str) -> Path:
        return self.run_dir / "evaluation" / kind / model / dataset / "summary.csv"

    def _configured(self, kind: str) -> list[str]:
        return {
            "interactive": self.info.interactive_datasets,
            "whole_image": self.info.whole_image_datasets,
            "video": self.info.video_datasets,
        }[kind]

    def models(self, kind: str) -> list[str]:
        return {
            "interactive": self.info.models,
            "whole_image": self.info.whole_image_models,
            "video": self.info.video_models,
        }[kind]

    def missing_reason(self, kind: str, model: str, dataset: str) -> str | None:
        """Why (model, dataset) of ``kind`` has no summary; ``None`` when it has one."""
        path = self._path(kind, model, dataset)
        if path.is_file():
            return None
        section = {"interactive": "evaluation", "whole_image": "whole_image", "video": "video"}[kind]
        if "evaluate" not in self.info.stages:
            return "evaluation stage not run (stages)"
        if not self._configured(kind):
            return f"{kind.replace('_', '-')} evaluation not configured in this run"
        if model not in self.models(kind):
            return f"model {model} not in {section}.models"
        if dataset not in self._configured(kind):
            return f"dataset not in this run's {section}.datasets"
        return f"not run yet ({path.relative_to(self.shown_from)})"

    def rows(self, kind: str, model: str, dataset: str) -> list[dict[str, str]]:
        path = self._path(kind, model, dataset)
        return _read_csv(path) if path.is_file() else []

    def interactive_row(self, model: str, dataset: str, mode: str) -> tuple[dict[str, Any] | None, str]:
        from unsamv2.evaluate.summary import read_summary_csv

        reason = self.missing_reason("interactive", model, dataset)
        if reason is not None:
            return None, reason
        for row in read_summary_csv(self._path("interactive", model, dataset)):
            if row["granularity_mode"] == mode:
                return row, ""
        return None, f"mode {mode} not in evaluation.{model}_modes"


# ------------------------------------------------------------------------------------------------ assembly


NOC_NOT_MEASURED = "NoC not measured: evaluation.max_clicks is 1 (first click only)"


def _interactive_value(row: Mapping[str, Any], metric: str) -> float | None:
    value = float(row[INTERACTIVE_METRICS[metric]])
    return None if math.isnan(value) else value


def _measured(results: _RunResults, metric: str) -> bool:
    return not (metric.startswith("NoC") and results.info.max_clicks < 2)


def _average_row(
    results: _RunResults, model: str, mode: str, datasets: Sequence[str]
) -> tuple[dict[str, Any] | None, str]:
    from unsamv2.evaluate.summary import paper_average

    rows, missing, reasons = [], [], set()
    for dataset in datasets:
        row, reason = results.interactive_row(model, dataset, mode)
        if row is None:
            missing.append(dataset)
            reasons.add(reason)
        else:
            rows.append(row)
    if missing:
        if len(missing) == len(datasets) and len(reasons) == 1:
            return None, reasons.pop()  # e.g. "model sam2 not in evaluation.models": no need to list datasets
        return None, f"average needs every dataset of the table; missing: {', '.join(missing)}"
    return paper_average(rows), ""


def _lookup_interactive(
    results: _RunResults, model: str, mode: str, dataset: str, table_datasets: Sequence[str]
) -> tuple[dict[str, Any] | None, str]:
    if dataset == AVERAGE:
        return _average_row(results, model, mode, table_datasets)
    return results.interactive_row(model, dataset, mode)


def _our_value(results: _RunResults, model: str, mode: str, dataset: str, metric: str,
               table_datasets: Sequence[str]) -> tuple[float | None, str]:
    """Our value of one (dataset, metric) cell, or None and why it is missing ("" when there is a value)."""
    row, reason = _lookup_interactive(results, model, mode, dataset, table_datasets)
    if row is None:
        return None, reason
    if not _measured(results, metric):
        return None, NOC_NOT_MEASURED
    ours = _interactive_value(row, metric)
    if ours is None:
        return None, f"{metric} not observable (the loop stops at a lower target IoU)"
    return ours, ""


def _mode_label(model: str, mode: str) -> str:
    return f"{MODEL_NAMES.get(model, model)} [{mode}]"


def _interactive_paper_table(
    table: str, paper: Sequence[Mapping[str, Any]], results: _RunResults
) -> list[ComparisonRow]:
    entries = [p for p in paper if p["table"] == table]
    datasets = list(dict.fromkeys(p["dataset"] for p in entries if p["dataset"] != AVERAGE))
    out: list[ComparisonRow] = []
    covered: set[tuple[str, str]] = set()
    for p in entries:
        counterparts = INTERACTIVE_COUNTERPARTS.get(p["method"])
        if not counterparts:
            provided = _variant_rows(table, p, results, datasets)
            if provided:
                out += provided
                continue
            note = VARIANT_NOT_RUN if p["method"].startswith("UnSAMv2+") else NOT_REPRODUCED
            out.append(ComparisonRow(table, p["method"], p["dataset"], p["metric"], p["value"], None, note))
            continue
        for model, mode in counterparts:
            covered.add((model, mode))
            ours, reason = _our_value(results, model, mode, p["dataset"], p["metric"], datasets)
            out.append(ComparisonRow(table, f"{p['method']} [{mode}]", p["dataset"], p["metric"], p["value"], ours,
                                     reason))
    # Our modes that the paper has no row for (e.g. UnSAMv2 at the best single g), on the same datasets.
    # In the paper's column order (a list, not a set: the CSV's row order must not depend on string hashing).
    columns = list(dict.fromkeys((p["dataset"], p["metric"]) for p in entries))
    for model in results.info.models:
        for mode in results.info.modes.get(model, []):
            if (model, mode) in covered:
                continue
            for dataset, metric in columns:
                ours, reason = _our_value(results, model, mode, dataset, metric, datasets)
                out.append(ComparisonRow(table, _mode_label(model, mode), dataset, metric, None, ours,
                                         OWN_ONLY_NOTES["interactive"] if ours is not None else reason))
    return out


def _providers(table: str, method: str, results: _RunResults) -> list[tuple[str, _RunResults, str]]:
    """Who reproduces the paper row (table, method): the run itself (``report.paper_rows``) and the variants that
    name it (``experiments.<name>.paper``), as (variant name or "", their results, evaluated model)."""
    info = results.info
    out = []
    if method in info.paper_rows.get(table, []):
        out.append(("", results, "unsamv2"))
    for name, variant in info.experiments.items():
        if method in variant["paper"].get(table, []):
            model = variant["model"]
            own = replace(info, models=[model], modes={model: list(variant["modes"])},
                          interactive_datasets=list(variant["datasets"]))
            out.append((name, _RunResults(results.run_dir / "variants" / name, own, results.shown_from), model))
    return out


def _variant_rows(
    table: str, p: Mapping[str, Any], results: _RunResults, datasets: Sequence[str]
) -> list[ComparisonRow]:
    """Our rows beside the paper row ``p``, one per provider and mode (empty when nobody reproduces it)."""
    out = []
    for name, provider, model in _providers(table, p["method"], results):
        for mode in VARIANT_MODES[model]:
            ours, reason = _our_value(provider, model, mode, p["dataset"], p["metric"], datasets)
            method = f"{p['method']} [{mode}]" + (f" ({name})" if name else "")
            out.append(ComparisonRow(table, method, p["dataset"], p["metric"], p["value"], ours, reason))
    return out


def _ablation_table(table: str, paper: Sequence[Mapping[str, Any]], results: _RunResults) -> list[ComparisonRow]:
    """One of Tables 4–6 / Fig. 10: SAM-2 from the run, every other row from whoever reproduces it."""
    entries = [p for p in paper if p["table"] == table]
    datasets = list(dict.fromkeys(p["dataset"] for p in entries if p["dataset"] != AVERAGE))
    out: list[ComparisonRow] = []
    for p in entries:
        if p["method"] in INTERACTIVE_COUNTERPARTS:
            for model, mode in INTERACTIVE_COUNTERPARTS[p["method"]]:
                row, reason = _lookup_interactive(results, model, mode, p["dataset"], datasets)
                if row is not None and not _measured(results, p["metric"]):
                    row, reason = None, NOC_NOT_MEASURED
                ours = _interactive_value(row, p["metric"]) if row is not None else None
                out.append(ComparisonRow(table, f"{p['method']} [{mode}]", p["dataset"], p["metric"], p["value"],
                                         ours, reason))
            continue
        out += _variant_rows(table, p, results, datasets) or [
            ComparisonRow(table, p["method"], p["dataset"], p["metric"], p["value"], None, NO_VARIANT)]
    return out


def _interactive_own_table(table: str, datasets: Sequence[str], results: _RunResults) -> list[ComparisonRow]:
    """A table of this run without a paper counterpart (e.g. the demo's synthetic scenes)."""
    out = []
    shown = list(datasets) + ([AVERAGE] if len(datasets) > 1 else [])
    for model in results.info.models:
        for mode in results.info.modes.get(model, []):
            for dataset in shown:
                row, reason = _lookup_interactive(results, model, mode, dataset, datasets)
                # One click: the table shows what was measured (1-IoU), not NoC columns of 1.00.
                for metric in [m for m in OWN_TABLE_METRICS if _measured(results, m)]:
                    ours = _interactive_value(row, metric) if row is not None else None
                    note = reason or ("no paper value for this dataset" if ours is not None
                                      else f"{metric} not observable (the loop stops at a lower target IoU)")
                    out.append(ComparisonRow(table, _mode_label(model, mode), dataset, metric, None, ours, note))
    return out


def _whole_image_value(results: _RunResults, model: str, dataset: str, datasets: Sequence[str]) -> tuple[float | None, str]:
    if dataset != AVERAGE:
        reason = results.missing_reason("whole_image", model, dataset)
        if reason is not None:
            return None, reason
        rows = results.rows("whole_image", model, dataset)
        return _number(rows[0]["ar1000"]) if rows else None, "" if rows else "empty summary"
    values, missing, reasons = [], [], set()
    for d in datasets:
        value, reason = _whole_image_value(results, model, d, datasets)
        if value is None:
            missing.append(d)
            reasons.add(reason)
        else:
            values.append(value)
    if missing:
        if len(missing) == len(datasets) and len(reasons) == 1:
            return None, reasons.pop()
        return None, f"average needs all five benchmarks; missing: {', '.join(missing)}"
    return sum(values) / len(values), ""


def _whole_image_table(paper: Sequence[Mapping[str, Any]], results: _RunResults) -> list[ComparisonRow]:
    entries = [p for p in paper if p["table"] == "table3"]
    datasets = list(dict.fromkeys(p["dataset"] for p in entries if p["dataset"] != AVERAGE))
    out = []
    for p in entries:
        models = WHOLE_IMAGE_COUNTERPARTS.get(p["method"])
        if not models:
            note = VARIANT_NOT_RUN if p["method"].startswith("UnSAMv2+") else NOT_REPRODUCED
            out.append(ComparisonRow("table3", p["method"], p["dataset"], p["metric"], p["value"], None, note))
            continue
        for model in models:
            ours, reason = _whole_image_value(results, model, p["dataset"], datasets)
            out.append(ComparisonRow("table3", p["method"], p["dataset"], p["metric"], p["value"], ours, reason))
    counterpart_models = {m for models in WHOLE_IMAGE_COUNTERPARTS.values() for m in models}
    for model in results.models("whole_image"):
        if model in counterpart_models:
            continue
        for dataset in [AVERAGE, *datasets]:
            ours, reason = _whole_image_value(results, model, dataset, datasets)
            out.append(ComparisonRow("table3", MODEL_NAMES.get(model, model), dataset, WHOLE_IMAGE_METRIC, None,
                                     ours, OWN_ONLY_NOTES["whole_image"] if ours is not None else reason))
    return out


def _own_whole_image_rows(results: _RunResults, paper_datasets: Sequence[str]) -> list[ComparisonRow]:
    """Whole-image benchmarks of this run that are not in Table 3 (the demo's synthetic scenes)."""
    out = []
    for dataset in results.info.whole_image_datasets:
        if dataset in paper_datasets:
            continue
        for model in results.models("whole_image"):
            ours, reason = _whole_image_value(results, model, dataset, [dataset])
            out.append(ComparisonRow("whole_image", MODEL_NAMES.get(model, model), dataset, WHOLE_IMAGE_METRIC,
                                     None, ours, "no paper value for this dataset" if ours is not None else reason))
    return out


def _video_rows(results: _RunResults) -> list[ComparisonRow]:
    out = []
    for dataset in results.info.video_datasets:
        for model in results.models("video"):
            reason = results.missing_reason("video", model, dataset)
            rows = results.rows("video", model, dataset)
            if reason is not None or not rows:
                out.append(ComparisonRow("video", MODEL_NAMES.get(model, model), dataset, "J&F", None, None,
                                         reason or "empty summary"))
                continue
            for row in rows:
                for metric, column in VIDEO_METRICS.items():
                    out.append(ComparisonRow("video", _mode_label(model, row["granularity_mode"]), dataset, metric,
                                             None, _number(row[column]), OWN_ONLY_NOTES["video"]))
    return out


def build_comparison(
    run_dir: str | Path, info: RunInfo, paper: Sequence[Mapping[str, Any]] | None = None
) -> list[ComparisonRow]:
    """Every row of ``paper_comparison.csv``: the run's own interactive tables, whole-image benchmarks outside
    Table 3 and video, then Tables 1–3 (always, with missing values explained)."""
    paper = read_paper_values() if paper is None else paper
    results = _RunResults(Path(run_dir), info)
    # The run's own tables first: for a run without paper counterparts (the demo) they are what it measured.
    rows: list[ComparisonRow] = []
    paper_tables = {p["table"] for p in paper}
    for table, datasets in info.interactive_tables.items():
        if table not in paper_tables:
            rows += _interactive_own_table(table, datasets, results)
    table3_datasets = [p["dataset"] for p in paper if p["table"] == "table3"]
    rows += _own_whole_image_rows(results, table3_datasets)
    rows += _video_rows(results)
    rows += _interactive_paper_table("table1", paper, results)
    rows += _interactive_paper_table("table2", paper, results)
    rows += _whole_image_table(paper, results)
    # Only in runs with variants: without them every row would be a missing value.
    claimed = {table for rows_of in [info.paper_rows, *(v["paper"] for v in info.experiments.values())]
               for table in rows_of}
    for table in ABLATION_TABLES:
        if table in claimed:
            rows += _ablation_table(table, paper, results)
    return rows


# ------------------------------------------------------------------------------------------------ outputs


def _fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def comparison_csv_text(rows: Iterable[ComparisonRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COMPARISON_COLUMNS)
    for r in rows:
        writer.writerow([r.table, r.method, r.dataset, r.metric, _fmt(r.paper), _fmt(r.ours, 4), _fmt(r.delta, 4),
                         r.note])
    return buffer.getvalue()


NOC90_OR_85 = "NoC90 (NoC85 on parts)"
TABLE_TITLES: dict[str, str] = {
    "table1": "Table 1 — UnSAMv2 vs SAM-2, interactive",
    "table2": "Table 2 — comparison with the state of the art, interactive",
    "table3": "Table 3 — whole-image AR@1000 (%)",
    "whole_image": "Whole-image AR@1000 (%) on this run's own benchmarks (no paper values)",
    "video": "Video J&F (this project's benchmark; the paper has no video numbers)",
    "table4": "Table 4 — training-set size (variants of this run)",
    "table5": "Table 5 — supervised (SA-1B ground truth) vs unsupervised training data, 1-IoU (variants)",
    "table6": "Table 6 — design ablations, PartImageNet NoC80 (variants of this run)",
    "fig10": "Fig. 10 — granularity-token ablation, 1-IoU (variants of this run)",
}


def _header(info: RunInfo) -> list[str]:
    lines = [
        f"# Paper vs this run: `{info.run}`",
        "",
        f"- run: `{info.run}`; config hash `{info.config_hash}`; git commit `{info.git_commit}`",
        f"- SAM-2 size: {info.model_size}; Stage 1 backbone: {info.backbone}; training images: "
        + ("–" if info.n_train_images is None else str(info.n_train_images)),
    ]
    for model, checkpoint in info.checkpoints.items():
        lines.append(f"- checkpoint `{model}`: `{checkpoint}`")
    reasons = []
    if info.random_init:
        reasons.append("the models were trained from random initialisation (no pretrained SAM-2 weights)")
    if info.synthetic:
        reasons.append("they were trained on synthetic scenes")
    if reasons:
        lines += ["", (f"**Not comparable to the paper: {' and '.join(reasons)}. The paper's values are shown for "
                      "reference only; only the comparison between this run's own rows means something.**")]
    lines += ["", ("\"–\" = missing; the reasons are listed under each table (never counted as zero). "
              "Paper values: `unsamv2/report/paper_values.csv` (method.md §6)."), ""]
    return lines


def _markdown_table(table: str, rows: Sequence[ComparisonRow]) -> list[str]:
    has_paper = any(r.paper is not None for r in rows)
    cell = {(r.method, r.dataset, r.metric): r for r in rows}
    if has_paper and not any((r.method, r.dataset, "NoC90") in cell for r in rows if r.metric == "NoC85"):
        # The paper's layout: one column holding NoC90 on object datasets and NoC85 on part datasets.
        cell = {(m, d, "NoC90" if metric == "NoC85" else metric): r for (m, d, metric), r in cell.items()}
    metrics = list(dict.fromkeys(metric for (_, _, metric) in cell))
    keys = list(dict.fromkeys((r.method, r.dataset) for r in rows))
    columns = ["method", "dataset"]
    for metric in metrics:
        name = NOC90_OR_85 if metric == "NoC90" and any(r.metric == "NoC85" for r in rows) and has_paper else metric
        columns += [f"{name} paper", f"{name} ours"] if has_paper else [name]
    lines = [f"## {TABLE_TITLES.get(table, f'{table} (this run only, no paper values)')}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for method, dataset in keys:
        values = [method, dataset]
        for metric in metrics:
            r = cell.get((method, dataset, metric))
            paper = "" if r is None or r.paper is None else _fmt(r.paper)
            ours = "" if r is None else ("–" if r.ours is None else _fmt(r.ours))
            values += [paper, ours] if has_paper else [ours]
        lines.append("| " + " | ".join(values) + " |")
    datasets = list(dict.fromkeys(r.dataset for r in rows))
    reasons: dict[str, dict[str, list[str]]] = {}
    for r in rows:
        if r.ours is None and r.note:
            shown = reasons.setdefault(r.note, {}).setdefault(r.method, [])
            if r.dataset not in shown:
                shown.append(r.dataset)
    if reasons:
        lines += ["", "Missing:"]
        for reason, methods in reasons.items():
            labels = [f"{m} ({'all datasets' if len(ds) == len(datasets) else ', '.join(ds)})"
                      for m, ds in methods.items()]
            lines.append(f"- {reason}: {'; '.join(labels)}")
    return lines + [""]


def tables_markdown(rows: Sequence[ComparisonRow], info: RunInfo) -> str:
    lines = _header(info)
    for table in dict.fromkeys(r.table for r in rows):
        lines += _markdown_table(table, [r for r in rows if r.table == table])
    return "\n".join(lines)


def _inline_html(text: str) -> str:
    """The inline Markdown :func:`tables_markdown` uses: `code` and **bold**."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def markdown_to_html(markdown: str, title: str) -> str:
    """A standalone HTML page of :func:`tables_markdown`'s output (headings, bullets, paragraphs, pipe tables),
    so the Snakemake report can show the tables inline; only that subset of Markdown is understood."""
    body: list[str] = []
    table: list[list[str]] = []
    in_list = False

    def flush_table() -> None:
        if not table:
            return
        head, rows = table[0], table[2:]  # table[1] is the |---| rule
        body.append("<table><thead><tr>" + "".join(f"<th>{_inline_html(c)}</th>" for c in head) + "</tr></thead>")
        body.append("<tbody>" + "".join(
            "<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in rows) + "</tbody></table>")
        table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush_table()
        if in_list and not line.startswith("- "):
            body.append("</ul>")
            in_list = False
        if line.startswith("## "):
            body.append(f"<h2>{_inline_html(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{_inline_html(line[2:])}</h1>")
        elif line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{_inline_html(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{_inline_html(line)}</p>")
    flush_table()
    if in_list:
        body.append("</ul>")
    style = ("body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse;margin:0.5em 0}"
             "th,td{border:1px solid #999;padding:2px 6px;text-align:right}:is(td,th):is(:first-child,:nth-child(2))"
             "{text-align:left}th{background:#eee}strong{color:#a00}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_comparison(run_dir: str | Path, info: RunInfo, out_dir: str | Path) -> list[ComparisonRow]:
    """Write ``paper_comparison.csv``, ``tables.md`` and ``tables.html`` (the same tables as a page for the
    Snakemake report) into ``out_dir``, atomically, and return the rows."""
    rows = build_comparison(run_dir, info)
    out = Path(out_dir)
    markdown = tables_markdown(rows, info)
    atomic_write_text(out / "paper_comparison.csv", comparison_csv_text(rows))
    atomic_write_text(out / "tables.md", markdown)
    atomic_write_text(out / "tables.html", markdown_to_html(markdown, f"Paper vs this run: {info.run}"))
    return rows
