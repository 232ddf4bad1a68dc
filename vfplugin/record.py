"""``Record``: typed, read-only value classes declared by their fields alone, without ``dataclasses``.

The value types on the hook's path (PCI address, config, request, lease...) are records, not dataclasses: the
hook imports them on every start and stop of a vfplugin domain, and ``dataclasses`` would cost it 14 ms each
time (its import pulls in inspect and ast), half of the hook's whole run (bench/bench_hook.py). A record
states each field once, as a class annotation with its default if it has one::

    class Want(Record):
        vf: str
        nic_id: str | None  # None: an adopted hand-written hostdev
        mac: str | None = None

and gets ``__slots__``, an ``__init__`` taking the fields in order (by position or keyword), equality,
hashing and repr from them; like a frozen dataclass, a field is set once and never changed. Type checkers see
the same constructor through ``dataclass_transform`` (PEP 681). Records serve where start-up counts (the hooks,
``vfctl list`` and ``metrics``); other modules keep dataclasses. Standard library only, nothing imported at all.
"""

from __future__ import annotations

from _operator import attrgetter  # built in (operator.py itself would be one more module to load)

TYPE_CHECKING = False  # typing.TYPE_CHECKING would import typing: the hook avoids it (bench_hook)
if TYPE_CHECKING:
    from typing import Any, ClassVar, dataclass_transform
else:
    def dataclass_transform(**_: object) -> object:
        return lambda cls: cls


@dataclass_transform(frozen_default=True)
class _RecordType(type):
    """Turns the field annotations of a record's class body into its slots and its ``__init__``."""

    _fields: tuple[str, ...]  # every field, in constructor order
    _defaults: dict[str, object]
    _get: Any  # record -> the tuple of its fields' values (_values_of)

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> _RecordType:
        inherited: tuple[str, ...] = ()
        for base in bases:
            inherited += getattr(base, "_fields", ())
        if not bases:  # Record itself
            cls = super().__new__(mcs, name, bases, ns)
            cls._fields, cls._defaults, cls._get = (), {}, staticmethod(_values_of(()))
            return cls
        # With ``from __future__ import annotations`` these are strings: nothing is evaluated or imported.
        own = tuple(k for k, v in ns.get("__annotations__", {}).items() if not str(v).startswith("ClassVar"))
        defaults = {k: ns.pop(k) for k in own if k in ns}  # a class value would hide the slot
        ns["__slots__"] = own
        cls = super().__new__(mcs, name, bases, ns)
        cls._fields = fields = inherited + own
        for base in cls.__mro__[1:]:
            defaults = {**getattr(base, "_defaults", {}), **defaults}
        cls._defaults = defaults
        cls._get = staticmethod(_values_of(fields))
        if "__init__" not in ns:
            cls.__init__ = _init(cls, fields, defaults)  # type: ignore[misc]
        return cls


_MISSING = object()


def _values_of(fields: tuple[str, ...]) -> Any:
    """``self -> tuple of the fields' values``, in C: records are dict keys and set members (PCI addresses,
    leases), so equality and hashing run thousands of times in the allocator."""
    if not fields:
        return lambda self: ()
    getter = attrgetter(*fields)
    if len(fields) == 1:
        return lambda self: (getter(self),)
    return getter


def _init(cls: type, fields: tuple[str, ...], defaults: dict[str, object]) -> Any:
    """``__init__(self, *fields)``: with every field given by position (vfplugin's own hot paths) it is a
    loop over the slots' descriptors, faster than assignments through the read-only ``__setattr__``;
    keywords and defaults go through ``_bind``. No source is compiled (``exec`` would cost each class a
    fraction of a millisecond, on every hook run)."""
    required = len(fields) - len(defaults)
    if any(name not in defaults for name in fields[required:]):
        late = next(name for name in fields[required:] if name not in defaults)
        raise TypeError(f"{cls.__name__}.{late}: a field without a default follows one with a default")
    setters = tuple(getattr(cls, name).__set__ for name in fields)  # the slots' member descriptors
    tail = tuple(defaults[name] for name in fields[required:])
    count, name = len(fields), cls.__name__

    def __init__(self: Record, *args: object, **kwargs: object) -> None:
        if kwargs or len(args) != count:
            try:  # every field given, some by keyword (sysfs, the ledger): no binding of defaults needed
                if len(args) + len(kwargs) != count:
                    raise KeyError
                args += tuple([kwargs[key] for key in fields[len(args):]])
            except KeyError:  # defaults, or a mistake that _bind names as Python would
                args = _bind(name, fields, required, tail, args, kwargs)
        for set_value, value in zip(setters, args):
            set_value(self, value)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _bind(
    name: str, fields: tuple[str, ...], required: int, tail: tuple[object, ...], args: tuple[object, ...],
    kwargs: dict[str, object],
) -> tuple[object, ...]:
    """The values of ``fields`` from positional and keyword arguments and defaults, as Python would bind them."""
    if len(args) > len(fields):
        raise TypeError(f"{name}() takes {len(fields)} positional arguments but {len(args)} were given")
    values = list(args) + [_MISSING] * (len(fields) - len(args))
    for key, value in kwargs.items():
        if key not in fields:
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
        index = fields.index(key)
        if index < len(args):
            raise TypeError(f"{name}() got multiple values for argument {key!r}")
        values[index] = value
    for index in range(len(args), len(fields)):
        if values[index] is _MISSING:
            if index < required:
                missing = [f for i, f in enumerate(fields[:required]) if values[i] is _MISSING]
                raise TypeError(f"{name}() missing required arguments: {', '.join(map(repr, missing))}")
            values[index] = tail[index - required]
    return tuple(values)


class Record(metaclass=_RecordType):
    __slots__ = ()
    if TYPE_CHECKING:
        _fields: ClassVar[tuple[str, ...]]
        _defaults: ClassVar[dict[str, object]]
        _get: ClassVar[Any]

    def _values(self) -> tuple[object, ...]:
        values: tuple[object, ...] = self._get(self)
        return values

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._get(self))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            raise AttributeError(f"{type(self).__name__}.{name} is read-only")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__}.{name} is read-only")
