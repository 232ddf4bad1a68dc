"""``Record``: equality, hashing, repr and read-only fields for plain classes, from their ``__slots__``.

The value types on the hook's path (PCI address, config, request, lease...) are records, not dataclasses: the
hook imports them on every start and stop of a vfplugin domain, and ``dataclasses`` would cost it 14 ms each
time (its import pulls in inspect and ast, and every class compiles its methods with exec), half of the
hook's whole run (bench/bench_hook.py). A record is a class with ``__slots__`` and a typed ``__init__``; like
a frozen dataclass, a field can be set once and never changed. Modules the hook never imports keep
dataclasses. Standard library only, nothing imported at all.
"""

from __future__ import annotations


class Record:
    __slots__: tuple[str, ...] = ()  # each record names its fields here

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            raise AttributeError(f"{type(self).__name__}.{name} is read-only")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__}.{name} is read-only")
