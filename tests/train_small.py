"""``dedistort`` with the small "paper" configs of :mod:`small_models`, for tests that start it in a subprocess.

    python -m torch.distributed.run --nproc_per_node 2 tests/train_small.py train --data ... (as dedistort)
"""

import sys

from small_models import use_small_paper_configs

if __name__ == "__main__":
    use_small_paper_configs(dict.__setitem__)
    from training.cli import main

    sys.exit(main())
