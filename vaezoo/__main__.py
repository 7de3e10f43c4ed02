"""``python -m vaezoo``: the command line, as the ``vaezoo`` script (for launchers such as torchrun)."""

import sys

from vaezoo.cli.main import main

sys.exit(main())
