import sys

from rote.cli import main

sys.exit(main())
