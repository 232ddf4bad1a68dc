"""Records: every record's constructor, slots and fields agree, and a record behaves like a frozen dataclass."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import vfplugin
from vfplugin import record as record_module
from vfplugin.record import Record

pytestmark = pytest.mark.pure


def all_records() -> list[type[Record]]:
    # the package's own modules, where records live; not vfplugin.commands: importing its submodules by hand
    # would put each in the place of the helper function of the same name in vfplugin/commands/__init__.py
    for module in pkgutil.iter_modules(vfplugin.__path__, "vfplugin."):
        if not module.ispkg:
            importlib.import_module(module.name)
    found, todo = [], list(Record.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted((c for c in found if c.__module__.startswith("vfplugin.")), key=lambda c: c.__qualname__)


RECORDS = all_records()


def test_records_are_found():
    names = {cls.__name__ for cls in RECORDS}
    assert {"PciAddress", "NicRequest", "Config", "Want", "Lease", "Event", "VF", "PF"} <= names


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_a_records_constructor_slots_and_fields_agree(cls):
    slots = tuple(name for klass in reversed(cls.__mro__) for name in vars(klass).get("__slots__", ()))
    assert cls._fields == slots
    # declared by its fields alone: no hand-written __slots__ or __init__ to drift from the annotations
    assert cls.__init__.__code__.co_filename == record_module.__file__
    assert tuple(vars(cls)["__annotations__"]) == vars(cls)["__slots__"]
    assert set(cls._defaults) <= set(cls._fields)
    # every argument lands in its own field, by keyword and by position
    values = {name: f"value-of-{name}" for name in cls._fields}
    record = cls(**values)
    assert {name: getattr(record, name) for name in cls._fields} == values
    assert cls(*values.values()) == record and hash(cls(*values.values())) == hash(record)
    with pytest.raises(AttributeError, match="read-only"):
        setattr(record, cls._fields[0], "changed")
    with pytest.raises(AttributeError):
        record.not_a_field = 1  # type: ignore[attr-defined]


class Point(Record):
    x: int
    y: int = 0
    label: str | None = None


def test_a_record_is_declared_by_its_fields_once():
    assert Point.__slots__ == ("x", "y", "label") and Point._defaults == {"y": 0, "label": None}
    assert Point(1) == Point(x=1, y=0, label=None) != Point(1, 2)
    assert repr(Point(1, label="a")) == "Point(x=1, y=0, label='a')"
    assert Point(label="a", x=1) == Point(1, 0, "a")
    with pytest.raises(TypeError, match="Point\\(\\) missing required arguments: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Point\\(\\) got an unexpected keyword argument 'z'"):
        Point(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Point\\(\\) got multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="Point\\(\\) takes 3 positional arguments but 4 were given"):
        Point(1, 2, "a", 4)  # type: ignore[call-arg]
    with pytest.raises(AttributeError, match="Point.x is read-only"):
        del Point(1).x


def test_a_field_without_a_default_cannot_follow_one_with_a_default():
    with pytest.raises(TypeError, match="Bad.y: a field without a default follows one with a default"):
        class Bad(Record):
            x: int = 0
            y: int


def test_a_record_subclass_adds_its_fields_after_its_bases():
    class Labelled(Point):
        colour: str = "red"

    assert Labelled._fields == ("x", "y", "label", "colour") and Labelled.__slots__ == ("colour",)
    assert Labelled(1, colour="blue").colour == "blue" and Labelled(1).y == 0
