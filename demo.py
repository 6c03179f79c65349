"""SAM Studio: interactive Segment Anything in the browser.

    python demo.py                          # vit_h, downloaded to checkpoints/ on first start
    python demo.py --model vit_b            # faster on CPUs
    python demo.py --model test-tiny        # random weights, for smoke tests only

The same as the ``sam-studio`` command; also the Hugging Face Space entry point
(``app_file: demo.py``). ``python demo.py --help`` lists every flag.
"""

import sys

from sam_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
