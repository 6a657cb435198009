"""Templates and conditions: compiled once, evaluated against a Context, never eval."""

from __future__ import annotations

import pytest

from apigw_core.gateway.pipeline.contract import LastError, PolicyError, ServiceResponse
from apigw_core.gateway.pipeline.expressions import compile_condition, compile_template

from helpers import ApiConfig, OperationConfig, ProductConfig, SubscriptionConfig, make_ctx, \
    response


def tpl(text, named_values=None):
    errors: list[str] = []
    t = compile_template(text, "p.value", errors, named_values)
    assert not errors, errors
    return t


def tpl_error(text, named_values=None) -> str:
    errors: list[str] = []
    assert compile_template(text, "apis[0].policies.inbound[0].set-header.value", errors,
                            named_values) is None
    assert len(errors) == 1
    return errors[0]


def cond(text):
    errors: list[str] = []
    c = compile_condition(text, "p.condition", errors)
    assert not errors, errors
    return c


def cond_error(text) -> str:
    errors: list[str] = []
    assert compile_condition(text, "apis[0].policies.inbound[0].choose.when[0].condition",
                             errors) is None
    assert len(errors) == 1
    return errors[0]


@pytest.fixture
def ctx():
    c = make_ctx(method="POST", path="/orders/7", query="q=a%20b&x=1&x=2",
                 headers={"X-Tier": "gold", "Content-Type": "application/json"},
                 ip="10.1.2.3", params={"id": "7"}, body=b'{"a": 1}',
                 api=ApiConfig("orders", path="/orders"),
                 operation=OperationConfig("get-order", "GET", "/{id}"),
                 product=ProductConfig("starter"), subscription=SubscriptionConfig("alice"),
                 subscription_key="k1", request_id="rid-9",
                 variables={"n": 5, "s": "text", "flag": "true",
                            "lookup": ServiceResponse(201, ((b"x-r", b"v"),), b"hello")})
    c.response = response(503, {"X-Up": "down"}, b"resp")
    c.last_error = LastError(source="check-header", reason="HeaderNotFound", message="m",
                             scope="api", section="inbound", path="choose[1]\\when[2]",
                             policy_id="p1")
    return c


# --- templates ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("{request.ip}", "10.1.2.3"),
    ("{request.method}", "POST"),
    ("{request.path}", "/orders/7"),
    ("{request.url}", "http://gw.example/orders/7?q=a%20b&x=1&x=2"),
    ("{request.headers.x-tier}", "gold"),
    ("{request.headers.X-TIER}", "gold"),           # header names case-insensitive
    ("{request.headers.x-missing}", ""),            # missing renders as ""
    ("{request.query.q}", "a b"),
    ("{request.query.x}", "1,2"),                   # repeated: comma-joined (APIM)
    ("{request.params.id}", "7"),
    ("{request.id}", "rid-9"),
    ("{subscription.id}", "alice"),
    ("{subscription.key}", "k1"),
    ("{product.name}", "starter"),
    ("{api.name}", "orders"),
    ("{operation.name}", "get-order"),
    ("{variables.n}", "5"),
    ("{variables.nope}", ""),
    ("{response.status}", "503"),
    ("{response.headers.x-up}", "down"),
    ("{last-error.reason}", "HeaderNotFound"),
    ("{last-error.source}/{last-error.section}/{last-error.scope}", "check-header/inbound/api"),
    ("{last-error.path}", "choose[1]\\when[2]"),
    ("{last-error.policy-id}", "p1"),
    ("{variables.lookup.status}", "201"),
    ("{variables.lookup.headers.X-R}", "v"),
    ("{variables.lookup.body}", "hello"),
    ("{request.body}", '{"a": 1}'),
    ("{response.body}", "resp"),
    ("id={request.params.id};tier={request.headers.x-tier}.", "id=7;tier=gold."),
    ("{{literal text}} braces }} and {{", "{literal text} braces } and {"),
    ('{{"a": "{request.id}"}}', '{"a": "rid-9"}'),
])
def test_template_renders(ctx, text, expected):
    assert tpl(text).render(ctx) == expected


def test_template_constant_and_value(ctx):
    t = tpl("plain {{x}")
    assert t.constant == "plain {x}" and t.render(ctx) == "plain {x}"
    assert tpl("{variables.n}").constant is None
    assert tpl("{variables.n}").value(ctx) == 5           # one expression keeps its type
    assert tpl("n={variables.n}").value(ctx) == "n=5"
    assert tpl(7).constant == "7" and tpl(True).constant == "true"


def test_template_body_readers():
    assert tpl("{request.body}").reads_request_body
    assert not tpl("{request.body}").reads_response_body
    assert tpl("x{response.body}").reads_response_body
    assert not tpl("{request.path}").reads_request_body


def test_template_missing_context_parts_render_empty():
    c = make_ctx()
    for text in ("{response.status}", "{subscription.id}", "{product.name}",
                 "{last-error.reason}", "{operation.name}", "{request.body}"):
        assert tpl(text).render(c) == ""


