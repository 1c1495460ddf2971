"""Upper bounds on what a browser may send to ``unsamv2 app`` (no heavy imports: the CLI parser reads them)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UploadLimits"]


@dataclass(frozen=True)
class UploadLimits:
    """Upper bounds on what a browser may send (the CLI's ``--max-upload-mb``, ``--max-image-pixels``,
    ``--max-frames``)."""

    max_upload_mb: float = 50.0
    #: 40 MP: a 8000×5000 photo still opens; a decompression bomb does not.
    max_image_pixels: int = 40_000_000
    max_frames: int = 200

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0 or self.max_image_pixels <= 0 or self.max_frames <= 0:
            raise ValueError(f"upload limits must be positive, got {self}")
