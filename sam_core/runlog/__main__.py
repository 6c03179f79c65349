"""``python -m sam_core.runlog``: the monitoring summary and CSV/JSONL exports."""

import sys

from sam_core.runlog.summary import main

sys.exit(main())
