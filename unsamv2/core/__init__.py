"""Primitives every stage shares (constants, mask overlaps, clicks, device choice).

This package imports nothing else of ``unsamv2`` and no torch at import time, so any layer may depend on it.
"""
