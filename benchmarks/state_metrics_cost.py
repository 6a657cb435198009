"""Instructions of one rate-limit decision's metric (state_metrics.count_decision), the
only per-request addition of issue 13's state metrics, under callgrind:

    valgrind --tool=callgrind python benchmarks/state_metrics_cost.py 0      # and 20000

the two totals' difference / 20000 is the cost of one decision counted."""
import sys
from types import SimpleNamespace
from apigw_core.runtime import state_metrics
from apigw_core.runtime.metrics import Metrics
m = Metrics()
state_metrics.declare(m)
call = SimpleNamespace(gw=SimpleNamespace(telemetry=SimpleNamespace(metrics=m)),
                       ctx=SimpleNamespace(api=SimpleNamespace(name="bench")))
key = "rate-limit-by-key|api:bench|127.0.0.1"
for _ in range(int(sys.argv[1])):
    state_metrics.count_decision(call, key, True)
m.flush()
