"""Tests of ``unsamv2.report``."""
