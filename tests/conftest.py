"""Shared pytest configuration.

Tests never touch the network: every download is served by a local HTTP server and every checkpoint or
dataset is written by the test itself.
"""
from __future__ import annotations

import os

# Hugging Face libraries must never try to reach the hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
