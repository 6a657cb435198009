"""check-header and ip-filter, sans-IO: APIM's reasons and messages, compile-time errors
with their paths, and ip-filter against a naive reference over random addresses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.gateway.pipeline.contract import PolicyError
from apigw_core.gateway.pipeline.policies import access  # noqa: F401  (registers)

from helpers import make_ctx
from policy_kit import compile_policy, config_errors, run

P = "apis[0].policies.inbound[0]"


# --- check-header -------------------------------------------------------------------------

def check(body: dict, headers=()):
    policy = compile_policy("check-header", body)
    return run(policy, make_ctx(headers=headers))


def test_check_header_missing_gives_apim_message_and_status():
    with pytest.raises(PolicyError) as e:
        check({"name": "X-Tenant", "failed-check-httpcode": 401})
    assert (e.value.status, e.value.reason) == (401, "HeaderNotFound")
    assert e.value.message == "Header X-Tenant was not found in the request. Access denied."


def test_check_header_presence_only_when_no_values():
    assert check({"name": "x-tenant", "failed-check-httpcode": 401},
                 {"X-Tenant": ""}) is None


def test_check_header_value_not_allowed():
    body = {"name": "Authorization", "failed-check-httpcode": "403", "value": ["a", "b"]}
    with pytest.raises(PolicyError) as e:
        check(body, {"authorization": "c"})
    assert (e.value.status, e.value.reason) == (403, "HeaderValueNotAllowed")
    assert e.value.message == "Header Authorization value of c is not allowed. Access denied."
    assert check(body, {"authorization": "b"}) is None


def test_check_header_custom_message_and_case():
    body = {"name": "x-tier", "failed-check-httpcode": 401, "value": ["Gold", "silver"],
            "failed-check-error-message": "Not authorized"}
    with pytest.raises(PolicyError) as e:
        check(body, {"x-tier": "gold"})             # case counts by default
    assert e.value.message == "Not authorized"
    with pytest.raises(PolicyError) as e:
        check(body)
    assert (e.value.reason, e.value.message) == ("HeaderNotFound", "Not authorized")
    assert check({**body, "ignore-case": True}, {"x-tier": "GOLD"}) is None
    assert check({**body, "ignore-case": "true"}, {"x-tier": "SILVER"}) is None


def test_check_header_repeated_fields_any_or_joined():
    body = {"name": "x-a", "failed-check-httpcode": 401, "value": ["2", "1, 3"]}
    assert check(body, [("x-a", "1"), ("x-a", "2")]) is None
    assert check(body, [("x-a", "1"), ("x-a", "3")]) is None   # joined "1, 3"
    with pytest.raises(PolicyError):
        check(body, [("x-a", "1"), ("x-a", "4")])


def test_check_header_config_errors():
    errs = config_errors("check-header", {"failed-check-httpcode": 99, "ignore-case": "yes",
                                          "value": [{"a": 1}], "colour": 1})
    assert f"{P}.check-header.name: required" in errs
    assert f"{P}.check-header.failed-check-httpcode: expected an integer from 200 to 599, " \
           f"got 99" in errs
    assert f"{P}.check-header.ignore-case: expected true or false, got 'yes'" in errs
    assert f"{P}.check-header.value[0]: expected a string, got mapping" in errs
    assert any(e.startswith(f"{P}.check-header.colour: unknown attribute") for e in errs)
    assert f"{P}.check-header.name: not a header name: 'a b'" in config_errors(
        "check-header", {"name": "a b", "failed-check-httpcode": 401})
    assert config_errors("check-header", {"name": "x"}) == []   # 401 by default
    assert config_errors("check-header", ["x"])[0] == (
        f"{P}.check-header: expected a mapping of name, failed-check-httpcode, "
        f"failed-check-error-message, ignore-case, value, got list")


def test_access_policies_are_inbound_only():
    from apigw_core.gateway.pipeline.registry import lookup
    for name in ("check-header", "ip-filter", "cors"):
        assert lookup(name).sections == frozenset({"inbound"})


# --- ip-filter ----------------------------------------------------------------------------

def ipf(body: dict, ip: str):
    return run(compile_policy("ip-filter", body), make_ctx(ip=ip))


ALLOW = {"action": "allow", "address": ["13.66.201.169", "10.0.0.0/8", "2001:db8::/32"],
         "address-range": [{"from": "13.66.140.128", "to": "13.66.140.143"},
                           {"from": "fd00::1", "to": "fd00::ff"}]}


@pytest.mark.parametrize("ip", ["13.66.201.169", "10.200.3.4", "13.66.140.128",
                                "13.66.140.143", "2001:db8::1", "fd00::80", "::ffff:10.1.2.3",
                                "[2001:db8:1::5]"])
def test_ip_filter_allow_listed(ip):
    assert ipf(ALLOW, ip) is None


@pytest.mark.parametrize("ip", ["13.66.201.170", "13.66.140.144", "11.0.0.1", "::1",
                                "fd00::100", "::ffff:11.0.0.1", "2001:db9::1"])
def test_ip_filter_allow_refuses_others(ip):
    with pytest.raises(PolicyError) as e:
        ipf(ALLOW, ip)
    assert (e.value.status, e.value.reason) == (403, "CallerIpNotAllowed")
    assert e.value.message == f"Caller IP address {ip} is not allowed. Access denied."


def test_ip_filter_forbid():
    body = {"action": "forbid", "address": "192.168.1.7"}
    assert ipf(body, "192.168.1.8") is None
    with pytest.raises(PolicyError) as e:
        ipf(body, "192.168.1.7")
    assert (e.value.status, e.value.reason, e.value.message) == (
        403, "CallerIpBlocked", "Caller IP address is blocked. Access denied.")
    with pytest.raises(PolicyError):
        ipf(body, "::ffff:192.168.1.7")          # mapped IPv4 matches the IPv4 rule


def test_ip_filter_mapped_rule_matches_ipv4_client():
    assert ipf({"action": "allow", "address": ["::ffff:127.0.0.1"]}, "127.0.0.1") is None


def test_ip_filter_ipv6_block_reaching_into_mapped_range_stays_ipv6():
    # ::/80 ends inside ::ffff:0:0/96; it once became the range 0..2**32-1 of IPv6 only
    policy = compile_policy("ip-filter", {"action": "allow", "address": ["::1:0:0/80"]})
    assert policy.matches("::1:0:0") and policy.matches("::fffe:0:0")
    assert not policy.matches("10.0.0.1") and not policy.matches("::2:0:0:0")


@pytest.mark.parametrize("ip", ["", "unix:/tmp/sock", "999.1.1.1"])
def test_ip_filter_unparsable_client(ip):
    with pytest.raises(PolicyError) as e:
        ipf(ALLOW, ip)
    assert (e.value.status, e.value.reason, e.value.message) == (
        403, "FailedToParseCallerIP",
        "Failed to establish IP address for the caller. Access denied.")


def test_ip_filter_config_errors():
    errs = config_errors("ip-filter", {"action": "deny", "address": ["10.0.0.300", 7],
                                       "address-range": [{"from": "10.0.0.9", "to": "10.0.0.1"},
                                                         {"from": "10.0.0.1", "to": "::1"},
                                                         {"from": "10.0.0.1"},
                                                         {"from": "10.0.0.0/8", "to": "11.0.0.0"}]})
    q = f"{P}.ip-filter"
    assert f"{q}.action: expected one of allow, forbid" in errs
    assert any(e.startswith(f"{q}.address[0]: ") for e in errs)
    assert f"{q}.address[1]: expected an IP address or CIDR block, got int" in errs
    assert f"{q}.address-range[0]: from is after to" in errs
    assert f"{q}.address-range[1]: from and to are not of the same IP version" in errs
    assert f"{q}.address-range[2]: expected a mapping {{from: address, to: address}}" in errs
    assert f"{q}.address-range[3]: from and to are addresses, not CIDR blocks" in errs
    assert config_errors("ip-filter", {"action": "allow"}) == [
        f"{q}: at least one address or address-range is required"]
    assert f"{q}.action: required" in config_errors("ip-filter", {"address": "1.2.3.4"})


def test_ip_filter_many_entries():
    addrs = [f"10.{i // 256}.{i % 256}.1" for i in range(2000)]
    policy = compile_policy("ip-filter", {"action": "allow", "address": addrs})
    assert policy.matches("10.3.20.1") and not policy.matches("10.3.20.2")
    assert len(policy._ranges[4].starts) == 2000


# Naive reference: a list of (network-or-range) checked one by one with ipaddress.
v4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
v6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
near = st.integers(0, 255).map(lambda n: f"10.0.{n // 16}.{n}")    # collisions are likely
addr = st.one_of(v4, v6, near)
cidr = st.one_of(st.tuples(v4, st.integers(8, 32)), st.tuples(near, st.integers(20, 32)),
                 st.tuples(v6, st.integers(16, 128))).map(lambda t: f"{t[0]}/{t[1]}")
pair = st.tuples(addr, addr).filter(
    lambda t: ipaddress.ip_address(t[0]).version == ipaddress.ip_address(t[1]).version
).map(lambda t: tuple(sorted(t, key=lambda a: int(ipaddress.ip_address(a)))))


def reference(addresses, ranges, ip):
    a = ipaddress.ip_address(ip)
    if a.version == 6 and a.ipv4_mapped:
        a = a.ipv4_mapped
    for x in addresses:
        net = ipaddress.ip_network(x, strict=False)
        if net.version == 6 and net.subnet_of(ipaddress.ip_network("::ffff:0:0/96")):
            # a block of IPv4-mapped addresses is that IPv4 block (dual-stack sockets)
            net = ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/"
                                       f"{net.prefixlen - 96}")
        if net.version == a.version and a in net:
            return True
    for lo, hi in ranges:
        lo, hi = ipaddress.ip_address(lo), ipaddress.ip_address(hi)
        if lo.version == a.version and lo <= a <= hi:
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(addresses=st.lists(st.one_of(addr, cidr), max_size=8), ranges=st.lists(pair, max_size=5),
       probes=st.lists(addr, min_size=1, max_size=10))
def test_ip_filter_matches_reference(addresses, ranges, probes):
    if not addresses and not ranges:
        addresses = ["10.0.0.1"]
    body = {"action": "allow", "address": addresses,
            "address-range": [{"from": lo, "to": hi} for lo, hi in ranges]}
    policy = compile_policy("ip-filter", body)
    for ip in probes + [a.split("/")[0] for a in addresses] + [r[1] for r in ranges]:
        assert policy.matches(ip) == reference(addresses, ranges, ip), ip
