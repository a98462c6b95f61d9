"""Reading small YAML files (recipes, training configs) safely: plain types only, bounded work.

A hostile or broken file gets one line naming it and the reason, never a traceback or a hang:
bigger than :data:`MAX_BYTES`, not UTF-8, not a regular file (a FIFO would block), nested deeper than
:data:`MAX_DEPTH`, or expanding (through anchors and aliases) to more than :data:`MAX_NODES` values or
deeper than :data:`MAX_DEPTH` -- the "billion laughs" -- or an alias that contains itself.

>>> import tempfile
>>> p = Path(tempfile.mkdtemp()) / "r.yaml"
>>> _ = p.write_text("a: &x [1, 2]\\nb: *x\\n")
>>> read_yaml(p, ValueError)
{'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

import os
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from facedeg.files import file_problem, shown

MAX_BYTES = 1 << 20  # 1 MiB: the shipped recipes are < 2 kB
MAX_DEPTH = 64  # nesting of lists and mappings, after expanding aliases
MAX_NODES = 100_000  # values after expanding aliases


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key) if isinstance(key, Hashable) else None
        return super().construct_mapping(node, deep=deep)


class _TooBig(Exception):
    pass


def read_text_file(path: Path, what: str, error: type[Exception], max_bytes: int = MAX_BYTES) -> str:
    """A small UTF-8 text file's contents; ``error`` (one line naming ``what`` and ``path``) otherwise."""
    name = shown(path)
    try:  # O_NONBLOCK: a FIFO must not block the open (it is refused below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"{name}: cannot read {what} ({file_problem(path) or e.strerror or e})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(f"{name}: cannot read {what} ({file_problem(path) or 'not a regular file'})")
    with os.fdopen(fd, "rb") as f:
        if st.st_size > max_bytes:
            raise error(f"{name}: {what} is too large ({st.st_size} bytes; the limit is {max_bytes})")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise error(f"{name}: cannot read {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{name}: {what} is too large (over {max_bytes} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{name}: {what} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def _check_events(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # the parser is iterative: no recursion
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooBig(f"nested too deeply: more than {MAX_DEPTH} levels (line {event.start_mark.line + 1})")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _check_expansion(root: yaml.Node) -> None:
    """Count values and depth of the tree that aliases expand to, without expanding it (memo per node)."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = [] if isinstance(node, yaml.ScalarNode) else (
            [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else list(node.value))
        if done:
            on_stack.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise _TooBig(f"anchors and aliases expand to more than {MAX_NODES} values")
            if height[key] > MAX_DEPTH + 1:
                raise _TooBig(f"nested too deeply: anchors and aliases expand to more than {MAX_DEPTH} levels")
            continue
        if key in size:
            continue
        if key in on_stack:
            raise _TooBig("nested too deeply: an alias refers to a value that contains it")
        on_stack.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def read_yaml(path: str | Path, error: type[Exception], what: str = "YAML file") -> Any:
    """Parse a YAML file with :class:`StrictLoader` within the limits above; ``error`` on any problem."""
    path = Path(path)
    text = read_text_file(path, what, error)
    try:
        _check_events(text)
        loader = StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _TooBig as e:
        raise error(f"{shown(path)}: {what} refused: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = " ".join(str(getattr(e, "problem", None) or e).split())
        raise error(f"{shown(path)}: invalid YAML{where}: {reason}") from None
