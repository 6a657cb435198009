"""Backend decisions with no I/O: which pool member serves a request, whether a backend's
circuit breaker lets it through, whether its health checks say it is up.

The runtime (runtime/balance.py) owns the clock, the sockets and the health-check tasks;
these objects are told the time and the outcomes and answer questions, so every rule is
tested with a fake clock:

- `balancer.Balancer`: priority groups, smooth weighted round-robin (nginx), cookie
  affinity, members that are unavailable or excluded (already tried) skipped;
- `breaker.Breaker`: APIM's circuit breaker (count or percentage of failures within an
  interval; open, then one half-open trial after the trip duration or Retry-After);
- `health.Health`: active check thresholds and passive ejection with a timed re-probe.
"""

from .balancer import Balancer, affinity_token, cookie_value
from .breaker import CLOSED, HALF_OPEN, OPEN, Breaker, in_ranges, parse_retry_after
from .health import Health

__all__ = ["Balancer", "affinity_token", "cookie_value", "Breaker", "CLOSED", "OPEN",
           "HALF_OPEN", "in_ranges", "parse_retry_after", "Health"]
