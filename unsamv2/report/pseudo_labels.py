"""Statistics of the discovered pseudo-labels: per image, overall, and the granularity histogram (paper Fig. 4).

Reads the scored SA-1B-style JSONs and the discovery manifests (which list failed images), writes CSVs and a PNG.
The paper reports 112 masks per image on 6K SA-1B images and a left-tailed histogram ("most masks have g < 0.4");
the overall table carries those reference values beside ours.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from unsamv2.datasets.unlabeled import read_image_list
from unsamv2.discovery.shard import output_name, read_manifest
from unsamv2.io.atomic import atomic_output, atomic_write_text
from unsamv2.io.pseudo_labels import read_document

PAPER_MASKS_PER_IMAGE = 112.0


def collect(label_files: Sequence[Path]) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-image rows and the flat array of all granularities."""
    rows, all_g = [], []
    for path in sorted(label_files):
        doc = read_document(path)
        anns = doc["annotations"]
        g = np.array([a["granularity"] for a in anns], dtype=np.float64)
        all_g.append(g)
        rows.append(
            {
                "image_id": doc["image"]["id"],
                "file_name": doc["image"]["file_name"],
                "n_masks": len(anns),
                "n_instances": sum(1 for a in anns if a["is_divide"]),
                "n_parts": sum(1 for a in anns if a["is_part"]),
                "mean_granularity": float(g.mean()) if g.size else float("nan"),
                "frac_below_0.4": float((g < 0.4).mean()) if g.size else float("nan"),
            }
        )
    cols = ["image_id", "file_name", "n_masks", "n_instances", "n_parts", "mean_granularity", "frac_below_0.4"]
    per_image = pd.DataFrame(rows, columns=cols)
    flat = np.concatenate(all_g) if all_g else np.zeros(0)
    return per_image, flat


def histogram(granularities: np.ndarray, bins: int) -> pd.DataFrame:
    """Counts over `bins` equal bins of [0.1, 1.0] (the last bin closed, so g = 1.0 is counted)."""
    counts, edges = np.histogram(granularities, bins=bins, range=(0.1, 1.0))
    total = max(int(counts.sum()), 1)
    return pd.DataFrame(
        {"bin_low": edges[:-1], "bin_high": edges[1:], "count": counts, "percent": 100.0 * counts / total}
    )


def write_report(
    label_files: Sequence[Path], manifests: Sequence[Path], out_dir: Path, bins: int = 9, run: str = ""
) -> dict[str, float]:
    """Write per_image.csv, summary.csv, granularity_histogram.csv/.png and failures.csv; return the summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    per_image, flat = collect(label_files)
    statuses = [r for m in manifests for r in read_manifest(Path(m))]
    failures = pd.DataFrame(
        [{"image_id": r.image_id, "file_name": r.file_name, "error": r.error} for r in statuses if r.status == "error"],
        columns=["image_id", "file_name", "error"],
    )
    hist = histogram(flat, bins)
    summary = {
        "run": run,
        "images_listed": len(statuses),
        "images_labelled": len(per_image),
        "images_failed": len(failures),
        "masks_total": int(per_image["n_masks"].sum()),
        "masks_per_image": float(per_image["n_masks"].mean()) if len(per_image) else 0.0,
        "instances_per_image": float(per_image["n_instances"].mean()) if len(per_image) else 0.0,
        "parts_per_image": float(per_image["n_parts"].mean()) if len(per_image) else 0.0,
        "mean_granularity": float(flat.mean()) if flat.size else float("nan"),
        "frac_granularity_below_0.4": float((flat < 0.4).mean()) if flat.size else float("nan"),
        "paper_masks_per_image": PAPER_MASKS_PER_IMAGE,
    }
    atomic_write_text(out_dir / "per_image.csv", per_image.to_csv(index=False))
    atomic_write_text(out_dir / "summary.csv", pd.DataFrame([summary]).to_csv(index=False))
    atomic_write_text(out_dir / "granularity_histogram.csv", hist.to_csv(index=False))
    atomic_write_text(out_dir / "failures.csv", failures.to_csv(index=False))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    centers = (hist["bin_low"] + hist["bin_high"]) / 2
    width = float(hist["bin_high"].iloc[0] - hist["bin_low"].iloc[0]) * 0.9
    axes[0].bar(centers, hist["percent"].clip(lower=1e-3), width=width, color="#4878d0")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("granularity g")
    axes[0].set_ylabel("% of masks (log scale)")
    axes[0].set_title(f"Granularity of {summary['masks_total']} pseudo-masks")
    for x, p in zip(centers, hist["percent"]):
        if p > 0:
            axes[0].text(x, p, f"{p:.1f}%", ha="center", va="bottom", fontsize=7)
    axes[1].hist(per_image["n_masks"], bins=min(20, max(len(per_image), 1)), color="#ee854a")
    axes[1].set_xlabel("masks per image")
    axes[1].set_ylabel("images")
    axes[1].set_title(f"{summary['masks_per_image']:.1f} masks/image (paper: {PAPER_MASKS_PER_IMAGE:.0f})")
    fig.tight_layout()
    with atomic_output(out_dir / "granularity_histogram.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return summary


def write_examples(label_files: Sequence[Path], image_paths: dict[str, Path], out_png: Path, n: int = 4) -> None:
    """A gallery: each image beside its pseudo-masks coloured by granularity (large masks drawn first, so fine
    parts stay visible on top). Images are those with the most masks, ties by name, so the figure is stable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unsamv2.io.images import load_image_rgb
    from unsamv2.io.masks import decode_rle

    docs = [read_document(p) for p in label_files]
    docs = [d for d in docs if d["annotations"] and d["image"]["file_name"] in image_paths]
    docs = sorted(docs, key=lambda d: (-len(d["annotations"]), d["image"]["file_name"]))[:n]
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(max(len(docs), 1), 2, figsize=(8, 3.2 * max(len(docs), 1)), squeeze=False)
    for row, doc in zip(axes, docs):
        image = load_image_rgb(image_paths[doc["image"]["file_name"]])
        overlay = image.astype(np.float32) / 255 * 0.35
        for ann in sorted(doc["annotations"], key=lambda a: -a["area"]):
            m = decode_rle(ann["segmentation"])
            overlay[m] = 0.25 * overlay[m] + 0.75 * np.asarray(cmap((ann["granularity"] - 0.1) / 0.9)[:3])
        row[0].imshow(image)
        row[0].set_title(doc["image"]["file_name"], fontsize=9)
        row[1].imshow(overlay)
        row[1].set_title(f"{len(doc['annotations'])} masks, colour = granularity", fontsize=9)
        for ax in row:
            ax.axis("off")
    if not docs:
        axes[0][0].text(0.5, 0.5, "no pseudo-labels", ha="center")
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0.1, 1.0), cmap=cmap), ax=axes[:, 1].tolist(),
                 label="granularity g", shrink=0.8)
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_pseudo_label_report(
    labels_dir: Path, manifests: Sequence[Path], out_dir: Path, bins: int, run: str, image_list: Path | None = None,
) -> dict[str, float]:
    """``unsamv2 report-pseudo-labels``: the statistics of every image the manifests list as done, and
    ``examples.png`` when the image list is given."""
    files = [labels_dir / output_name(Path(r.file_name)) for m in manifests for r in read_manifest(Path(m))
             if r.status != "error"]
    summary = write_report(files, manifests, out_dir, bins=bins, run=run)
    if image_list is not None:
        paths = {p.name: p for _, p in read_image_list(image_list)}
        write_examples(files, paths, out_dir / "examples.png")
    return summary
