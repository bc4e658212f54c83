"""Fuzzing of the protocol layer: the properties of tests/unit at scale (``python -m fuzz``).

See fuzz/README.md. Targets live in ``fuzz.targets``; the seed corpus in ``fuzz/corpus``.
"""
