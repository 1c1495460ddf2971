"""Tests of ``unsamv2.datasets``."""
