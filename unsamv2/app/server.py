"""Start ``unsamv2 app``: load the model once, build the Gradio page, serve it on 127.0.0.1 until Ctrl-C.

Everything the server writes (uploads, Gradio's cache, masks offered for download) goes into one temporary
folder, removed when the server stops.
"""
from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from unsamv2.app.limits import UploadLimits
from unsamv2.app.session import DecodeSettings
from unsamv2.app.ui import (
    AppContext,
    build_app,
    make_workdir,
    model_notice,
    prepare_environment,
    remove_workdir,
)

__all__ = ["serve"]

log = logging.getLogger(__name__)

_MB = 1024 * 1024


def serve(checkpoint: Path, *, model_size: str | None = None, device: str = "auto", image_size: int = 1024,
          merge_lora: bool = True, host: str = "127.0.0.1", port: int = 7860,
          limits: UploadLimits | None = None, settings: DecodeSettings | None = None) -> None:
    """Serve the app until interrupted (defaults: :class:`UploadLimits`, :class:`DecodeSettings`);
    ``settings.checkpoint`` is filled in from ``checkpoint``."""
    limits = limits or UploadLimits()
    settings = settings or DecodeSettings()
    workdir = make_workdir()
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the temporary folder is removed either way.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        prepare_environment(workdir)
        from unsamv2.model.run_on_files import load_model

        # video=True: one set of weights serves the image, whole-image and video tabs (the video predictor is a
        # SAM-2 base model, which the image predictor and the automatic mask generator accept).
        model = load_model(checkpoint, model_size, device, image_size, merge_lora=merge_lora, video=True)
        ctx = AppContext(model=model, limits=limits, workdir=workdir,
                         settings=DecodeSettings(settings.mask_threshold, settings.m2m, str(checkpoint)))
        log.info("%s", model_notice(model))
        demo = build_app(ctx)
        log.info("serving on http://%s:%d (temporary folder %s)", host, port, workdir)
        try:
            demo.launch(server_name=host, server_port=port, share=False, ssr_mode=False, show_error=True,
                        max_file_size=int(limits.max_upload_mb * _MB), allowed_paths=[str(workdir)],
                        footer_links=[], inbrowser=False)
        finally:
            demo.close()
    finally:
        remove_workdir(workdir)
