"""Fast paths for the hot parse loop (see bench/wire_bench.py for the figures).

A frozen dataclass's ``__init__`` sets every field through
``object.__setattr__`` (to get past its own frozen ``__setattr__``); a parser
that has already validated every value can fill the slots directly through
their descriptors, which halves the cost of building the representation. The
representation classes have no ``__post_init__``, so nothing is skipped; a
test checks that instances built either way are equal.

Layer: wire. Imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any, TypeVar

T = TypeVar("T")


def slot_maker(cls: type[T]) -> Callable[..., T]:
    """A positional constructor for a slotted frozen dataclass that fills the slots directly."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} validates in __post_init__; use its constructor")
    setters = {f"_s{i}": getattr(cls, name).__set__ for i, name in enumerate(names)}
    args = ", ".join(f"a{i}" for i in range(len(names)))
    defaults = ", ".join(f"_s{i}=_s{i}" for i in range(len(names)))
    body = "".join(f"    _s{i}(o, a{i})\n" for i in range(len(names)))
    # Setters ride in as keyword defaults so the body reads them as fast locals.
    src = f"def make({args}, *, _new=_new, _cls=_cls, {defaults}):\n    o = _new(_cls)\n{body}    return o\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **setters}
    exec(src, namespace)
    make: Callable[..., T] = namespace["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


def _address_int_getter() -> Callable[[IPv4Address], int]:
    # IPv4Address.__int__ is a Python-level method; its value lives in the
    # ``_ip`` slot. Use the C-level attrgetter when that holds, else int().
    try:
        getter: Callable[[IPv4Address], int] = operator.attrgetter("_ip")
        if getter(IPv4Address("1.2.3.4")) == 0x01020304:
            return getter
    except AttributeError:
        pass
    return int


address_int = _address_int_getter()
