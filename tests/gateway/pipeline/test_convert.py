"""json-to-xml and xml-to-json, sans-IO: the mappings, when they apply (apply,
consider-accept-header, content coding), refusals (DOCTYPE, depth, bad bodies), config
errors, and json -> xml -> json round trips (hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.gateway.pipeline.contract import PolicyError, ReadRequestBody, ReadResponseBody
from apigw_core.gateway.pipeline.policies import convert  # noqa: F401  (registers)
from apigw_core.gateway.pipeline.policies.convert import (ConversionError, json_to_xml,
                                                          xml_to_json)

from helpers import Driver, FakeBackend, make_ctx, response
from policy_kit import compile_policy, config_errors, run

P = "apis[0].policies.outbound[0]"
SOAP = (b'<?xml version="1.0"?>\n<soap:Envelope xmlns="http://fyicenter.com/" '
        b'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">\n  <soap:Body>\n'
        b'    <GetOrders>\n      <Customer>1234567</Customer>\n    </GetOrders>\n'
        b'  </soap:Body>\n</soap:Envelope>')


def j(b: bytes):
    return json.loads(b)


# --- the mappings ---------------------------------------------------------------------------

def test_xml_to_json_direct_as_observed_on_apim():
    assert j(xml_to_json(SOAP)) == {
        "version": "1.0",
        "soap$Envelope": {"@xmlns": "http://fyicenter.com/",
                          "@xmlns$soap": "http://schemas.xmlsoap.org/soap/envelope/",
                          "soap$Body": {"GetOrders": {"Customer": "1234567"}}}}


def test_xml_to_json_javascript_friendly():
    x = b'<order id="7" xmlns:a="urn:a"><a:line n="1">x</a:line><a:line>y</a:line>' \
        b'<id>dup</id><note/></order>'
    assert j(xml_to_json(x, "javascript-friendly")) == {
        "order": {"@id": "7", "line": [{"n": "1", "#text": "x"}, "y"], "id": "dup",
                  "note": None}}
    assert j(xml_to_json(x)) == {
        "order": {"@id": "7", "@xmlns$a": "urn:a", "a$line": [{"@n": "1", "#text": "x"}, "y"],
                  "id": "dup", "note": None}}


def test_xml_to_json_always_array_and_mixed_text():
    assert j(xml_to_json(b"<r><a>1</a></r>", always_array=True)) == {"r": {"a": ["1"]}}
    assert j(xml_to_json(b"<r>hi <b>there</b> you</r>")) == {
        "r": {"b": "there", "#text": "hi  you"}}
    assert j(xml_to_json(b"<r>  </r>")) == {"r": "  "}


def test_json_to_xml_mapping():
    doc = {"order": {"@id": 7, "#text": None, "lines": [{"sku": "a&b"}, {"sku": "<c>"}],
                     "paid": True, "total": 1.5, "note": None, "first name": "Ann"}}
    assert json_to_xml(json.dumps(doc).encode()) == (
        b'<order id="7"><lines><sku>a&amp;b</sku></lines><lines><sku>&lt;c&gt;</sku></lines>'
        b'<paid>true</paid><total>1.5</total><note /><first_x0020_name>Ann</first_x0020_name>'
        b'</order>')


def test_json_to_xml_wraps_non_single_roots_in_document():
    assert json_to_xml(b'{"a": 1, "b": "x"}') == b"<Document><a>1</a><b>x</b></Document>"
    assert json_to_xml(b'{"a": [1, 2]}') == b"<Document><a>1</a><a>2</a></Document>"
    assert json_to_xml(b"[1, null]") == b"<Document><item>1</item><item /></Document>"
    assert json_to_xml(b'"s"') == b"<Document>s</Document>"


def test_xml_refusals():
    for bad in (b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>',
                b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>',
                b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
                b"<a>&undefined;</a>", b"<a><b></a>", b"not xml", b"<a/><b/>",
                b"<a>" * 101 + b"</a>" * 101):
        with pytest.raises(ConversionError):
            xml_to_json(bad)


def test_json_refusals():
    for bad in (b"{", b"[" * 101 + b"]" * 101, b'{"a": "\\u0001"}', b"[" * 5000 + b"]" * 5000):
        with pytest.raises(ConversionError):
            json_to_xml(bad)


# --- the policies ---------------------------------------------------------------------------

def outbound(name, body, resp_headers, resp_body, req_headers=()):
    policy = compile_policy(name, body, "outbound")
    ctx = make_ctx(headers=req_headers, response=response(200, resp_headers))
    driver = Driver(backend=FakeBackend(body=resp_body))
    assert run(policy, ctx, driver) is None
    return ctx, driver


def test_xml_to_json_policy_outbound():
    ctx, driver = outbound("xml-to-json", {"kind": "direct", "apply": "always",
                                           "consider-accept-header": False},
                           {"content-type": "text/xml", "content-length": str(len(SOAP))}, SOAP)
    assert driver.commands == [ReadResponseBody(4 << 20)]
    assert j(ctx.response.body)["soap$Envelope"]["soap$Body"] == {
        "GetOrders": {"Customer": "1234567"}}
    assert ctx.response.headers.get(b"content-type") == b"application/json"
    assert b"content-length" not in ctx.response.headers


def test_apply_content_type_and_accept_header():
    body = {"kind": "direct", "apply": "content-type-xml"}
    ctx, driver = outbound("xml-to-json", body, {"content-type": "text/plain"}, SOAP,
                           {"accept": "application/json"})
    assert driver.commands == [] and ctx.response.body is None          # not XML: untouched
    ctx, _ = outbound("xml-to-json", body, {"content-type": "application/soap+xml"}, SOAP,
                      {"accept": "text/html, application/json;q=0.9"})
    assert ctx.response.headers.get(b"content-type") == b"application/json"
    for accept in ((), {"accept": "*/*"}, {"accept": "application/json;q=0"}):
        ctx, driver = outbound("xml-to-json", body, {"content-type": "text/xml"}, SOAP, accept)
        assert driver.commands == [], accept      # JSON not asked for: no conversion


def test_json_to_xml_policy_inbound():
    policy = compile_policy("json-to-xml", {"apply": "content-type-json",
                                            "consider-accept-header": "false"})
    assert policy.reads_request_body and not policy.reads_response_body
    ctx = make_ctx(method="POST", headers={"content-type": "application/json; charset=utf-8",
                                           "content-length": "9"})
    driver = Driver(request_body=b'{"a": 1}')
    assert run(policy, ctx, driver) is None
    assert driver.commands == [ReadRequestBody(4 << 20)]
    assert ctx.request.body == b"<a>1</a>"
    assert ctx.request.headers.get(b"content-type") == b"application/xml"
    assert b"content-length" not in ctx.request.headers


def test_conversion_failures_are_400_inbound_502_outbound():
    policy = compile_policy("json-to-xml", {"apply": "always", "consider-accept-header": False})
    with pytest.raises(PolicyError) as e:
        run(policy, make_ctx(method="POST"), Driver(request_body=b"{nope"))
    assert (e.value.status, e.value.reason) == (400, "BodyConversionFailure")
    assert e.value.message.startswith("The request body could not be converted (not JSON")
    with pytest.raises(PolicyError) as e:
        outbound("xml-to-json", {"kind": "direct", "apply": "always",
                                 "consider-accept-header": False}, (), b"<!DOCTYPE x><x/>")
    assert (e.value.status, e.value.reason) == (502, "BodyConversionFailure")


def test_coded_or_empty_bodies_are_left_alone():
    body = {"apply": "always", "consider-accept-header": False}
    ctx, _ = outbound("json-to-xml", body, {"content-encoding": "gzip"}, b"\x1f\x8b...")
    assert ctx.response.body == b"\x1f\x8b..." and ctx.response.headers.get(b"content-type") \
        is None
    ctx, _ = outbound("json-to-xml", body, {"content-type": "application/json"}, b"")
    assert ctx.response.headers.get(b"content-type") == b"application/json"
    policy = compile_policy("json-to-xml", body, "on-error")
    assert run(policy, make_ctx()) is None                     # no response yet


def test_config_errors():
    q = f"{P}.json-to-xml"
    assert config_errors("json-to-xml", {}, "outbound") == [f"{q}.apply: required"]
    assert config_errors("json-to-xml", {"apply": "content-type-xml"}, "outbound") == [
        f"{q}.apply: expected one of always, content-type-json"]
    assert config_errors("json-to-xml", {"apply": "always", "namespace-separator": ":",
                                         "parse-date": False}, "outbound") == [
        f"{q}.namespace-separator: not supported"]
    q = f"{P}.xml-to-json"
    assert config_errors("xml-to-json", {"apply": "always"}, "outbound") == [
        f"{q}.kind: required"]
    assert config_errors("xml-to-json", {"kind": "badgerfish", "apply": "always",
                                         "consider-accept-header": 1}, "outbound") == [
        f"{q}.kind: expected one of javascript-friendly, direct",
        f"{q}.consider-accept-header: expected true or false, got 1"]
    from apigw_core.gateway.pipeline.registry import lookup
    assert lookup("xml-to-json").sections == frozenset({"inbound", "outbound", "on-error"})


# --- round trips ------------------------------------------------------------------------------

_FIRST = "abcxyzABCXYZ_"
names = st.builds(lambda a, b: a + b, st.sampled_from(_FIRST),
                  st.text("abcAB019_.-", max_size=5))
_chars = st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x17F),
                   st.sampled_from("\t\n\r<>&\"'€😀"))
texts = st.builds(lambda a, b: a + b, st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                  st.text(_chars, max_size=8))
# A list is repeated elements under its parent's key, so lists hold leaves and objects.
nodes = st.recursive(
    texts, lambda inner: st.dictionaries(
        names, st.one_of(inner, st.lists(inner, min_size=2, max_size=3)),
        min_size=1, max_size=3),
    max_leaves=6)
objects = st.dictionaries(names, st.one_of(nodes, st.lists(nodes, min_size=2, max_size=3)),
                          min_size=1, max_size=3)


@settings(max_examples=80, deadline=None)
@given(root=names, doc=objects)
def test_json_xml_json_round_trip(root, doc):
    data = json.dumps({root: doc}).encode()
    assert j(xml_to_json(json_to_xml(data))) == {root: doc}
