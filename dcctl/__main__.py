import sys

from dcctl.cli.app import main

sys.exit(main())
