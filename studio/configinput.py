"""What users hand the configuration, read within bounds: YAML text (config files, ``--set`` values) and plain values
(from YAML, the CLI, the Train form, the API) turned into the types of ``RunConfig`` fields.

- YAML: a ``SafeLoader`` that refuses anchors and aliases (a 600-byte alias bomb expands into gigabytes), a key given
  twice in one mapping (the second silently won) and nesting deeper than ``MAX_YAML_DEPTH``; files over
  ``MAX_YAML_BYTES`` are refused without being read whole; UTF-8 only. Every error names the source and the line.
- values: numbers are finite (``.nan``, ``.inf``, ``1e400`` refused), a count is never a bool or a fraction, a list is
  never a mapping, text holds no NUL character and has a length limit.

This module imports nothing of the studio (``studio.config`` turns these errors into ConfigErrors naming the key).
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import yaml

MAX_TEXT = 1024 * 1024  # characters in one text value (a chat template is a few KB)
MAX_LIST = 1000  # entries in one list value (datasets, reward rules)
MAX_YAML_BYTES = 1024 * 1024  # a config file is a few KB; a bigger one is a mistake or an attack
MAX_YAML_DEPTH = 20  # sections hold key: value, lists of text; nothing nests deeper
_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"), (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))


class ConfigError(ValueError):
    """A configuration problem a user can fix; the message names the key and the allowed values."""


class YamlError(ValueError):
    """YAML that cannot be read; the message names the source (file or override) and, where known, the line."""


class YamlRefused(YamlError):
    """Valid YAML the loader refuses: anchors/aliases, duplicate keys, nesting too deep, too big."""


class NotFinite(ValueError):
    """A NaN or infinite number where a field takes a number."""


# ----------------------------------------------------------------------------------------------------------------------------
# YAML


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str, source: str):
        super().__init__(stream)
        self.source, self.depth = source, 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            self._refuse(event.start_mark, "anchors and aliases (&name, *name) are not allowed in a config; "
                                           "write the values out")
        self.depth += 1
        try:
            if self.depth > MAX_YAML_DEPTH:
                self._refuse(event.start_mark, f"nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    self._refuse(key_node.start_mark, f"duplicate key '{key_node.value}' "
                                                      f"(first given on line {seen[key_node.value]})")
                seen[key_node.value] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def _refuse(self, mark, why: str):
        raise YamlRefused(f"{self.source}: line {mark.line + 1}: {why}")


def load_yaml(text: str, source: str) -> Any:
    """YAML text -> Python values through the bounded loader; every problem is a YamlError naming ``source`` and line."""
    if len(text) > MAX_YAML_BYTES:
        raise YamlRefused(f"{source}: {len(text):,} characters, over the {MAX_YAML_BYTES // 1024} KB limit for a config")
    loader = None
    try:
        loader = _BoundedLoader(text, source)  # its reader refuses control characters right here
        return loader.get_single_data()
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark else ""
        context = f"{exc.context}, " if exc.context else ""
        raise YamlError(f"{source}: {line}not valid YAML: {context}{exc.problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise YamlError(f"{source}: line {line}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None
    except (ValueError, OverflowError) as exc:  # a constructor's own: an int of 5,000 digits, a date like 2024-02-30
        raise YamlError(f"{source}: not valid YAML: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_yaml_file(path: Path) -> str:
    """A YAML file's text: at most MAX_YAML_BYTES, UTF-8 (a byte-order mark is fine), else a YamlError."""
    if path.is_dir():
        raise YamlError(f"{path}: a folder, not a config file")
    if not path.is_file():
        raise YamlError(f"{path}: config file not found")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_YAML_BYTES + 1)  # never more: a huge file is refused without reading it whole
    except OSError as exc:
        raise YamlError(f"{path}: cannot read the config file ({exc.strerror})") from None
    if len(raw) > MAX_YAML_BYTES:
        raise YamlRefused(f"{path}: over the {MAX_YAML_BYTES // 1024} KB limit for a config file (a config is a few KB)")
    for bom, name in _BOMS:  # UTF-32 first: its little-endian mark starts with UTF-16's
        if raw.startswith(bom):
            raise YamlError(f"{path}: the file is {name} text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlError(f"{path}: line {line}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                        "save the file as UTF-8") from None


# ----------------------------------------------------------------------------------------------------------------------------
# Values: each raises TypeError/ValueError (or NotFinite) for what its field cannot take


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "on", "1"):
            return True
        if low in ("false", "no", "off", "0", ""):
            return False
    elif isinstance(value, numbers.Integral) and value in (0, 1):  # 2 or -1 is a mistake, not "true"
        return bool(value)
    raise ValueError(value)


def to_int(value: Any) -> int:
    if isinstance(value, bool):  # True is an int to Python, never a count to a user
        raise ValueError(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            value = float(value)  # "1e3"; "1.5" and "1e400" are refused below
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise NotFinite(value)
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    raise TypeError(value)


def to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        raise TypeError(value)
    out = float(value.strip() if isinstance(value, str) else value)  # a huge int: OverflowError
    if not math.isfinite(out):
        raise NotFinite(value)
    return out


def to_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.replace("\n", ",").split(",") if value.strip() else []
        items = [p.strip() for p in parts if p.strip()]
    elif isinstance(value, (list, tuple)):  # a mapping is not a list: {a: 1} must not become ["a"]
        if any(v is None or isinstance(v, (dict, list, tuple, set)) for v in value):
            raise ValueError(value)
        items = [str(v) for v in value]
    else:
        raise TypeError(value)
    if len(items) > MAX_LIST or not all(map(plain_text, items)):
        raise ValueError(value)
    return items


def to_str(value: Any, choices: tuple | None = None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) and choices and "on" in choices:  # YAML reads `on`/`off` as true/false
        return "on" if value else "off"
    if not isinstance(value, (str, numbers.Real)):
        raise TypeError(value)
    text = str(value)
    if not plain_text(text):
        raise ValueError(value)
    return text


def plain_text(text: str) -> bool:
    """No NUL character (no path or library takes one) and at most MAX_TEXT characters."""
    return "\x00" not in text and len(text) <= MAX_TEXT
