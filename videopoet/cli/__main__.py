"""`python -m videopoet.cli`: the same as the `videopoet` command."""

import sys

from videopoet.cli import main

sys.exit(main())
