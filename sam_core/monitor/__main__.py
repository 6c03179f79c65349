"""``python -m sam_core.monitor report|check|summary`` (see ``commands.py``)."""

import sys

from sam_core.monitor.commands import main

sys.exit(main())
