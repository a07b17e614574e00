"""'Did you mean' for a misspelt name: the closest known one (difflib), or nothing; for an unknown key of a
pydantic model, the closest key the mapping at that place takes."""
import difflib
from collections.abc import Iterable
from typing import Any, get_args, get_origin


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of `choices`, "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key(model, loc: tuple) -> str:
    """" (did you mean 'x'?); this mapping takes: ..." for the unknown key at `loc` of `model` (a pydantic
    extra_forbidden error's loc), "" when the mapping's keys cannot be told."""
    known = known_keys(model, loc[:-1])
    return did_you_mean(str(loc[-1]), known) + (f"; this mapping takes: {', '.join(known)}" if known else "")


def known_keys(model, loc: tuple) -> list[str]:
    """The keys (camelCase aliases) the mapping at `loc` of `model` accepts; [] when it cannot be told."""
    through_dict = False
    for part in loc:
        if isinstance(part, int) or through_dict:  # a list index or a dict's own key: the same model continues
            through_dict = False
            continue
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        model, through_dict = _inner_model(field.annotation) if field else (None, False)
        if model is None:
            return []
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _inner_model(annotation) -> tuple[Any, bool]:
    """(the pydantic model inside an annotation such as `X | None`, `list[X]`, `dict[str, X]`; whether via a dict)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for argument in get_args(annotation):
        model, via_dict = _inner_model(argument)
        if model is not None:
            return model, via_dict or get_origin(annotation) is dict
    return None, False
