"""``python -m tskd`` is the same as the ``tskd`` command."""

import sys

from tskd.cli.main import main

sys.exit(main())
