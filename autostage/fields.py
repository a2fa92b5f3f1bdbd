"""Read a component's field declarations: type, bounds, default. One source for the study
check, the search space (int vs float comes from here, never from the range ends) and docs."""

from __future__ import annotations

import types
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined

SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class StudyPath:
    """Marks a str field as a path: a relative one is read from the folder of the study file
    that names it (from the current directory when given with --set), never from wherever a
    trial happens to run. `or_name`: the value may also be a name that is no path (a hub
    model id such as "gpt2"): it is resolved only if that path exists."""

    or_name: bool = False


#: a file or folder (plugins declare `path: LocalPath = Field(...)`)
LocalPath = Annotated[str, StudyPath()]
#: a local folder, or a name that is not a path (e.g. a model hub id)
PathOrName = Annotated[str, StudyPath(or_name=True)]


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str  # "int", "float", "bool", "str", "choice" (a Literal), or "list"
    choices: tuple[Any, ...] = ()  # the Literal's values
    optional: bool = False  # None is allowed
    required: bool = False
    default: Any = None
    ge: float | None = None  # inclusive lower bound (gt is folded in as "> gt")
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    description: str = ""
    path: StudyPath | None = None  # the field holds a path (`LocalPath`, `PathOrName`)

    @property
    def numeric(self) -> bool:
        return self.type in ("int", "float")

    def bounds_text(self) -> str:
        parts = []
        if self.ge is not None:
            parts.append(f">= {self.ge:g}")
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.le is not None:
            parts.append(f"<= {self.le:g}")
        if self.lt is not None:
            parts.append(f"< {self.lt:g}")
        return " and ".join(parts)

    def type_text(self) -> str:
        if self.type == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {"int": "an integer", "float": "a number", "bool": "true or false",
                    "str": "a string", "list": "a list"}[self.type]
        bounds = self.bounds_text()
        return f"{text} {bounds}" if bounds else text


class FieldTypeError(TypeError):
    """A component declares a field type autostage cannot validate or search."""


def _classify(annotation: Any) -> tuple[str, tuple[Any, ...], bool]:
    """(type, choices, optional) of an annotation, or FieldTypeError."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _classify(get_args(annotation)[0])
    if annotation in SCALARS:
        return SCALARS[annotation], (), False
    if origin is Literal:
        values = get_args(annotation)
        if all(isinstance(v, (str, int, float, bool)) for v in values):
            return "choice", values, False
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            kind, choices, _ = _classify(args[0])
            return kind, choices, True
    if origin in (list, tuple) and all(
        a in SCALARS or a is Ellipsis for a in get_args(annotation)
    ):
        return "list", (), False
    raise FieldTypeError(
        f"type {annotation!r} is not supported; use int, float, bool, str, a Literal, "
        "an optional one of those, or a list of scalars"
    )


@cache
def fields_of(cls: type) -> dict[str, FieldInfo]:
    """FieldInfo of every hyperparameter of a component class (raises FieldTypeError)."""
    out = {}
    for name, f in cls.model_fields.items():
        try:
            kind, choices, optional = _classify(f.annotation)
        except FieldTypeError as e:
            raise FieldTypeError(f"field '{name}': {e}") from None
        bounds: dict[str, float] = {}
        for m in f.metadata:
            for attr in ("ge", "gt", "le", "lt"):
                if isinstance(m, getattr(at, attr.capitalize())):
                    bounds[attr] = getattr(m, attr)
        required = f.default is PydanticUndefined and f.default_factory is None
        out[name] = FieldInfo(
            name=name,
            type=kind,
            choices=choices,
            optional=optional,
            required=required,
            default=None if required else f.get_default(call_default_factory=True),
            description=f.description or "",
            path=_path_marker(f),
            **bounds,
        )
    return out


def _path_marker(f: Any) -> StudyPath | None:
    """The StudyPath of a field declared `LocalPath` (pydantic moves it to the metadata) or
    `LocalPath | None` (it stays inside the annotation)."""
    found = [m for m in f.metadata if isinstance(m, StudyPath)]
    for arg in get_args(f.annotation):
        if get_origin(arg) is Annotated:
            found += [m for m in get_args(arg)[1:] if isinstance(m, StudyPath)]
    return found[0] if found else None


@cache
def _adapter(cls: type, name: str) -> TypeAdapter:
    f = cls.model_fields[name]
    return TypeAdapter(Annotated[f.annotation, *f.metadata] if f.metadata else f.annotation)


def check_value(cls: type, name: str, value: Any) -> str | None:
    """None when `value` is valid for field `name` of `cls`, else what is wrong."""
    try:
        _adapter(cls, name).validate_python(value, strict=_strict(cls, name, value))
    except ValidationError as e:
        info = fields_of(cls)[name]
        err = e.errors()[0]
        if err["type"] in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            return f"{value!r} is outside the plugin's bounds ({info.bounds_text()})"
        return f"expected {info.type_text()}, got {value!r}"
    return None


def _strict(cls: type, name: str, value: Any) -> bool:
    # Strict mode rejects "3" for an int and 2.5 for an int, but must still let an int
    # stand for a float (TOML writes 1 for 1.0).
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return not (fields_of(cls)[name].type == "float" and is_int)
