"""Reading scenario files: a strict YAML loader and one-line error messages.

Kept apart from the models so that `bot.sandbox.scenario` stays about the format itself.
Every problem becomes one line ``FILE: field.path[index]: message``; pydantic's tracebacks and
multi-line messages never reach the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ScenarioError", "format_validation_errors", "read_single_document"]


class ScenarioError(ValueError):
    """A scenario file (or several) broke the contract; one line per problem in ``problems``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class whose fields a location (minus its last part) points into."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return None
        model = _inner_model(field.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or n for n, f in model.model_fields.items())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_validation_errors(exc: ValidationError, name: str, root: type[BaseModel]) -> list[str]:
    """One line per pydantic error: ``name: loc: message``; unknown keys list the allowed ones."""
    lines: list[str] = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing":
            message = "required field is missing"
        elif kind == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            allowed = f" (allowed: {_allowed_keys(model)})" if model else ""
            message = f"unknown key{allowed}"
        elif kind in ("value_error", "assertion_error"):
            message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        else:
            message = f"{error['msg']} (got {_short(error.get('input'))})"
        where = _format_loc(loc)
        lines.append(f"{name}: {where}: {message}" if where else f"{name}: {message}")
    return lines


_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster


class _ScenarioYamlLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that keeps timestamps as strings (as Kubernetes does) and refuses duplicate keys."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden; only written keys must differ
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}invalid YAML: {' '.join(str(problem).split())}"


def read_single_document(path: Path, name: str) -> Any:
    """The one YAML document in ``path``; raise `ScenarioError` for I/O, syntax or count problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([f"{name}: cannot read: {exc.strerror or exc}"]) from None
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=_ScenarioYamlLoader) if doc is not None]
    except yaml.YAMLError as exc:
        raise ScenarioError([f"{name}: {_yaml_problem(exc)}"]) from None
    if len(documents) != 1:
        raise ScenarioError([f"{name}: expected exactly one YAML document, found {len(documents)}"])
    return documents[0]
