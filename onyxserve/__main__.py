import sys

from onyxserve.cli import main

sys.exit(main())
