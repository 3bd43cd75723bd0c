"""Profiles of the fuzz suite. ``make test`` runs the ``ci`` profile: few cases per target,
derandomised so that CI is repeatable. ``make fuzz`` runs the ``fuzz`` profile
(``PYMBRL_FUZZ_PROFILE=fuzz``): many random cases per target, and Hypothesis's statistics report
how many each target ran. Fuzz targets take their example counts from these profiles only, never
from their own ``@settings(max_examples=...)``."""

import os

from hypothesis import HealthCheck, settings

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("ci", max_examples=25, stateful_step_count=30, deadline=None, derandomize=True,
                          database=None, print_blob=True, suppress_health_check=_SLOW)
settings.register_profile("fuzz", max_examples=int(os.environ.get("PYMBRL_FUZZ_EXAMPLES", "2000")),
                          stateful_step_count=60, deadline=None, print_blob=True, suppress_health_check=_SLOW)
settings.load_profile(os.environ.get("PYMBRL_FUZZ_PROFILE", "ci"))
