"""The pool member choice: smooth weights, priority groups, exclusion, affinity."""

from collections import Counter

from apigw_core.gateway.backends import Balancer, affinity_token, cookie_value
from apigw_core.gateway.config import PoolMemberConfig as M


def ok(bal, available=lambda i: True):
    return [bool(available(i)) for i in range(len(bal.names))]


def _names(bal, n, available=lambda i: True, exclude=()):
    return [bal.names[bal.pick(ok(bal, available), exclude)] for _ in range(n)]


def test_weights_3_to_1_interleave_instead_of_bursting():
    bal = Balancer([M("a", 3), M("b", 1)])
    assert _names(bal, 8) == ["a", "a", "b", "a", "a", "a", "b", "a"]


def test_weighted_split_over_1000_picks_within_3_percent():
    bal = Balancer([M("a", 5), M("b", 3), M("c", 2)])
    got = Counter(_names(bal, 1000))
    for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(got[name] / 1000 - share) <= 0.03, got


def test_the_precomputed_cycle_is_the_smooth_order():
    fast, slow = Balancer([M("a", 5), M("b", 1), M("c", 3)]), Balancer([M("a", 5), M("b", 1), M("c", 3)])
    got = [fast.pick([True] * 3, every=True) for _ in range(30)]
    assert got == [slow._smooth(slow.groups[0], [True] * 3) for _ in range(30)]
    # a member down, then back: the dynamic pick takes over, then the cycle again
    assert {fast.pick([True, False, True]) for _ in range(6)} == {0, 2}
    assert set(fast.pick([True] * 3, every=True) for _ in range(9)) == {0, 1, 2}


def test_no_weights_is_plain_round_robin():
    bal = Balancer([M("a"), M("b"), M("c")])
    assert _names(bal, 6) == ["a", "b", "c", "a", "b", "c"]


def test_priority_failover_and_fall_back():
    bal = Balancer([M("a", priority=1), M("b", priority=1), M("c", priority=2)])
    assert set(_names(bal, 4)) == {"a", "b"}               # the lower group stays idle
    down = {"a"}
    avail = lambda i: bal.names[i] not in down
    assert _names(bal, 3, avail) == ["b", "b", "b"]        # group 1 still has b
    down = {"a", "b"}
    assert _names(bal, 3, avail) == ["c", "c", "c"]        # only then group 2
    down = set()
    assert set(_names(bal, 4, avail)) == {"a", "b"}        # back as soon as they are


def test_nothing_available_is_none():
    bal = Balancer([M("a"), M("b", priority=5)])
    assert bal.pick([False, False]) is None


def test_exclusion_picks_another_member_unless_none_is_left():
    bal = Balancer([M("a"), M("b"), M("c", priority=2)])
    assert _names(bal, 4, exclude={"a"}) == ["b"] * 4
    assert _names(bal, 2, exclude={"a", "b"}) == ["c", "c"]   # even the lower group
    assert set(_names(bal, 4, exclude={"a", "b", "c"})) == {"a", "b"}  # all tried: any


def test_cookie_affinity_sticks_while_the_member_is_available():
    bal = Balancer([M("a"), M("b")])
    tok = affinity_token("b").encode()
    assert [bal.names[bal.pick([True, True], affinity=tok)] for _ in range(3)] == ["b"] * 3
    assert bal.names[bal.pick([True, False], affinity=tok)] == "a"
    assert bal.names[bal.pick([True, True], affinity=b"unknown")] in ("a", "b")
    assert affinity_token("b") != "b" and len(affinity_token("b")) == 16


def test_cookie_value_parsing():
    h = [(b"cookie", b"x=1; sticky=abc ; y=2"), (b"cookie", b"z=3")]
    assert cookie_value(h, b"sticky") == b"abc"
    assert cookie_value(h, b"z") == b"3"
    assert cookie_value(h, b"w") is None
    assert cookie_value([(b"cookie", b'q="v"')], b"q") == b"v"
