"""Tests of ``unsamv2.discovery``."""
