"""Request-target rules (gateway/paths.py) and the router that applies them: normalised
paths (RFC 3986 §6.2.2), fragments, userinfo, and the `server.escaped-slashes` actions."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apigw_core.gateway.config import ConfigError, parse_config
from apigw_core.gateway.paths import PathError, escapes_base, normalize_path, split_absolute
from apigw_core.gateway.router import Router


def router(escaped_slashes: str | None = None, api_path: str = "/orders") -> Router:
    cfg: dict = {"listeners": [{"bind": "127.0.0.1:0"}],
                 "backends": {"b": {"url": "http://b/api"}},
                 "apis": [{"name": "orders", "path": api_path, "backend": "b"},
                          {"name": "root", "path": "", "backend": "b"}]}
    if escaped_slashes is not None:
        cfg["server"] = {"escaped-slashes": escaped_slashes}
    return Router(parse_config(cfg))


def routed(r: Router, target: bytes):
    """(api name, upstream target), or the 400 message."""
    try:
        route = r.match(b"h", target)
    except PathError as exc:
        assert exc.status == 400
        return exc.message
    return route and (route.api.name, route.path)


@pytest.mark.parametrize("path, normal", [
    (b"/a/b", b"/a/b"),
    (b"/a/./b", b"/a/b"),
    (b"/a/b/..", b"/a/"),
    (b"/a/.", b"/a/"),
    (b"/a/../b/../c", b"/c"),
    (b"/.", b"/"),
    (b"/a//b/../c", b"/a//c"),                    # empty segments are kept (no merging)
    (b"/%7euser/%41%62%2D%5f%2e", b"/~user/Ab-_."),  # unreserved: decoded
    (b"/a%2fb%3a%c3%a9", b"/a%2Fb%3A%C3%A9"),      # others: upper-cased, kept
    (b"/a/%2e%2E/x", b"/x"),                        # encoded dots are dots
    (b"/a/.%2e", b"/"),
    (b"/a/..b/.c./b..", b"/a/..b/.c./b.."),        # dots inside segments are data
    (b"/%25/%2541", b"/%25/%2541"),                # "%25" is not decoded: no double decode
    (b"/.well-known/x", b"/.well-known/x"),
])
def test_normalize(path, normal):
    assert normalize_path(path) == normal


@pytest.mark.parametrize("path, message", [
    (b"/..", "above the root"),
    (b"/a/../..", "above the root"),
    (b"/%2e%2e", "above the root"),
    (b"/a%zz", "bad percent-encoding"),
    (b"/a%2", "bad percent-encoding"),
    (b"/a%", "bad percent-encoding"),
    (b"/a%g0", "bad percent-encoding"),
])
def test_normalize_refuses(path, message):
    with pytest.raises(PathError, match=message):
        normalize_path(path)


@pytest.mark.parametrize("action, path, result", [
    ("keep", b"/a%2fb%5cc\\d", b"/a%2Fb%5Cc\\d"),
    ("unescape", b"/a%2fb%5cc\\d", b"/a/b/c/d"),
    ("unescape", b"/a/b%2f..%2f..%2fc", b"/c"),
    ("reject", b"/a%2Fb", PathError),
    ("reject", b"/a%5cb", PathError),
    ("reject", b"/a\\b", PathError),
    ("reject", b"/a%2Eb", b"/a.b"),
])
def test_escaped_slash_actions(action, path, result):
    if result is PathError:
        with pytest.raises(PathError, match="escaped slashes"):
            normalize_path(path, action)
    else:
        assert normalize_path(path, action) == result


@pytest.mark.parametrize("rest, climbs", [
    (b"/..%2Fsecret", True),
    (b"/a/..%2F..%2Fb", True),
    (b"/a%2F..%2F..%2Fb", True),
    (b"/x%5C..%5C..%5Cy", True),
    (b"/a\\..\\..\\b", True),
    (b"/%2F..%2F..%2Fx", True),
    (b"/a/%2F%2F..%2F..", True),                    # as a backend merging "//" sees it
    (b"/a/..%2Fb", False),                          # resolves inside the base path
    (b"/a%2Fb", False),
    (b"/..a%2Fb", False),
    (b"/..", False),                                # no escaped slash: not this check's
])
def test_escapes_base(rest, climbs):
    assert escapes_base(rest) is climbs


@pytest.mark.parametrize("target, split", [
    (b"http://h:1/p?q", (b"h:1", b"/p?q")),
    (b"HTTPS://h", (b"h", b"/")),
    (b"http://h?x", (b"h", b"/?x")),
    (b"ftp://h/p", None),
    (b"/p", None),
    (b"*", None),
])
def test_split_absolute(target, split):
    assert split_absolute(target) == split


@pytest.mark.parametrize("target", [b"http://u:p@h/", b"http://u@h/a", b"https://@h"])
def test_userinfo_is_refused(target):
    with pytest.raises(PathError, match="userinfo"):
        split_absolute(target)


# --- the router applies them --------------------------------------------------------------

@pytest.mark.parametrize("target", [b"/a#frag", b"/orders/1?x=1#f", b"#", b"http://h/a#f"])
def test_fragments_are_refused(target):
    assert "fragment" in routed(router(), target)


@pytest.mark.parametrize("action, target, expected", [
    # routed and forwarded on the same normalised path
    ("keep", b"/public/../orders/7?q=/../x", ("orders", b"/api/7?q=/../x")),
    ("keep", b"/orders/%2e%2e/admin", ("root", b"/api/admin")),
    ("keep", b"/%6Frders/%7e", ("orders", b"/api/~")),
    # keep: escaped slashes forwarded as data, unless a decoding backend would climb out
    ("keep", b"/orders/a%2fb", ("orders", b"/api/a%2Fb")),
    ("keep", b"/orders/a/..%2fb", ("orders", b"/api/a/..%2Fb")),
    ("keep", b"/orders/..%2fsecret", "escaped slashes in the path would climb out of the API"),
    ("keep", b"/orders/x%5c..%5c..%5cy", "escaped slashes in the path would climb out of the API"),
    ("keep", b"/..%2fetc/passwd", "escaped slashes in the path would climb out of the API"),
    # reject: any escaped slash is a 400
    ("reject", b"/orders/a%2fb", "escaped slashes are not allowed in the path"),
    ("reject", b"/orders/a%5Cb", "escaped slashes are not allowed in the path"),
    ("reject", b"/orders/a/b", ("orders", b"/api/a/b")),
    # unescape: decoded to "/", then dot segments removed, then routed
    ("unescape", b"/orders/a%2fb", ("orders", b"/api/a/b")),
    ("unescape", b"/orders/..%2fsecret", ("root", b"/api/secret")),
    ("unescape", b"/orders%2flines", ("orders", b"/api/lines")),
    ("unescape", b"/orders/..%2f..%2fsecret", "the path climbs above the root"),
    # all actions
    ("keep", b"/orders/../..", "the path climbs above the root"),
    ("keep", b"/orders/%zz", "bad percent-encoding in the path"),
])
def test_router_paths(action, target, expected):
    assert routed(router(action), target) == expected


def test_default_action_is_keep():
    assert parse_config({"listeners": [{"bind": "127.0.0.1:0"}], "backends": {},
                         "apis": []}).server.escaped_slashes == "keep"
    assert routed(router(), b"/orders/..%2fsecret") == routed(router("keep"),
                                                              b"/orders/..%2fsecret")


def test_api_paths_are_matched_normalised():
    assert routed(router(api_path="/%7euser"), b"/~user/x") == ("orders", b"/api/x")
    assert routed(router(api_path="/%7euser"), b"/%7Euser/x") == ("orders", b"/api/x")


@pytest.mark.parametrize("value", ["Keep", "decode", True, 1, None, ["keep"]])
def test_config_refuses_unknown_actions(value):
    with pytest.raises(ConfigError, match="server.escaped-slashes: expected one of keep, "
                                          "reject, unescape"):
        parse_config({"listeners": [{"bind": "127.0.0.1:0"}], "backends": {}, "apis": [],
                      "server": {"escaped-slashes": value}})


# --- properties ---------------------------------------------------------------------------

segment = st.sampled_from(["a", "b", ".", "..", "%2e", "%2E%2e", ".%2e", "", "%41", "%2f",
                           "%5C", "\\", "..%2f", "x%2F..", "~"])
paths = st.lists(segment, min_size=1, max_size=8).map(lambda s: "/" + "/".join(s))


@settings(max_examples=500, deadline=None)
@given(paths, st.sampled_from(["keep", "reject", "unescape"]))
def test_normalized_paths_are_stable_and_dot_free(path, action):
    try:
        out = normalize_path(path.encode(), action)
    except PathError:
        return
    assert out.startswith(b"/")
    assert normalize_path(out, action) == out                      # idempotent
    assert not {b".", b".."} & set(out.split(b"/"))
    assert b"%2e" not in out.lower() and b"%41" not in out        # unreserved decoded
    if action == "unescape":
        assert b"%2F" not in out and b"%5C" not in out and b"\\" not in out


@settings(max_examples=500, deadline=None)
@given(paths)
def test_keep_never_lets_a_decoding_backend_climb_out(path):
    """Whatever `keep` forwards, a backend that decodes every escape, takes "\\" for "/"
    and merges "//" never resolves it to above the API's base path /api."""
    try:
        route = router("keep").match(None, b"/orders" + path.encode())
    except PathError:
        return
    if route is None or route.api.name != "orders":
        return
    decoded = unquote_to_bytes(route.path).replace(b"\\", b"/")
    assert decoded.startswith(b"/api")
    depth = 0
    for seg in decoded.split(b"/"):
        if seg == b"..":
            depth -= 1
        elif seg and seg != b".":
            depth += 1
        assert depth >= 1 or seg == b"", (path, route.path)
