"""``python -m shardkit.convert`` == ``shardkit-convert``."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
