"""Write the fixed arithmetic test sets from their seeds.

    python -m ttscale.arith.make_test_sets [FOLDER]

Without FOLDER it rewrites the committed files in ``ttscale/data``; the output is the same on
every machine (``random.Random`` with fixed seeds), so a diff shows any change of the generator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ttscale.arith.paths import TEST_SET_SEEDS, TEST_SET_SIZE, TEST_SETS, test_set_path
from ttscale.arith.task import PRESETS, generate_problems


def test_set_problems(name: str) -> list[dict[str, str]]:
    """The problems of the fixed test set ``name``, generated afresh from its seed."""
    return generate_problems(PRESETS[name], TEST_SET_SIZE, TEST_SET_SEEDS[name], id_prefix=f"arith-{name}")


def write_test_sets(folder: str | Path | None = None) -> list[Path]:
    """(Re)write every fixed test set; returns the paths written."""
    written = []
    for name in TEST_SET_SEEDS:
        path = Path(folder) / TEST_SETS[name] if folder else test_set_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            for p in test_set_problems(name):
                fh.write(json.dumps(p) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_test_sets(sys.argv[1] if len(sys.argv) > 1 else None):
        print(written_path)
