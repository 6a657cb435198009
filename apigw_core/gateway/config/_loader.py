"""Reading a config file: YAML through PyYAML's safe loader (a repeated key is an error),
or JSON for `.json` files.  Syntax errors come back as `_Invalid("line L, column C: ...")`."""

from __future__ import annotations

from ._values import _Invalid


def load_json(text: str) -> object:
    import json

    def no_duplicates(pairs: list) -> dict:
        keys = [k for k, _ in pairs]
        for k in keys:
            if keys.count(k) > 1:
                raise _Invalid(f"duplicate key {k!r}")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise _Invalid(f"line {e.lineno}, column {e.colno}: {e.msg}") from None


def load_yaml(text: str) -> object:
    import yaml

    # safe_load, except that a repeated key is an error: PyYAML keeps the last one silently,
    # and a pasted-twice `timeout:` should not decide which value wins.
    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
        seen: set = set()
        for key_node, _ in node.value:    # own keys only: "<<" merges may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node)
            if isinstance(key, (str, int, float, bool)):   # others fail in construct_mapping
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        loader.flatten_mapping(node)
        return loader.construct_mapping(node)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise _Invalid(f"{where}{e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise _Invalid(f"invalid YAML: {e}") from None
