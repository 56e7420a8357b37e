import sys

from openscore.cli import main

sys.exit(main())
