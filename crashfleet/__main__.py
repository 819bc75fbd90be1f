import sys

from crashfleet.cli import main

sys.exit(main())
