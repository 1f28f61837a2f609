"""A section of nbgrader_config.py turned into its Configurable, a value of the wrong type named.

traitlets rejects such a value with a TraitError that names neither the file nor how to write the
value; this module says both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from traitlets import Bool, Dict, Float, Int, List, TraitError, TraitType, Unicode
from traitlets.config import Config, Configurable

from tdkit.core.errors import TdkitError

C = TypeVar("C", bound=Configurable)

# What to write, by the trait's type: traitlets' own words ("a unicode string") are not for instructors.
EXPECTED = (
    (Bool, "True or False"),
    (Int, "a whole number without quotes (e.g. 6144)"),
    (Float, "a number without quotes, with a dot for decimals (e.g. 2.5)"),
    (Unicode, "a text in quotes"),
    (Dict, "a dict, e.g. {'101234': '2026-12-06 18:00'}"),
    (List, "a list, e.g. ['a', 'b']"),
)


def expected(trait: TraitType[Any, Any]) -> str:
    return next((words for kind, words in EXPECTED if isinstance(trait, kind)), trait.info())


def configured(cls: type[C], config: Config, make: Callable[[], C] | None = None) -> C:
    """``cls(config=config)`` (or ``make()``); a value traitlets refuses is a TdkitError naming its key."""
    try:
        return make() if make is not None else cls(config=config)
    except TraitError as error:
        raise TdkitError(_culprit(cls, config) or f"nbgrader_config.py: {error}") from None


def _culprit(cls: type[Configurable], config: Config) -> str | None:
    """The first key of ``cls``'s sections (its own or a base class's) whose value traitlets refuses."""
    traits = cls.class_traits(config=True)
    for base in cls.mro():
        section = config.get(base.__name__, {}) if isinstance(base, type) else {}
        for key, value in section.items():
            if key not in traits:
                continue
            try:
                cls(config=Config({base.__name__: {key: value}}))
            except TraitError:
                return (
                    f"nbgrader_config.py: c.{base.__name__}.{key} = {value!r} is not valid: "
                    f"write {expected(traits[key])}."
                )
    return None
