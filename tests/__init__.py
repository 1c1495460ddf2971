"""The test suite, a package so that test folders that are packages too (``tests/discovery``, ``tests/io``...)
get unique dotted module names (``tests.discovery.test_granularity`` next to ``tests/model/test_granularity.py``)
and folder names that are also library names (``io``, ``datasets``) cannot shadow them. pytest puts the
repository root on ``sys.path`` for it, so shared test code is imported as ``tests.reference...``.
"""
