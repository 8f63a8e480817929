"""Fast paths for the hot parse loop (see bench/wire_bench.py for the figures).

A frozen dataclass's ``__init__`` sets every field through
``object.__setattr__`` (to get past its own frozen ``__setattr__``); a parser
that has already validated every value can build the representation more
cheaply: :func:`slot_maker` fills a plain twin class with the same slots by
ordinary stores and then gives the instance its class (the slots' descriptors
where an interpreter refuses that), about a third of the generated
constructor's cost. The representation classes have no ``__post_init__``, so
nothing is skipped; tests check that instances built either way are equal,
hashed, frozen, copied and pickled alike.

:func:`fast_init` gives a class such an ``__init__`` for every caller (the
TCP core builds a segment per segment sent): the same parameters and
defaults as the generated one, the slots filled through their descriptors.

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
    """A positional constructor for a slotted frozen dataclass that fills the slots directly.

    The instance is made as a plain (unfrozen) twin of ``cls`` with the same
    slots, filled by ordinary attribute stores, then given its class: about a
    third of the cost of a descriptor ``__set__`` call per field (a frame in
    and a segment out each build one, several per request). Where an
    interpreter refuses the class change (layouts it does not see as the
    same), the slots are filled through their descriptors instead.
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} validates in __post_init__; use its constructor")
    args = ", ".join(f"a{i}" for i in range(len(names)))
    slots = getattr(cls, "__slots__", None)
    if slots is not None and tuple(slots) == tuple(names) and cls.__bases__ == (object,):
        twin = type(f"_{cls.__name__}Twin", (), {"__slots__": tuple(names)})
        body = "".join(f"    o.{name} = a{i}\n" for i, name in enumerate(names))
        src = f"def make({args}, *, _new=_new, _twin=_twin, _cls=_cls):\n    o = _new(_twin)\n{body}    o.__class__ = _cls\n    return o\n"
        namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
        exec(src, namespace)
        make: Callable[..., T] = namespace["make"]
        try:
            probe = make(*([None] * len(names)))
        except TypeError:
            pass  # __class__ assignment refused: the descriptors below
        else:
            if type(probe) is cls:
                make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
                return make
    setters = {f"_s{i}": getattr(cls, name).__set__ for i, name in enumerate(names)}
    defaults = ", ".join(f"_s{i}=_s{i}" for i in range(len(names)))
    body = "".join(f"    _s{i}(o, a{i})\n" for i in range(len(names)))
    # Setters ride in as keyword defaults so the body reads them as fast locals.
    src = f"def make({args}, *, _new=_new, _cls=_cls, {defaults}):\n    o = _new(_cls)\n{body}    return o\n"
    namespace = {"_new": object.__new__, "_cls": cls, **setters}
    exec(src, namespace)
    make = namespace["make"]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


def fast_init(cls: type[T]) -> type[T]:
    """Give a slotted frozen dataclass an ``__init__`` with the generated one's
    parameters and plain defaults that fills the slots through their
    descriptors (a frozen dataclass's own goes through ``object.__setattr__``
    per field). Only for classes with nothing else in their ``__init__``: no
    ``__post_init__``, no default factory, no keyword-only or init=False field."""
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} validates in __post_init__; keep its __init__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    params = []
    cells: dict[str, Any] = {}
    body = []
    for i, f in enumerate(fields):
        if f.default_factory is not dataclasses.MISSING or f.kw_only or not f.init:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields")
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            cells[f"_d{i}"] = f.default
            params.append(f"{f.name}=_d{i}")
        cells[f"_s{i}"] = getattr(cls, f.name).__set__
        body.append(f"        _s{i}(self, {f.name})\n")
    # The setters and defaults are the factory's arguments, so the __init__
    # reads them as closure cells, not globals.
    src = (
        f"def factory({', '.join(cells)}):\n"
        f"    def __init__(self, {', '.join(params)}):\n{''.join(body)}"
        "    return __init__\n"
    )
    namespace: dict[str, Any] = {}
    exec(src, namespace)
    init = namespace["factory"](**cells)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 (mypy: no assigning to a method)
    return cls


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
