"""What a fresh interpreter loads: the one probe of the import tests (start-up, layering of
detect, the wiring and the live engine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of the top-level packages ``names`` are loaded after running ``code`` in a
    fresh interpreter started in the repository, sorted."""
    probe = (code + "\nimport sys, json\n"
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & "
             f"set({list(names)!r}))))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
