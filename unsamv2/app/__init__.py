"""``unsamv2 app``: a local web app (Gradio, the ``app`` extra) for the granularity slider on images, whole
images and videos.

:mod:`session` holds the work (no web framework: unit-tested directly), :mod:`uploads` the size checks,
:mod:`render` the overlays, :mod:`ui` the Gradio page and :mod:`server` its start-up.
"""
