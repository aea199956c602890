"""``python -m fastcnn``: the command line (see ``fastcnn.cli``)."""

import sys

from .cli import main

sys.exit(main())
