"""Checks a recorded request against SoundCloud's own OpenAPI spec (../shared/soundcloud/openapi.yaml).

`check_request(rec)` returns the problems (empty when the request is one the spec documents):
the method and path template, the path's URN parameters, every query parameter, the content
type, and every form field, file field, JSON key and enum value.

Where the spec is silent the rules below come from what it refers to, and are the only additions:
- /authorize and /oauth/token are the paths of the spec's oAuth2_1 `authorizationUrl` and
  `tokenUrl`. /authorize takes the spec's client_id, redirect_uri, response_type, scope and state
  parameters plus PKCE's code_challenge and code_challenge_method=S256 (RFC 7636; OAuth 2.1, which
  the spec names, requires PKCE). /oauth/token is form-encoded (RFC 6749) `OAuthToken` plus
  `code_verifier`, with the fields each grant_type requires per the spec's descriptions.
- POST /sign-out may carry JSON `{"access_token": …}` (SoundCloud's guide and clients send it).
- `cursor` and `page_size` are accepted on any GET: they appear in the spec's `next_href`
  examples, which a client follows as given.
- The spec's `multipart/x-www-form-urlencoded` is read as application/x-www-form-urlencoded.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml

SPEC_PATH = Path(__file__).resolve().parents[3] / "shared/soundcloud/openapi.yaml"

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_PAGING = ("cursor", "page_size")
_URN_EXAMPLE = re.compile(r"^soundcloud:([a-z-]+):\d+$")


class _File(Protocol):
    @property
    def field(self) -> str: ...
    @property
    def filename(self) -> str: ...


class Recorded(Protocol):
    """What check_request reads; sandbox_tools.RecordedRequest (tests/sandbox_tools) has it."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> Mapping[str, Sequence[str]]: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def form(self) -> Sequence[tuple[str, str]]: ...
    @property
    def files(self) -> Sequence[_File]: ...
    @property
    def json_body(self) -> Any: ...
    @property
    def body_bytes(self) -> int: ...


@dataclass(frozen=True)
class _Schema:
    """An object schema flattened through $ref and allOf: properties and required names."""

    name: str
    properties: Mapping[str, Any]
    required: frozenset[str]


class Spec:
    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.paths: dict[str, Mapping[str, Any]] = dict(doc["paths"])
        flows = doc["components"]["securitySchemes"]["oAuth2_1"]["flows"]
        self.authorize_path = urlsplit(flows["authorizationCode"]["authorizationUrl"]).path
        self.token_path = urlsplit(flows["authorizationCode"]["tokenUrl"]).path
        self._templates = sorted(
            self.paths, key=lambda t: (t.count("{"), -len(t))
        )  # literal paths win over templated ones (/me/tracks before /me/{x})

    def resolve(self, node: Any) -> Any:
        while isinstance(node, Mapping) and "$ref" in node:
            node = self.component(node["$ref"])
        return node

    def component(self, ref: str) -> Any:
        node: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def flatten(self, schema: Any, name: str = "") -> _Schema:
        if isinstance(schema, Mapping) and "$ref" in schema:
            name = name or schema["$ref"].rsplit("/", 1)[-1]
        schema = self.resolve(schema)
        props: dict[str, Any] = dict(schema.get("properties", {}))
        required = set(schema.get("required", []))
        for part in schema.get("allOf", []):
            sub = self.flatten(part)
            props.update(sub.properties)
            required |= sub.required
            name = name or sub.name
        return _Schema(name or "schema", props, frozenset(required))

    def match_path(self, path: str) -> tuple[str, dict[str, str]] | None:
        for template in self._templates:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            m = re.fullmatch(regex, path)
            if m:
                return template, m.groupdict()
        return None


@functools.cache
def load_spec(path: Path = SPEC_PATH) -> Spec:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it: 10x faster
    with open(path, encoding="utf-8") as f:
        return Spec(yaml.load(f, Loader=loader))


def _media(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        "application/x-www-form-urlencoded" if media == "multipart/x-www-form-urlencoded" else media
    )


def _value_problem(where: str, value: Any, schema: Mapping[str, Any], *, text: bool) -> str | None:
    """A problem with one scalar; `text` values come from a form or a query string."""
    if value is None:
        return None if schema.get("nullable") else f"{where} must not be null"
    kind = schema.get("type")
    if kind == "boolean":
        ok = value in ("true", "false") if text else isinstance(value, bool)
        if not ok:
            return f"{where} must be true or false, got {value!r}"
    elif kind == "integer":
        if text:
            if not re.fullmatch(r"-?\d+", str(value)):
                return f"{where} must be a whole number, got {value!r}"
            value = int(value)
        elif not isinstance(value, int) or isinstance(value, bool):
            return f"{where} must be a whole number, got {value!r}"
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} must be ≥ {schema['minimum']}, got {value}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} must be ≤ {schema['maximum']}, got {value}"
    elif kind == "number":
        if text:
            try:
                float(value)
            except ValueError:
                return f"{where} must be a number, got {value!r}"
        elif not isinstance(value, int | float) or isinstance(value, bool):
            return f"{where} must be a number, got {value!r}"
    elif kind == "string" and not text and not isinstance(value, str):
        return f"{where} must be a string, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(map(str, schema['enum']))}; got {value!r}"
    dated = "yyyy-mm-dd" in str(schema.get("description", "")) + str(schema.get("title", ""))
    if dated and isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return f"{where} must be a date written yyyy-mm-dd, got {value!r}"
    return None


