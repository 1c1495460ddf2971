"""Reference implementations the tests (and the benchmarks) compare the library against; no tests here."""