def test_named_values():
    assert tpl("Bearer {{token}}", {"token": "s3cr3t"}).constant == "Bearer s3cr3t"
    e = tpl_error("Bearer {{token}}")
    assert e == "apis[0].policies.inbound[0].set-header.value: unknown named value 'token'"


@pytest.mark.parametrize("text,needle", [
    ("abc {request.ip", "unclosed {"),
    ("{nope.x}", "unknown name 'nope'"),
    ("{request.nope}", "unknown field 'request.nope'"),
    ("{request}", "request needs a field"),
    ("{variables}", "variables needs a name"),
    ("{request.headers}", "unknown field"),
    ("{}", "bad expression"),
    ("{a{b}", "bad expression"),
])
def test_template_errors(text, needle):
    e = tpl_error(text)
    assert e.startswith("apis[0].policies.inbound[0].set-header.value: ")
    assert needle in e


def test_template_rejects_non_scalars():
    errors: list[str] = []
    assert compile_template({"a": 1}, "x.value", errors) is None
    assert errors == ["x.value: expected a string, got dict"]


# --- conditions ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ('request.method == "POST"', True),
    ("request.method == 'GET'", False),
    ('request.method != "GET"', True),
    ("response.status >= 500", True),
    ("response.status < 500", False),
    ("response.status == 503", True),
    ('response.status == "503"', True),
    ("variables.n > 4.5", True),
    ('request.headers.x-tier in ["gold", \'silver\']', True),
    ('request.headers.x-tier not in ["gold"]', False),
    ('request.headers.x-tier in []', False),
    ('request.method == "POST" and request.headers.x-tier in ["gold", "silver"]', True),
    ('request.method == "GET" or request.headers.x-tier == "gold"', True),
    ('not request.method == "GET"', True),
    ('not (request.method == "POST" and false)', True),
    ("request.headers.x-missing == null", True),
    ("request.headers.x-tier == null", False),
    ("request.headers.x-missing", False),
    ("request.headers.x-tier", True),
    ("variables.flag", True),
    ("variables.flag == true", True),
    ("true", True),
    ("false or null", False),
    ('startswith(request.path, "/orders")', True),
    ('endswith(request.path, "/7")', True),
    ('contains(request.headers.content-type, "json")', True),
    ('contains(request.headers.x-missing, "json")', False),
    ('lower(request.headers.x-tier) == "gold" and upper(request.method) == "POST"', True),
    ('"abc" < "abd"', True),
    ("variables.lookup.status == 201", True),
    ('contains(request.body, "\\"a\\"")', True),
    ("1 == 1.0", True),
    ('"a" == "a" and ("x" == "y" or 2 >= 2)', True),
    # the text fast paths give the general rules' answers
    ('"gold" == request.headers.x-tier', True),
    ('request.headers.x-missing == ""', False),          # null is not ""
    ('request.headers.x-missing != ""', True),
    ('request.headers.x-missing in ["", "a"]', False),
    ('response.status in ["503", "504"]', True),         # an int against text reads as a number
    ('response.status == "503.0"', True),
    ('variables.flag == "true"', True),
    ('request.headers.x-tier in ["gold", lower("SILVER")]', True),
    ('request.headers.x-tier not in ["bronze", "silver"]', True),
])
def test_condition(ctx, text, expected):
    assert cond(text).test(ctx) is expected


def test_condition_body_readers():
    assert cond('contains(request.body, "x")').reads_request_body
    assert cond("response.body == null").reads_response_body
    assert not cond("request.method == 'x'").reads_request_body


def test_condition_yaml_bool():
    assert cond(True).test(make_ctx()) is True
    assert cond(False).test(make_ctx()) is False


@pytest.mark.parametrize("text,needle", [
    ('request.method == "POST', "unexpected '\"'"),
    ("request.method ==", "expected a value"),
    ("(request.method == 'a'", "expected ')'"),
    ("foo.bar == 1", "unknown name 'foo'"),
    ("request.methd == 1", "unknown field 'request.methd'"),
    ("nosuch(request.path, 'a')", "unknown function 'nosuch'"),
    ("startswith(request.path)", "startswith() takes 2 arguments, got 1"),
    ("request.path in ['a' 'b']", "expected ','"),
    ("request.path == 'a' 'b'", "unexpected 'b'"),
    ("", "empty condition"),
    ("request.path = 'a'", "unexpected '='"),
])
def test_condition_errors(text, needle):
    e = cond_error(text)
    assert e.startswith("apis[0].policies.inbound[0].choose.when[0].condition: ")
    assert needle in e, e


@pytest.mark.parametrize("text", [
    "request.headers.x-missing > 3",     # ordering null
    'request.method > 3',                # text vs number
    "true < 1",
])
def test_condition_type_errors_at_runtime(ctx, text):
    with pytest.raises(PolicyError) as info:
        cond(text).test(ctx)
    assert info.value.reason == "ExpressionValueEvaluationFailure"
    assert info.value.status == 500


def test_condition_never_evaluates_python():
    e = cond_error("__import__('os').system('true')")
    assert "unexpected" in e or "unknown" in e
