"""Prints the code version (hash) of an app whose code comes from a module file.

``python hashes.py PATH``: imports PATH as a module and prints ``module.app.app_version``.
"""

from __future__ import annotations

import importlib.util
import sys


def main(path: str) -> None:
    spec = importlib.util.spec_from_file_location("versioned_code", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(module.app.app_version, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
