"""Body conversions: `json-to-xml` and `xml-to-json` (APIM's attributes; inbound, outbound,
on-error), on the standard library only.

Strategy.  The body is buffered (a read command, up to `DEFAULT_BODY_LIMIT`), parsed,
converted and set back with the new Content-Type (`application/xml` / `application/json`);
the runtime frames it anew.  A body that is content-coded (gzip...) or empty is left alone;
`apply: content-type-json|xml` converts only a body whose Content-Type says so, and
`consider-accept-header` (default true) only when the request's Accept names the target
type (`application/xml`, `text/xml`, `*/*+xml`; q=0 does not count), as APIM's page says.
A body that does not parse is the caller's mistake inbound (PolicyError 400) and the
backend's outbound (502), reason `BodyConversionFailure`.

XML is parsed with expat directly (no DTD, no entities: any DOCTYPE is refused, which
rules out billion-laughs and external entities alike), into the JSON shape Json.NET's
SerializeXmlNode gives, which APIM's `direct` kind is: elements become properties,
attributes `@name`, text beside attributes or children `#text`, repeated children arrays
(always, with always-array-child-elements), an empty element null, ":" in names "$", and
the XML declaration's version / encoding / standalone as top-level properties (as observed
on APIM).  `javascript-friendly` drops the declaration, namespace prefixes and xmlns
declarations, and writes attributes without "@" (keeping "@" only where an attribute and a
child element share a name).  JSON to XML is the inverse: an object with one property
whose value is not an array is the root element, anything else is wrapped in
`<Document>`; arrays repeat their element, `@name` keys become attributes, `#text` text,
null an empty element, numbers and booleans their JSON text.  Names that are not XML names
are encoded as .NET's XmlConvert does (`_x0020_` for a space).  Nesting deeper than
`MAX_DEPTH` is refused.

Not supported (a config error says so): json-to-xml's namespace-separator,
namespace-prefix and attribute-block-name.  `parse-date` is accepted and dates are copied
as they are (APIM's parse-date false).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Callable, Optional
from xml.parsers import expat

from ..contract import Context, Headers, Policy, PolicyError, Site
from ..registry import register
from ._spec import DEFAULT_BODY_LIMIT, Spec, identity_encoded, media_type, set_body, with_body

__all__ = ["JsonToXml", "XmlToJson", "json_to_xml", "xml_to_json", "ConversionError",
           "MAX_DEPTH"]

MAX_DEPTH = 100


class ConversionError(ValueError):
    """The body is not a document of the kind the policy converts."""


# --- types ----------------------------------------------------------------------------------

def is_json(mt: str) -> bool:
    return mt in ("application/json", "text/json") or mt.endswith("+json")


def is_xml(mt: str) -> bool:
    return mt in ("application/xml", "text/xml") or mt.endswith("+xml")


def accepts(headers: Headers, wanted: Callable[[str], bool]) -> bool:
    """Whether the Accept field names a media type `wanted` says yes to (q > 0)."""
    value = headers.get(b"accept")
    if value is None:
        return False
    for item in value.decode("latin-1").split(","):
        mt, *params = (p.strip() for p in item.split(";"))
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) <= 0:
                continue
        except ValueError:
            continue
        if wanted(mt.lower()):
            return True
    return False


# --- JSON -> XML -----------------------------------------------------------------------------

_NAME_START = r"A-Z_a-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF" \
              r"\u200C-\u200D\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD"
_NAME_CHAR = _NAME_START + r"\-.0-9\u00B7\u0300-\u036F\u203F-\u2040"


@functools.cache
def _name_patterns() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """(XML name, name start char, name char), compiled on first use: these Unicode classes
    cost ~40 ms to compile, in every gateway process, with or without json-to-xml."""
    return (re.compile(rf"[{_NAME_START}][{_NAME_CHAR}]*(?::[{_NAME_START}][{_NAME_CHAR}]*)?"),
            re.compile(rf"[{_NAME_START}]"), re.compile(rf"[{_NAME_CHAR}]"))


_ENCODED = re.compile(r"_x([0-9A-Fa-f]{4})_")
# Characters XML 1.0 cannot carry at all (§2.2).
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def encode_name(name: str) -> str:
    """An XML element/attribute name for a JSON key (XmlConvert.EncodeName's scheme)."""
    xml_name, start_ok, char_ok = _name_patterns()
    if xml_name.fullmatch(name) and not _ENCODED.search(name):
        return name
    out = []
    for i, c in enumerate(name):
        ok = (start_ok if i == 0 else char_ok).fullmatch(c)
        if c == "_" and _ENCODED.match(name, i):
            ok = None                          # a literal "_xHHHH_" must not decode later
        out.append(c if ok else f"_x{ord(c):04X}_" if ord(c) <= 0xFFFF
                   else f"_x{ord(c):08X}_")
    return "".join(out) or "_"


def decode_name(name: str) -> str:
    return _ENCODED.sub(lambda m: chr(int(m.group(1), 16)), name) if "_x" in name else name


def _text(s: str, attr: bool = False) -> str:
    if _NOT_XML_CHAR.search(s):
        raise ConversionError("a string holds a character XML cannot carry")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    if attr:
        s = s.replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")
    return s


def _scalar(v: Any) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    return json.dumps(v)        # numbers as JSON wrote them (1.5, 10, 1e+100)


def _element(name: str, value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ConversionError(f"nested deeper than {MAX_DEPTH} levels")
    tag = encode_name(name)
    if isinstance(value, list):
        for item in value:
            _element(name, item, out, depth + 1)
        return
    if value is None:
        out.append(f"<{tag} />")
        return
    if not isinstance(value, dict):
        text = _text(_scalar(value))
        out.append(f"<{tag}>{text}</{tag}>" if text else f"<{tag} />")
        return
    attrs = []
    children: list[str] = []
    for k, v in value.items():
        if k.startswith("@") and len(k) > 1 and not isinstance(v, (dict, list)):
            attrs.append(f' {encode_name(k[1:])}="{_text("" if v is None else _scalar(v), True)}"')
        elif k == "#text" and not isinstance(v, (dict, list)):
            children.append(_text("" if v is None else _scalar(v)))
        else:
            _element(k, v, children, depth + 1)
    a = "".join(attrs)
    out.append(f"<{tag}{a}>{''.join(children)}</{tag}>" if children else f"<{tag}{a} />")


def json_to_xml(data: bytes) -> bytes:
    """A JSON document as XML (see the module docstring for the mapping)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ConversionError(f"not JSON: {e}") from None
    out: list[str] = []
    if isinstance(doc, dict) and len(doc) == 1 and not isinstance(next(iter(doc.values())), list) \
            and not next(iter(doc)).startswith(("@", "#")):
        (name, value), = doc.items()
        _element(name, value, out, 0)
    elif isinstance(doc, dict):
        _element("Document", doc, out, 0)
    else:
        _element("Document", {"item": doc} if isinstance(doc, list) else {"#text": doc}, out, 0)
    return "".join(out).encode("utf-8")


# --- XML -> JSON -----------------------------------------------------------------------------

class _Node:
    __slots__ = ("name", "attrs", "children", "text")

    def __init__(self, name: str, attrs: dict[str, str]) -> None:
        self.name, self.attrs = name, attrs
        self.children: list[_Node] = []
        self.text: list[str] = []


def parse_xml(data: bytes) -> tuple[_Node, dict[str, str]]:
    """(root element, XML declaration fields).  No DOCTYPE, no entities."""
    parser = expat.ParserCreate()
    stack: list[_Node] = []
    root: list[_Node] = []
    decl: dict[str, str] = {}

    def refuse(*_: Any) -> None:
        raise ConversionError("a DOCTYPE or entity declaration is not accepted")

    def start(name: str, attrs: dict[str, str]) -> None:
        if len(stack) >= MAX_DEPTH:
            raise ConversionError(f"nested deeper than {MAX_DEPTH} levels")
        node = _Node(name, attrs)
        (stack[-1].children if stack else root).append(node)
        stack.append(node)

    def end(name: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if stack:
            stack[-1].text.append(text)

    def xml_decl(version: Optional[str], encoding: Optional[str], standalone: int) -> None:
        if version:
            decl["version"] = version
        if encoding:
            decl["encoding"] = encoding
        if standalone != -1:
            decl["standalone"] = "yes" if standalone else "no"

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.XmlDeclHandler = xml_decl
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise ConversionError(f"not XML: {e}") from None
    return root[0], decl


def _json_name(name: str, friendly: bool) -> str:
    if friendly:
        name = name.rpartition(":")[2]
    return decode_name(name).replace(":", "$")


def _value(node: _Node, friendly: bool, arrays: bool) -> Any:
    attrs = {k: v for k, v in node.attrs.items()
             if not (friendly and (k == "xmlns" or k.startswith("xmlns:")))}
    text = "".join(node.text)
    if not node.children and not attrs:
        return text if text else None
    groups: dict[str, list[Any]] = {}
    for c in node.children:
        groups.setdefault(_json_name(c.name, friendly), []).append(_value(c, friendly, arrays))
    obj: dict[str, Any] = {}
    for k, v in attrs.items():
        name = _json_name(k, friendly)
        obj[name if friendly and name not in groups else "@" + name] = v
    for name, values in groups.items():
        obj[name] = values if arrays or len(values) > 1 else values[0]
    if text.strip() or (text and not node.children):
        obj["#text"] = text
    return obj


def xml_to_json(data: bytes, kind: str = "direct", always_array: bool = False) -> bytes:
    """An XML document as JSON (see the module docstring for the mapping)."""
    root, decl = parse_xml(data)
    friendly = kind == "javascript-friendly"
    doc: dict[str, Any] = {} if friendly else dict(decl)
    value = _value(root, friendly, always_array)
    doc[_json_name(root.name, friendly)] = value
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- the policies ------------------------------------------------------------------------------

class _Convert(Policy):
    """What both conversions share: which body, when to convert, how to fail."""

    sections = frozenset({"inbound", "outbound", "on-error"})
    target: Callable[[str], bool]          # the output media type test (Accept)
    source: Callable[[str], bool]          # the input media type test (apply: content-type-*)
    content_type = b""
    source_kind = ""

    def __init__(self, spec: Any, site: Site, s: Spec, apply_values: tuple[str, str]) -> None:
        super().__init__(spec, site)
        self.always = s.choice("apply", apply_values, required=True) != apply_values[1]
        self.consider_accept = s.flag("consider-accept-header", True)
        self._request = site.section == "inbound"
        self.reads_request_body = self._request
        self.reads_response_body = not self._request

    def convert(self, body: bytes) -> bytes:
        raise NotImplementedError

    def _wanted(self, ctx: Context, view: Any) -> bool:
        if self.consider_accept and not accepts(ctx.request.headers, self.target):
            return False
        if not self.always and not self.source(media_type(view.headers)):
            return False
        return True

    def _work(self, view: Any) -> None:
        if not view.body or not identity_encoded(view.headers):
            return None
        try:
            out = self.convert(view.body)
        except ConversionError as e:
            side = "request" if self._request else "response"
            raise PolicyError(400 if self._request else 502, "BodyConversionFailure",
                              f"The {side} body could not be converted ({e}).") from None
        set_body(view, out, coded=True)
        view.headers.set(b"content-type", [self.content_type])
        return None

    def apply(self, ctx: Context) -> Any:
        view = ctx.request if self._request else ctx.response
        if view is None or not self._wanted(ctx, view):
            return None
        return with_body(ctx, self._request, DEFAULT_BODY_LIMIT, self._work)


@register
class JsonToXml(_Convert):
    """`json-to-xml: {apply: always | content-type-json, consider-accept-header, parse-date}`."""

    name = "json-to-xml"
    target = staticmethod(is_xml)
    source = staticmethod(is_json)
    content_type = b"application/xml"

    def __init__(self, spec: Any, site: Site) -> None:
        s = Spec(spec, site, ("apply", "consider-accept-header", "parse-date",
                              "namespace-separator", "namespace-prefix",
                              "attribute-block-name"))
        for key in ("namespace-separator", "namespace-prefix", "attribute-block-name"):
            if s.has(key):
                s.error("not supported", key)
        s.flag("parse-date", True)             # checked; dates are copied either way
        super().__init__(spec, site, s, ("always", "content-type-json"))

    def convert(self, body: bytes) -> bytes:
        return json_to_xml(body)


@register
class XmlToJson(_Convert):
    """`xml-to-json: {kind: javascript-friendly | direct, apply: always | content-type-xml,
    consider-accept-header, always-array-child-elements}`."""

    name = "xml-to-json"
    target = staticmethod(is_json)
    source = staticmethod(is_xml)
    content_type = b"application/json"

    def __init__(self, spec: Any, site: Site) -> None:
        s = Spec(spec, site, ("kind", "apply", "consider-accept-header",
                              "always-array-child-elements"))
        self.kind = s.choice("kind", ("javascript-friendly", "direct"), required=True) \
            or "direct"
        self.always_array = s.flag("always-array-child-elements", False)
        super().__init__(spec, site, s, ("always", "content-type-xml"))

    def convert(self, body: bytes) -> bytes:
        return xml_to_json(body, self.kind, self.always_array)
