"""The suite runs from a clone with nothing beside it: only the ``shared_corpus`` tests read ../shared.

Two checks: no test module names the shared folder itself (paths to it live in ``tests/corpus.py`` and
are used by tests that ask for the ``shared_corpus`` fixture or carry its mark), and a copy of the
working tree in a folder with no ``shared`` beside it collects every test module, says once that the
shared-corpus tests did not run, and passes the Croissant tests on the fixtures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import ROOT, SHARED_MISSING

# what reaching for ../shared directly looks like
SHARED_PATH = re.compile(r"""parents\[2\]|["'](\.\./)?shared/|/work/shared""")
ALLOWED = {"corpus.py", Path(__file__).name}


def test_no_test_module_names_the_shared_folder() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path.name not in ALLOWED
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if SHARED_PATH.search(line)
    ]
    assert offenders == [], "use tests.corpus and the shared_corpus fixture instead"


def _copy_of_the_tree(dest: Path) -> None:
    """The tracked and not-ignored files of this checkout, as a fresh clone would hold them."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: cannot list the files a clone would hold")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted in the working tree but still in the index is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def test_a_copy_without_shared_beside_it_passes(tmp_path: Path) -> None:
    clone = tmp_path / "kgraft"
    _copy_of_the_tree(clone)
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTHONPATH"}}
    env["PYTHONPATH"] = str(clone)

    where = subprocess.run(
        [sys.executable, "-c", "import kg, tests.corpus as c; print(kg.__file__); print(c.SHARED)"],
        cwd=clone, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert where == [str(clone / "kg" / "__init__.py"), str(tmp_path / "shared")]  # the copy, not this tree

    pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    collected = subprocess.run(
        [*pytest_cmd, "--collect-only", "tests"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    last = collected.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+/\d+ tests collected \(\d+ deselected\) in [\d.]+s", last), last

    ran = subprocess.run(
        [*pytest_cmd[:-1], "tests/test_croissant.py", "-k", "not neo4j"],  # not -q: with the header
        cwd=clone, env=env, capture_output=True, text=True,
    )  # fmt: skip
    out = ran.stdout
    assert ran.returncode == 0, out[-3000:] + ran.stderr[-3000:]
    assert re.search(r"\d+ passed, \d+ deselected", out) and "skipped" not in out, out[-2000:]
    message = SHARED_MISSING.replace(str(ROOT.parent / "shared"), str(tmp_path / "shared"))
    assert out.count(message) == 2, out[-2000:]  # the header and the summary line, nothing per test
