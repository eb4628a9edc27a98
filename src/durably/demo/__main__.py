"""``python -m durably.demo worker ...``: how the demo starts its worker processes."""

from __future__ import annotations

import sys

from durably.demo.worker import worker_main

if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        print(
            "usage: python -m durably.demo worker ... (run `durably demo` instead)", file=sys.stderr
        )
        sys.exit(2)
    sys.exit(worker_main(sys.argv[2:]))
