"""`python -m shipyard.container SPEC_JSON_PATH`: the process every container runs."""

from time import perf_counter

# The cold-start clock starts before the server stack and the user's app are imported.
_STARTED_AT = perf_counter()

import sys  # noqa: E402

from shipyard.container import main  # noqa: E402

sys.exit(main(started_at=_STARTED_AT))
