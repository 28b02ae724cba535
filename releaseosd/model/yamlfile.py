"""YAML documents validated against pydantic models, with errors that name file, line and key.

Config files and sidecars share this: both are hand-written YAML whose mistakes a user must be able
to find without reading a stack trace.
"""

from __future__ import annotations

import builtins
import difflib
import reprlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)
Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file, phrased for the person who wrote it."""

    file: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class FileProblems(Exception):
    """Raised with every problem found in a file (or a set of files), never just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class LineMap:
    """Maps key paths to the 1-based line where they were written, from PyYAML's node tree."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    def line(self, loc: Loc) -> int | None:
        node = self._root
        if node is None:
            return None
        best = node.start_mark.line + 1
        for part in loc:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == part:
                        # The key's line is where a reader looks for a bad value too.
                        best = key_node.start_mark.line + 1
                        child = value_node
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(part, int)
                and 0 <= part < len(node.value)
            ):
                child = node.value[part]
                best = child.start_mark.line + 1
            if child is None:
                return best
            node = child
        return best


# --- loading ------------------------------------------------------------------------------------

# A sidecar holds a few dozen values and a config a few hundred. Aliases that make a document
# expand past this are a "billion laughs" bomb: a few hundred bytes whose expanded data would
# keep validation (and every message that shows a value) busy for seconds to hours.
MAX_EXPANDED_VALUES = 10_000
# Counting stops here, so a bomb's size never becomes a huge number to add up.
_COUNT_CAP = 1_000_000_000

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"

# No implicit timestamps: `release_at: 2026-12-01T18:00:00` reaches pydantic as text, which
# parses it and, for 2026-13-01, says what is wrong with that field (PyYAML's own timestamp
# constructor raises a bare ValueError). It also keeps a date-like title a title.
_RESOLVERS = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()
}


class _ConstructionFailed(Exception):
    """An exception from building a value, with the node it was built from."""

    def __init__(self, node: yaml.Node, error: Exception) -> None:
        super().__init__(str(error))
        self.node = node
        self.error = error


class _Guarded(yaml.constructor.SafeConstructor):
    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # Explicit tags (`!!timestamp 2026-13-01`, `!!int` with 5000 digits, `!!binary` that is
        # not base64) raise whatever their constructor raises; name the node it came from.
        try:
            return super().construct_object(node, deep)
        except _ConstructionFailed:
            raise
        except Exception as exc:
            raise _ConstructionFailed(node, exc) from exc


class _PythonLoader(_Guarded, yaml.SafeLoader):
    yaml_implicit_resolvers = _RESOLVERS


class _Loader(Protocol):
    def get_single_node(self) -> yaml.Node | None: ...
    def get_event(self) -> Any: ...
    def construct_document(self, node: yaml.Node) -> Any: ...
    def dispose(self) -> None: ...


LOADERS: dict[str, Callable[[str], _Loader]] = {"python": _PythonLoader}
try:  # libyaml is several times faster; the pure-Python loader is equally safe.
    from yaml import CSafeLoader

    class _LibyamlLoader(_Guarded, CSafeLoader):
        yaml_implicit_resolvers = _RESOLVERS

    LOADERS["libyaml"] = _LibyamlLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    pass
_make_loader = LOADERS.get("libyaml", _PythonLoader)


def parse_yaml(text: str, file: Path) -> tuple[Any, LineMap]:
    """Safe-load one YAML document: plain data only, never arbitrary objects.

    The text is parsed once into a node tree, which is checked (size after aliases, keys given
    twice) before any value is built from it. Nothing in the text raises anything but
    FileProblems.
    """
    loader: _Loader | None = None
    root: yaml.Node | None = None
    try:
        loader = _make_loader(text)  # the pure-Python reader rejects control characters here
        root = loader.get_single_node()
        lines = LineMap(root)
        if root is None:
            return None, lines
        problems = _too_big(root, file) or _duplicate_keys(root, file)
        if problems:
            raise FileProblems(problems)
        return loader.construct_document(root), lines
    except FileProblems:
        raise
    except _ConstructionFailed as exc:
        assert root is not None
        raise FileProblems([_construction_problem(exc, root, file)]) from None
    except yaml.MarkedYAMLError as exc:
        raise FileProblems([_syntax_problem(exc, text, file)]) from None
    except yaml.YAMLError as exc:
        raise FileProblems([Problem(file, None, "", f"not valid YAML: {exc}")]) from None
    except RecursionError:  # the pure-Python parser recurses once per level of nesting
        raise FileProblems([Problem(file, None, "", "is nested too deeply to read")]) from None
    except Exception as exc:  # whatever else PyYAML raises must not reach the watcher thread
        raise FileProblems([Problem(file, None, "", f"cannot be read: {_short(exc)}")]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            yield key_node
            yield value_node
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def _placed_children(node: yaml.Node, loc: Loc) -> Iterator[tuple[yaml.Node, Loc, int]]:
    """Each child with its key path and the line a reader looks at for it (its key's line)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            part = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            yield key_node, (*loc, part), line
            yield value_node, (*loc, part), line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield item, (*loc, i), item.start_mark.line + 1


def _nodes(root: yaml.Node) -> Iterator[tuple[yaml.Node, Loc, int]]:
    """Every distinct node once (an alias's target only where it is first reached), in order."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Loc, int]] = [(root, (), root.start_mark.line + 1)]
    while stack:
        node, loc, line = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node, loc, line
        stack.extend(reversed(list(_placed_children(node, loc))))


def _locate(root: yaml.Node, target: yaml.Node) -> tuple[Loc, int | None]:
    for node, loc, line in _nodes(root):
        if node is target:
            return loc, line
    return (), None


class _SelfReference(Exception):
    def __init__(self, node: yaml.Node) -> None:
        super().__init__("an alias refers to a node that contains it")
        self.node = node


def _expanded_sizes(root: yaml.Node) -> dict[int, int]:
    """How many values each node stands for once aliases are expanded, by node identity.

    Each distinct node is counted once (aliases share their anchor's node), so this takes time
    in proportion to the text however much the aliases multiply it.
    """
    sizes: dict[int, int] = {}
    unfinished: set[int] = set()  # the nodes on the path from the root to the current one
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            unfinished.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[key] = min(total, _COUNT_CAP)
        elif key not in sizes:
            if key in unfinished:
                raise _SelfReference(node)
            unfinished.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes


def _too_big(root: yaml.Node, file: Path) -> list[Problem]:
    try:
        sizes = _expanded_sizes(root)
    except _SelfReference as exc:
        loc, line = _locate(root, exc.node)
        message = "refers to itself through an alias, so it never ends; remove the alias"
        return [Problem(file, line, format_loc(loc), message)]
    total = sizes[id(root)]
    # Without aliases the work is bounded by the file's size; only aliases multiply it.
    if total <= MAX_EXPANDED_VALUES or total <= len(sizes):
        return []
    # Blame the smallest part that is too big on its own: usually the key with the last alias.
    node, loc, line = root, (), root.start_mark.line + 1
    while True:
        bigger = next(
            (c for c in _placed_children(node, loc) if sizes[id(c[0])] > MAX_EXPANDED_VALUES),
            None,
        )
        if bigger is None:
            break
        node, loc, line = bigger
    size = sizes[id(node)]
    count = f"over {_COUNT_CAP:,}" if size >= _COUNT_CAP else f"{size:,}"
    message = (
        f"too many aliases: expands to {count} values (at most {MAX_EXPANDED_VALUES:,}); "
        "sidecars and configs do not need anchors like this"
    )
    return [Problem(file, line, format_loc(loc), message)]


def _duplicate_keys(root: yaml.Node, file: Path) -> list[Problem]:
    """Keys written twice in one mapping; YAML's loaders would silently keep the last."""
    problems: list[Problem] = []
    for node, loc, _line in _nodes(root):
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[tuple[str, str], int] = {}
        for key_node, _value in node.value:
            # `<<: *defaults` then a key of its own is how merges are meant to be used.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            line = key_node.start_mark.line + 1
            ident = (key_node.tag, key_node.value)
            if ident in first:
                where = format_loc((*loc, key_node.value))
                message = f"given twice (first on line {first[ident]})"
                problems.append(Problem(file, line, where, message))
            else:
                first[ident] = line
    return sorted(problems, key=lambda p: p.line or 0)


def _construction_problem(exc: _ConstructionFailed, root: yaml.Node, file: Path) -> Problem:
    loc, line = _locate(root, exc.node)
    error, node = exc.error, exc.node
    if isinstance(error, yaml.MarkedYAMLError):
        message = f"not valid YAML: {error.problem or error.context}"
    elif isinstance(error, RecursionError):
        message = "is nested too deeply to read"
    elif node.tag == _TIMESTAMP_TAG:
        message = f"{_describe(node.value)} is not a real date and time ({_short(error)})"
    elif node.tag == _INT_TAG and isinstance(error, ValueError):
        message = "is a number with too many digits to read"
    else:
        message = f"cannot be read: {_short(error)}"
    return Problem(file, line, format_loc(loc), message)


_FLOW = {"[": ("list", "]"), "{": ("mapping", "}")}


def _syntax_problem(exc: yaml.MarkedYAMLError, text: str, file: Path) -> Problem:
    try:
        found = _unclosed(exc, text, file)
    except Exception:  # a more precise message is not worth a crash
        found = None
    if found is not None:
        return found
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    what = exc.problem or exc.context or "not valid YAML"
    return Problem(file, line, "", f"not valid YAML: {what}")


def _unclosed(exc: yaml.MarkedYAMLError, text: str, file: Path) -> Problem | None:
    """A `[`, `{` or quote that is never closed, reported where it opened, not where the parser
    gave up (often many lines later, or at the end of the file)."""
    frames = _open_at_error(text)
    flow = [f for f in frames if f.flow]
    unclosed = _unclosed_brackets(text, flow[0].index) if flow else set()
    for frame in reversed(flow):
        # A collection's events start at its anchor or tag, if it has one, not at the bracket.
        opener = "{" if frame.mapping else "["
        if text.find(opener, frame.index) in unclosed:
            kind, closer = _FLOW[opener]
            message = (
                f"the {kind} opened here is never closed ('{opener}' without '{closer}'), "
                "so this is not valid YAML"
            )
            return Problem(file, frame.line, format_loc(frame.loc), message)
    mark = exc.context_mark
    if (
        exc.context == "while scanning a quoted scalar"
        and mark is not None
        and ("end of stream" in (exc.problem or "") or "document" in (exc.problem or ""))
    ):
        quote = text[mark.index] if mark.index < len(text) else '"'
        loc = frames[-1].child_loc() if frames else ()
        message = (
            f"the quoted text opened here never ends (no closing {quote}), "
            "so this is not valid YAML"
        )
        return Problem(file, mark.line + 1, format_loc(loc), message)
    return None


@dataclass
class _Frame:
    """A collection the parser had opened, while replaying events up to a syntax error."""

    loc: Loc
    index: int
    line: int
    flow: bool
    mapping: bool
    key: int | str = "?"
    expect_key: bool = True
    count: int = 0

    def child_loc(self) -> Loc:
        if not self.mapping:
            return (*self.loc, self.count)
        return self.loc if self.expect_key else (*self.loc, self.key)

    def advance(self, value: str | None) -> None:
        if not self.mapping:
            self.count += 1
        elif self.expect_key:
            self.key = value if value is not None else "?"
            self.expect_key = False
        else:
            self.expect_key = True


def _open_at_error(text: str) -> list[_Frame]:
    frames: list[_Frame] = []
    loader: _Loader | None = None
    try:
        loader = _make_loader(text)
        while True:
            event = loader.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                mark = event.start_mark
                assert mark is not None  # both parsers mark every event
                frames.append(
                    _Frame(
                        loc=frames[-1].child_loc() if frames else (),
                        index=mark.index,
                        line=mark.line + 1,
                        flow=bool(event.flow_style),
                        mapping=isinstance(event, yaml.MappingStartEvent),
                    )
                )
            elif isinstance(event, yaml.CollectionEndEvent):
                frames.pop()
                if frames:
                    frames[-1].advance(None)
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent) and frames:
                frames[-1].advance(event.value if isinstance(event, yaml.ScalarEvent) else None)
    except yaml.YAMLError:
        pass
    finally:
        if loader is not None:
            loader.dispose()
    return frames


def _unclosed_brackets(text: str, start: int) -> set[int]:
    """Where the flow brackets from text[start] on that are never closed begin, in one pass.

    Flow context has no plain text containing brackets; quotes and comments are skipped. A
    closing bracket of the wrong kind (`[1, 2}`) leaves everything still open unclosed.
    """
    open_at: list[tuple[int, str]] = []  # (where, the closing bracket it needs), innermost last
    previous = ""  # the last character that was not white space
    i = start
    while i < len(text):
        ch = text[i]
        if ch in _FLOW:
            open_at.append((i, _FLOW[ch][1]))
        elif ch in "]}":
            if not open_at or open_at[-1][1] != ch:
                break
            open_at.pop()
        elif ch in "\"'" and previous in "[{,:?":
            i = _quote_end(text, i)
            if i < 0:
                break
        elif ch == "#" and text[i - 1] in " \t\n":
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if not ch.isspace():
            previous = ch
        i += 1
    return {where for where, _ in open_at}


def _quote_end(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if quote == '"' and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                i += 2
                continue
            return i
        i += 1
    return -1


def read_text(file: Path, max_bytes: int | None = None) -> str:
    try:
        with file.open("rb") as fh:
            raw = fh.read(max_bytes + 1 if max_bytes is not None else -1)
    except FileNotFoundError:
        raise FileProblems([Problem(file, None, "", "file not found")]) from None
    except IsADirectoryError:
        raise FileProblems([Problem(file, None, "", "is a folder, not a file")]) from None
    except OSError as exc:
        raise FileProblems([Problem(file, None, "", f"cannot be read: {exc.strerror}")]) from None
    if max_bytes is not None and len(raw) > max_bytes:
        limit = f"{max_bytes // 1024} KiB"
        raise FileProblems(
            [Problem(file, None, "", f"is larger than {limit}; is it really a sidecar?")]
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblems(
            [Problem(file, None, "", f"is not UTF-8 text (bad byte at offset {exc.start})")]
        ) from None


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a model accepts at a location, for 'did you mean' suggestions."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


class _ShortRepr(reprlib.Repr):
    """repr() that stops early: a value's repr can be far larger than the file it came from."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdict = 4
        self.maxstring = self.maxlong = self.maxother = 41

    def repr_str(self, x: str, level: int) -> str:
        return builtins.repr(x[: self.maxstring])

    def repr_int(self, x: int, level: int) -> str:
        try:
            return builtins.repr(x)  # at most 4300 digits: the caller cuts it short
        except ValueError:  # more digits than Python will turn into text
            return "a very long number"


_short_repr = _ShortRepr()


def _describe(value: Any) -> str:
    text = _short_repr.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _message(err: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "extra_forbidden":
        loc = tuple(err["loc"])
        suggestions = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1)
        hint = f"; did you mean '{suggestions[0]}'?" if suggestions else ""
        return f"unknown key{hint}"
    if kind == "missing":
        return "is required"
    bounds = {
        "greater_than_equal": ("≥", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("≤", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        sign, key = bounds[kind]
        return f"must be {sign} {ctx.get(key)}, got {_describe(got)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_describe(got)}"
    if kind in ("string_too_long", "too_long"):
        return f"is too long (at most {ctx.get('max_length')}), got {len(got) if got else 0}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "string_pattern_mismatch":
        return f"{_describe(got)} does not look right ({err['msg'].lower()})"
    msg = str(err["msg"])
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{msg}, got {_describe(got)}"


def problems_from(
    exc: ValidationError, model: type[BaseModel], file: Path, lines: LineMap
) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        # Union members add their own type name to loc; a user's key path never contains those.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _is_type_tag(p)))
        problems.append(Problem(file, lines.line(loc), format_loc(loc), _message(err, model)))
    return sorted(_dedupe(problems), key=lambda p: (p.line or 0, p.key))


def _is_type_tag(part: str) -> bool:
    return part in {
        "str",
        "int",
        "float",
        "bool",
        "list[str]",
        "literal['auto']",
    } or part.startswith(("function-", "literal[", "list[", "constrained-"))


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[int | None, str], Problem] = {}
    for p in problems:
        seen.setdefault((p.line, p.key), p)
    return list(seen.values())


def validate(
    model: type[ModelT],
    data: Any,
    file: Path,
    lines: LineMap,
    context: dict[str, Any] | None = None,
) -> ModelT:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FileProblems(
            [Problem(file, lines.line(()), "", "must be a mapping of keys to values")]
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise FileProblems(
            [
                Problem(file, lines.line(()), str(k), "keys must be words, not numbers or dates")
                for k in bad_keys
            ]
        )
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise FileProblems(problems_from(exc, model, file, lines)) from None


def load_model(
    model: type[ModelT],
    file: Path,
    max_bytes: int | None = None,
    context: dict[str, Any] | None = None,
) -> ModelT:
    data, lines = parse_yaml(read_text(file, max_bytes), file)
    return validate(model, data, file, lines, context)
