"""``python -m resilient_client``: the ``resilient-client`` command."""

import sys

from resilient_client.cli import main

sys.exit(main())
