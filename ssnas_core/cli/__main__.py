import sys

from ssnas_core.cli import main

sys.exit(main())
