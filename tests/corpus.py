"""Where the tests' data lives: ``tests/fixtures`` in the repository, and the optional shared corpus.

The shared corpus (published Croissant examples, the TransferGraph records) sits in a ``shared``
folder beside the clone, as in CI. Only tests that ask for the ``shared_corpus`` fixture, or carry the
``shared_corpus`` mark, may read it; ``tests/conftest.py`` deselects them, saying so once, where the
folder is absent, and ``tests/test_self_contained.py`` checks that no other test reaches for it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CROISSANT = FIXTURES / "croissant"
TRANSFERGRAPH = FIXTURES / "transfergraph"

SHARED = ROOT.parent / "shared"
SHARED_CROISSANT = SHARED / "fixtures" / "croissant"
SHARED_TRANSFERGRAPH = SHARED / "benchmarks" / "transfergraph"
SHARED_MISSING = f"{SHARED} not found: the shared-corpus tests did not run"
