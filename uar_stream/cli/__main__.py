import sys

from uar_stream.cli.main import main

sys.exit(main())
