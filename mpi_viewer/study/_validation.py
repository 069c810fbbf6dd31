"""Pydantic validation as the program reports it: one InputError line naming the field;
unknown keys as warnings (then dropped)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from mpi_viewer.errors import InputError


def _loc(where: str, loc: tuple) -> str:
    out = where
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-wrap") or "[" in str(part):
            continue
        else:
            out += f".{part}"
    return out


def _one_line(exc: ValidationError, where: str) -> str:
    e = exc.errors(include_url=False)[0]
    msg = str(e.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    got = e.get("input")
    if e.get("type") in ("float_type", "int_type", "string_type", "bool_type", "list_type"):
        msg += f", got {type(got).__name__}"
    elif e.get("type") == "missing":
        msg = "missing"
    text = f"{_loc(where, tuple(e.get('loc', ())))}: {msg}"
    return " ".join(text.split())[:400]


def _extras(model: BaseModel, where: str, out: list[str]) -> None:
    extra = model.__pydantic_extra__
    if extra:
        out.append(f"{where}: ignored unknown key(s) {', '.join(map(repr, sorted(extra)))}")
        extra.clear()
    for name in type(model).model_fields:
        v = getattr(model, name)
        if isinstance(v, BaseModel):
            _extras(v, f"{where}.{name}", out)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                if isinstance(x, BaseModel):
                    _extras(x, f"{where}.{name}[{i}]", out)


def validate_study(cls, d: Any, *, where: str = "session", warnings: list[str] | None = None):
    """``cls.model_validate(d)`` with one-line :class:`InputError` naming the field; unknown
    keys go to ``warnings`` (and are dropped)."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(d).__name__}")
    try:
        out = cls.model_validate(d)
    except ValidationError as exc:
        raise InputError(_one_line(exc, where)) from None
    except (OverflowError, RecursionError):
        raise InputError(
            f"{where}: a number is too large or the JSON is nested too deeply"
        ) from None
    _extras(out, where, warnings if warnings is not None else [])
    return out
