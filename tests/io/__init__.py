"""Tests of ``unsamv2.io``."""
