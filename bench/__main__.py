"""Run every benchmark module (`bench/bench_*.py`) in its own process, in name order.

`python -m bench` runs them all; `python -m bench fanout` runs the modules whose name contains
`fanout`. Each module prints its own table; a failing one is reported and the rest still run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    modules = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if wanted:
        modules = [m for m in modules if any(w in m for w in wanted)]
    failed = []
    for module in modules:
        print(f"\n=== {module} ===", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", f"bench.{module}"], cwd=HERE.parent, check=False)
        print(f"({module}: {time.perf_counter() - started:.1f} s, exit {result.returncode})", flush=True)
        if result.returncode != 0:
            failed.append(module)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