class _Checker:
    def __init__(self, spec: Spec, rec: Recorded) -> None:
        self.spec = spec
        self.rec = rec
        self.problems: list[str] = []
        self.where = f"{rec.method} {rec.path}"

    def fail(self, message: str) -> None:
        self.problems.append(f"{self.where}: {message}")

    # -- whole request --

    def run(self) -> list[str]:
        rec, spec = self.rec, self.spec
        if rec.path == spec.authorize_path:
            self.authorize()
        elif rec.path == spec.token_path:
            self.token()
        else:
            self.api()
        return self.problems

    def api(self) -> None:
        rec = self.rec
        found = self.spec.match_path(rec.path)
        if found is None:
            self.fail("no such path in SoundCloud's spec")
            return
        template, values = found
        self.where = f"{rec.method} {template}"
        item = self.spec.paths[template]
        op = item.get(rec.method.lower())
        if op is None:
            methods = [m.upper() for m in item if m in ("get", "put", "post", "delete", "patch")]
            self.fail(f"method not in the spec; it has {', '.join(methods)}")
            return
        params = [
            self.spec.resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])
        ]
        for p in params:
            if p["in"] == "path" and p["name"] in values:
                self.path_param(p, values[p["name"]])
        self.query({p["name"]: p for p in params if p["in"] == "query"}, paging=True)
        if rec.path == "/sign-out" and rec.method == "POST":
            self.sign_out()
            return
        self.body(op.get("requestBody"))

    def path_param(self, param: Mapping[str, Any], value: str) -> None:
        m = _URN_EXAMPLE.match(str(param.get("example", "")))
        if m and not re.fullmatch(rf"soundcloud:{m.group(1)}:\d+", value):
            self.fail(f"{param['name']} must look like soundcloud:{m.group(1)}:123, got {value!r}")

    def query(self, allowed: Mapping[str, Mapping[str, Any]], *, paging: bool) -> None:
        for name, values in self.rec.query.items():
            base = name.split("[", 1)[0]
            param = allowed.get(name) or allowed.get(base)
            if param is None:
                if paging and self.rec.method == "GET" and name in _PAGING:
                    continue
                known = ", ".join(sorted(allowed)) or "none"
                self.fail(f"query parameter {name!r} is not in the spec (it lists: {known})")
                continue
            schema = self.spec.resolve(param.get("schema", {}))
            if name != base:  # deepObject: bpm[from]
                key = name[len(base) + 1 : -1]
                schema = schema.get("properties", {}).get(key)
                if schema is None:
                    self.fail(f"query parameter {name!r}: {base} has no {key!r}")
                    continue
            for value in values:
                if schema.get("type") == "array":
                    items = self.spec.resolve(schema.get("items", {}))
                    for part in value.split(","):
                        self.value(f"query {name}", part, items, text=True)
                else:
                    self.value(f"query {name}", value, schema, text=True)

    def value(self, where: str, value: Any, schema: Mapping[str, Any], *, text: bool) -> None:
        problem = _value_problem(where, value, schema, text=text)
        if problem:
            self.fail(problem)

    # -- bodies --

    def has_body(self) -> bool:
        rec = self.rec
        return bool(rec.body_bytes or rec.form or rec.files or rec.json_body is not None)

    def body(self, request_body: Any) -> None:
        rec = self.rec
        if request_body is None:
            if self.has_body() or rec.content_type:
                self.fail(
                    f"the spec defines no request body, but one was sent ({rec.content_type})"
                )
            return
        content = {_media(k): v for k, v in self.spec.resolve(request_body)["content"].items()}
        if not rec.content_type:
            if self.spec.resolve(request_body).get("required") or self.has_body():
                self.fail(f"no Content-Type; the spec takes {', '.join(content)}")
            return
        media = _media(rec.content_type)
        if media not in content:
            self.fail(f"Content-Type {media} is not one the spec takes ({', '.join(content)})")
            return
        schema = content[media].get("schema", {})
        if media in FORM_TYPES:
            self.form(self.spec.flatten(schema))
        elif media == "application/json":
            self.json(rec.json_body, schema, "body")

    def form(self, schema: _Schema, extra: Mapping[str, Any] | None = None) -> None:
        props = dict(schema.properties) | dict(extra or {})
        seen: set[str] = set()
        for name, value in self.rec.form:
            seen.add(name)
            prop = props.get(name)
            if prop is None:
                self.fail(f"field {name!r} is not in {schema.name}")
                continue
            prop = self.spec.resolve(prop)
            if prop.get("format") == "binary":
                self.fail(f"field {name!r} must be sent as a file part")
            else:
                self.value(f"field {name}", value, prop, text=True)
        for upload in self.rec.files:
            seen.add(upload.field)
            prop = props.get(upload.field)
            if prop is None:
                self.fail(f"file field {upload.field!r} is not in {schema.name}")
            elif self.spec.resolve(prop).get("format") != "binary":
                self.fail(f"field {upload.field!r} is not a file in {schema.name}")
        for name in sorted(schema.required - seen):
            self.fail(f"{schema.name} requires {name!r}")

    def json(self, value: Any, schema: Any, where: str) -> None:
        schema = self.spec.resolve(schema)
        if "allOf" in schema or "properties" in schema or schema.get("type") == "object":
            flat = self.spec.flatten(schema)
            if not isinstance(value, dict):
                self.fail(f"{where} must be a JSON object")
                return
            for key, sub in value.items():
                if key not in flat.properties:
                    if flat.properties:
                        self.fail(f"{where}.{key} is not in the spec's {flat.name}")
                    continue
                self.json(sub, flat.properties[key], f"{where}.{key}")
            for key in sorted(flat.required - set(value)):
                self.fail(f"{where}.{key} is required")
        elif schema.get("type") == "array":
            if not isinstance(value, list):
                self.fail(f"{where} must be a JSON array")
                return
            for i, item in enumerate(value):
                self.json(item, schema.get("items", {}), f"{where}[{i}]")
        elif schema.get("format") == "binary":
            self.fail(f"{where} is a file; it cannot travel in JSON")
        else:
            self.value(where, value, schema, text=False)

    # -- the parts the spec only points at --

    def authorize(self) -> None:
        self.where = f"{self.rec.method} {self.spec.authorize_path}"
        if self.rec.method != "GET":
            self.fail("the authorization URL is opened with GET (in a browser)")
        params = self.spec.doc["components"]["parameters"]
        allowed: dict[str, Mapping[str, Any]] = {
            name: params[name]
            for name in ("client_id", "redirect_uri", "response_type", "scope", "state")
        }
        allowed["code_challenge"] = {"schema": {"type": "string"}}
        allowed["code_challenge_method"] = {"schema": {"type": "string", "enum": ["S256"]}}
        self.query(allowed, paging=False)
        for name in ("client_id", "redirect_uri", "response_type", "code_challenge"):
            if name not in self.rec.query:
                self.fail(f"{name} is required")
        if "code_challenge_method" not in self.rec.query:
            self.fail("code_challenge_method=S256 is required (PKCE)")

    def token(self) -> None:
        rec = self.rec
        self.where = f"{rec.method} {self.spec.token_path}"
        if rec.method != "POST":
            self.fail("the token endpoint takes POST")
            return
        if rec.query:
            self.fail(f"credentials belong in the body, not the query ({', '.join(rec.query)})")
        if not rec.content_type or _media(rec.content_type) != "application/x-www-form-urlencoded":
            self.fail(f"send application/x-www-form-urlencoded (RFC 6749), not {rec.content_type}")
            return
        schema = self.spec.flatten({"$ref": "#/components/schemas/OAuthToken"})
        self.form(schema, {"code_verifier": {"type": "string"}})
        fields = {name for name, _ in rec.form}
        grant = dict(rec.form).get("grant_type")
        needs = {
            "authorization_code": ("code", "redirect_uri", "code_verifier"),
            "refresh_token": ("refresh_token", "redirect_uri"),
        }.get(grant or "", ())
        for name in needs:
            if name not in fields:
                self.fail(f"grant_type={grant} requires {name!r}")

    def sign_out(self) -> None:
        rec = self.rec
        if not rec.content_type and not self.has_body():
            return
        if not rec.content_type or _media(rec.content_type) != "application/json":
            self.fail(f'send {{"access_token": …}} as application/json, not {rec.content_type}')
            return
        body = rec.json_body
        if not isinstance(body, dict) or set(body) != {"access_token"}:
            self.fail(f'the body must be {{"access_token": "…"}}, got {body!r}')


def check_request(rec: Recorded, spec: Spec | None = None) -> list[str]:
    """Problems with `rec` under SoundCloud's spec; [] when it is a request the spec documents."""
    return _Checker(spec or load_spec(), rec).run()
