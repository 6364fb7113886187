"""`python -m bot` is the `optin-bot` command."""

import sys

from bot.cli import main

sys.exit(main())
