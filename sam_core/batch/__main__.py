"""``python -m sam_core.batch``: run a study, ``merge`` its shards, or ``embed`` a set of images."""

from __future__ import annotations

import sys

from sam_core.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
