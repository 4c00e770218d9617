import sys

from goldmine.cli import main

sys.exit(main())
