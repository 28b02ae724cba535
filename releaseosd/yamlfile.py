"""YAML documents validated against pydantic models, with errors that name file, line and key.

Config files and sidecars share this: both are hand-written YAML whose mistakes a user must be able
to find without reading a stack trace.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

try:  # libyaml is several times faster; the pure-Python loader is equally safe.
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

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


def parse_yaml(text: str, file: Path) -> tuple[Any, LineMap]:
    """Safe-load one YAML document: plain data only, never arbitrary objects."""
    try:
        root = yaml.compose(text, Loader=_SafeLoader)
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = exc.problem or exc.context or "not valid YAML"
        raise FileProblems([Problem(file, line, "", f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise FileProblems([Problem(file, None, "", f"not valid YAML: {exc}")]) from None
    return data, LineMap(root)


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


def _describe(value: Any) -> str:
    text = repr(value)
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
