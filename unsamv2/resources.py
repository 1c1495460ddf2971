"""Where the model weights the pipeline needs come from (the upstream model pages and sam2's `checkpoints/download_ckpts.sh`).

Hugging Face files are fetched by plain HTTPS from `https://huggingface.co/<repo>/resolve/<revision>/<file>`, so
the same resumable, verified downloader serves every resource. Gated repositories (DINOv3) need the user's token
in `HF_TOKEN` after access was granted on the model page; without it the rule stops with a message saying so.
No checksums are published for these files; the revision pins what is fetched.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from unsamv2.download import download_file


@dataclass(frozen=True)
class HubModel:
    name: str
    repo_id: str
    files: tuple[str, ...]
    gated: bool
    revision: str = "main"
    page: str = ""

    def url(self, filename: str, endpoint: str | None = None) -> str:
        base = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        return f"{base}/{self.repo_id}/resolve/{self.revision}/{filename}"


BACKBONES: dict[str, HubModel] = {
    "dinov3_vitb16": HubModel(
        name="dinov3_vitb16",
        repo_id="facebook/dinov3-vitb16-pretrain-lvd1689m",
        files=("config.json", "model.safetensors"),
        gated=True,
        page="https://huggingface.co/facebook/dinov3-vitb16-pretrain-lvd1689m",
    ),
    "dinov2_vitb14": HubModel(
        name="dinov2_vitb14",
        repo_id="facebook/dinov2-base",
        files=("config.json", "model.safetensors"),
        gated=False,
        page="https://huggingface.co/facebook/dinov2-base",
    ),
}


def download_backbone(name: str, dest_dir: Path, endpoint: str | None = None) -> Path:
    """Fetch a backbone's transformers files into `dest_dir` (skipped where present and complete)."""
    if name not in BACKBONES:
        raise ValueError(f"no download source for backbone {name!r}; known: {', '.join(sorted(BACKBONES))}")
    model = BACKBONES[name]
    headers: dict[str, str] = {}
    token = os.environ.get("HF_TOKEN")
    if model.gated and not token:
        raise PermissionError(
            f"{model.repo_id} is gated: request access at {model.page}, then export HF_TOKEN=<your token> "
            f"and rerun — or put the model's files (config.json, model.safetensors) in {dest_dir} yourself "
            f"or set backbone.weights to a local directory holding them"
        )
    if token:
        headers["Authorization"] = f"Bearer {token}"
    dest_dir.mkdir(parents=True, exist_ok=True)
    for filename in model.files:
        download_file(model.url(filename, endpoint), dest_dir / filename, headers=headers)
    return dest_dir


# SAM-2.1 checkpoints (facebookresearch/sam2 checkpoints/download_ckpts.sh); Meta publishes no checksums.
SAM21_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
SAM21_FILES: dict[str, str] = {
    "tiny": "sam2.1_hiera_tiny.pt",
    "small": "sam2.1_hiera_small.pt",
    "base_plus": "sam2.1_hiera_base_plus.pt",
    "large": "sam2.1_hiera_large.pt",
}
#: Where the workflow keeps the downloaded SAM-2.1 checkpoints (relative to the working directory).
SAM21_CHECKPOINT_DIR = "resources/checkpoints"


def sam21_checkpoint_path(size: str) -> str:
    """The workflow's path of the stock SAM-2.1 checkpoint of ``size`` (what rule ``download_sam2`` writes)."""
    if size not in SAM21_FILES:
        raise ValueError(f"no SAM-2.1 checkpoint of size {size!r}; known: {', '.join(SAM21_FILES)}")
    return f"{SAM21_CHECKPOINT_DIR}/{SAM21_FILES[size]}"


def download_sam21(size: str, dest: Path, base_url: str = SAM21_BASE_URL) -> Path:
    """Fetch a stock SAM-2.1 checkpoint (resumable; verified by size only through the transfer itself)."""
    if size not in SAM21_FILES:
        raise ValueError(f"no SAM-2.1 checkpoint of size {size!r}; known: {', '.join(SAM21_FILES)}")
    return download_file(f"{base_url.rstrip('/')}/{SAM21_FILES[size]}", dest)
