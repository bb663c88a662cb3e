"""``python -m onyxserve.clients.loadtest TARGET --model NAME ...``: the ``loadtest`` subcommand alone."""

import sys

from .cli import standalone

sys.exit(standalone())
