import sys

from btbattery.cli import main

sys.exit(main())
