"""Tests of ``unsamv2.core``."""
