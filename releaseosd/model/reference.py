"""Documents generated from the models, so the example config, the JSON Schema and the README's
reference tables cannot drift from what the code accepts (borgmatic's habit: one schema drives
validation, the sample and the docs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from releaseosd.model.config import Config, WatchFolder
from releaseosd.model.sidecar import Sidecar

EXAMPLE_HEADER = """\
# releaseosd configuration. Every key is optional: with no file at all, releaseosd runs on the
# defaults shown here. Found via --config PATH, else $RELEASEOSD_CONFIG, else
# ~/.config/releaseosd/config.yaml (macOS: ~/Library/Application Support/releaseosd/config.yaml).
# Check it with: releaseosd validate PATH; see what is in effect with: releaseosd config show
"""

# Values shown in the example where the built-in default depends on the machine.
_EXAMPLE_VALUES: dict[str, Any] = {
    "state_dir": "~/.local/share/releaseosd",
    "watch": [{"path": "~/Music/Exports", "recursive": True, "polling": False}],
}


def _default_of(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _nested_model(field: FieldInfo) -> type[BaseModel] | None:
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _example_lines(model: type[BaseModel], indent: int, path: str) -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    for name, field in model.model_fields.items():
        key_path = f"{path}.{name}" if path else name
        if field.description:
            lines.append(f"{pad}# {field.description}")
        nested = _nested_model(field)
        if key_path == "watch":
            lines.extend(
                f"{pad}#   {n}: {f.description}" for n, f in WatchFolder.model_fields.items()
            )
            lines.append(f"{pad}watch:")
            for entry in _EXAMPLE_VALUES["watch"]:
                first = True
                for k, v in entry.items():
                    lead = "- " if first else "  "
                    lines.append(f"{pad}  {lead}{k}: {_scalar(v)}")
                    first = False
        elif nested is not None:
            lines.append(f"{pad}{name}:")
            lines.extend(_example_lines(nested, indent + 2, key_path))
        else:
            value = _EXAMPLE_VALUES.get(key_path, _plain(_default_of(field)))
            if isinstance(value, str) and "\n" in value:
                lines.append(f"{pad}{name}: |-")
                lines.extend(f"{pad}  {line}" for line in value.splitlines())
            else:
                lines.append(f"{pad}{name}: {_scalar(value)}")
        if indent == 0:
            lines.append("")
    return lines


def example_config() -> str:
    return EXAMPLE_HEADER + "\n" + "\n".join(_example_lines(Config, 0, "")).rstrip() + "\n"


def _type_name(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "anyOf" in schema:
        parts = [_type_name(s) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(parts)
    kind = schema.get("type", "")
    if kind == "array":
        return f"list of {_type_name(schema.get('items', {}))}"
    if schema.get("format") == "date-time":
        return "date-time"
    if schema.get("format") == "date":
        return "date"
    if "$ref" in schema:
        return "mapping"
    return str(kind)


def sidecar_reference() -> str:
    schema = Sidecar.model_json_schema()
    rows = ["| field | type | meaning |", "|---|---|---|"]
    for name, prop in schema["properties"].items():
        rows.append(f"| `{name}` | {_type_name(prop)} | {prop.get('description', '')} |")
    return "\n".join(rows) + "\n"


def config_reference() -> str:
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            key = f"{path}.{name}" if path else name
            nested = _nested_model(field)
            if nested is not None:
                walk(nested, key)
                continue
            if key == "watch":
                for sub, sub_field in WatchFolder.model_fields.items():
                    default = "" if sub_field.is_required() else _scalar(sub_field.default)
                    rows.append(f"| `watch[].{sub}` | `{default}` | {sub_field.description} |")
                continue
            default = _EXAMPLE_VALUES.get(key, _plain(_default_of(field)))
            shown = (
                json.dumps(default, ensure_ascii=False) if not isinstance(default, str) else default
            )
            shown = shown.replace("\n", "\\n")
            rows.append(f"| `{key}` | `{shown}` | {field.description or ''} |")

    walk(Config, "")
    return "\n".join(rows) + "\n"


README_SECTIONS = {"sidecar-reference": sidecar_reference, "config-reference": config_reference}


def render_readme(text: str) -> str:
    """Replace each generated section between its <!-- begin:NAME --> / <!-- end:NAME --> marks."""
    for name, render in README_SECTIONS.items():
        begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
        head, sep, rest = text.partition(begin)
        if not sep:
            continue
        _, sep2, tail = rest.partition(end)
        if not sep2:
            raise ValueError(f"README: {begin} has no {end}")
        text = f"{head}{begin}\n{render()}{end}{tail}"
    return text


def write_all(repo: Path) -> None:
    """`python -m releaseosd.model.reference [REPO]`: regenerate every generated file."""
    from releaseosd.model.sidecar import json_schema_text

    (repo / "config" / "sidecar.schema.json").write_text(json_schema_text(), encoding="utf-8")
    (repo / "config" / "releaseosd.example.yaml").write_text(example_config(), encoding="utf-8")
    readme = repo / "README.md"
    if readme.exists():
        readme.write_text(render_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    import sys

    write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
