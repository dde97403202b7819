"""ssm: reproduce the ablations of the diagonal state space model papers from one command."""

__version__ = "0.1.0"

import time as _time

STARTED = _time.perf_counter()  # when the package was first imported: the origin of SSM_TRACE timestamps
