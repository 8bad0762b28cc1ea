"""Owner paths: who holds a container, written ``module.attr.attr['key']``.

A breadth-first walk from module globals (and the classes they define) through
attributes, instance slots and container values, bounded by a node count and a time
box. It is also how containers that gc does not track are found: a dict holding only
atomic keys and values (``{42: "done"}``) never appears in ``gc.get_objects()``, but it
is reached here through its owner. Shortest paths win, user modules before the stdlib.

The walk calls no user code: no ``getattr`` on instances (which could run
``__getattr__`` or properties), only the type's own descriptors and ``__dict__``.
"""

from __future__ import annotations

import abc
import functools
import gc
import os
import re
import sys
import sysconfig
import threading
import time
import types as _types
import weakref
from collections import deque
from typing import Any

from heapwatch._builtins import BUILTINS as __builtins__  # type: ignore[no-redef]  # noqa: F401
from heapwatch.agent import core
from heapwatch.agent.census import CONTAINER_BASES, base_len
from heapwatch.agent.naming import key_part, main_stem, module_display, name_part
from heapwatch.agent.pace import Pacer

_STDLIB_DIRS = tuple(
    p for p in {sysconfig.get_paths().get("stdlib"), sysconfig.get_paths().get("platstdlib")} if p
)
_SKIP_TYPES: tuple[type, ...] = (
    type(None), bool, int, float, complex, str, bytes, bytearray, memoryview, range,
    _types.ModuleType, _types.BuiltinFunctionType, _types.MethodType,
    _types.CodeType, _types.FrameType, _types.TracebackType, _types.GetSetDescriptorType,
    _types.MemberDescriptorType, _types.WrapperDescriptorType, _types.MethodWrapperType,
    property, staticmethod, classmethod, frozenset,
)
_FANOUT = 64
_LRU = functools._lru_cache_wrapper
# Module globals that are the import system's bookkeeping, not the module's state. Other
# dunder globals are walked: ``__warningregistry__`` (warnings keyed by their text) and a
# library's ``__registry`` are state that can grow.
_MODULE_META = frozenset({
    "__builtins__", "__spec__", "__loader__", "__path__", "__all__", "__annotations__",
    "__cached__", "__file__", "__doc__", "__name__", "__package__", "__dict__",
})
# The C type of ``cls._abc_impl`` (not exported by ``_abc``); None with the pure-Python
# ``_py_abc``, whose caches are WeakSets reached as attributes.
_ABC_DATA: type | None = type(abc.ABC.__dict__.get("_abc_impl"))
if _ABC_DATA is type(None):
    _ABC_DATA = None
ABC_CACHE = "<abc cache>"
# Attribute names that hold the size limit of the container beside them (cachetools'
# ``_Cache__maxsize``, jinja2's ``capacity``, ``max_size``, ``maxlen``...).
_BOUND_NAME = re.compile(r"(?i)(max_?size|max_?len|max_?entries|max_?items|max_?count|capacity"
                         r"|size_?limit)$")
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STACK_DEPTH = 40


def _module_rank(mod: Any) -> int:
    """0: the user's own code, 1: installed packages, 2: the stdlib and builtins."""
    path = getattr(mod, "__dict__", {}).get("__file__") if hasattr(mod, "__dict__") else None
    if not isinstance(path, str):
        return 2  # builtin modules
    if "site-packages" in path or "dist-packages" in path:
        return 1
    return 2 if path.startswith(_STDLIB_DIRS) else 0


class _TypeInfo:
    """What the walk may read on instances of one type, found once per type."""

    __slots__ = ("has_dict", "slots")

    def __init__(self, t: type) -> None:
        self.has_dict = False
        self.slots: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for klass in t.__mro__:
            kd = klass.__dict__
            d = kd.get("__dict__")
            if d is not None and not self.has_dict:
                # a getset for ordinary classes; a member for C types such as SimpleNamespace
                self.has_dict = isinstance(d, (_types.GetSetDescriptorType,
                                               _types.MemberDescriptorType))
            for name, desc in kd.items():
                if name.startswith("__"):
                    continue
                if name not in seen and isinstance(desc, _types.MemberDescriptorType):
                    seen.add(name)
                    self.slots.append((name, desc))


_NO_ITEMS: list[tuple[str, Any]] = []
_instance_attrs: Any = None  # heapwatch._native.instance_attrs, once looked up


def _native_attrs() -> Any:
    global _instance_attrs
    if _instance_attrs is None:
        mod = core.load_native()[0]
        _instance_attrs = getattr(mod, "instance_attrs", False) if mod is not None else False
    return _instance_attrs


def dict_items(obj: Any) -> list[tuple[str, Any]]:
    """The str-keyed items of an instance's ``__dict__`` (``has_dict`` types), read without
    running its code, and without creating a dict the interpreter keeps the attributes
    without (3.11+): that dict would stay for the object's life, and slow every attribute
    access on it ~3.7x (3.11) - on the long-lived objects every request touches. The native
    core reads them as the interpreter does; without it, ``__dict__`` is read as before."""
    native = _native_attrs()
    if native:
        got: list[tuple[str, Any]] | None = native(obj)
        if got is not None:
            return got
    try:
        d = object.__getattribute__(obj, "__dict__")
    except Exception:
        return _NO_ITEMS
    if type(d) is not dict:
        return _NO_ITEMS
    return [(k, v) for k, v in list(d.items()) if isinstance(k, str)]


# A path is a tuple of steps from a module: ("m", modname) then ("a", attr) for an
# attribute, ("k", key) for a dict key, ("i", n) for a position. Keys are kept only when
# they are str or int (immutable, and held by the container anyway while the entry lives).
Step = tuple[str, Any]


# What the walk may read per type, kept across walks; weak, so no class is kept alive.
_INFO_CACHE: weakref.WeakKeyDictionary[type, _TypeInfo] = weakref.WeakKeyDictionary()


class Found:
    """Containers found by the walk: id -> path text, steps, object. Cleared by the caller."""

    __slots__ = ("complete", "nodes", "objects", "paths", "steps", "texts")

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}
        self.texts: set[str] = set()  # paths given so far: hidden keys ([…]) can collide
        self.steps: dict[int, tuple[Step, ...] | None] = {}
        self.objects: dict[int, Any] = {}
        self.nodes = 0
        self.complete = True

    def clear(self) -> None:
        self.objects.clear()
        self.texts.clear()


def _lru_cache_dict(wrapper: Any) -> Any:
    """The cache dict inside an ``lru_cache`` wrapper (a C object): the dict among its
    referents that is not its ``__dict__``."""
    try:
        own = object.__getattribute__(wrapper, "__dict__")
    except Exception:
        own = None
    for ref in gc.get_referents(wrapper):
        if type(ref) is dict and ref is not own:
            return ref
    return None


def _children(obj: Any, info_cache: weakref.WeakKeyDictionary[type, _TypeInfo]
              ) -> list[tuple[str, Any, Any]]:
    t = type(obj)
    skip = _SKIP_TYPES
    out: list[tuple[str, Any, Any]] = []
    if t is _types.FunctionType:
        cells = obj.__closure__
        if cells:
            for name, cell in zip(obj.__code__.co_freevars, cells, strict=False):
                try:
                    v = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                if type(v) not in skip:
                    out.append(("c", name, v))
        return out
    if t is _LRU:
        cache = _lru_cache_dict(obj)
        if cache is not None:
            out.append(("l", None, cache))
        return out
    if t is _ABC_DATA:
        # An ABC's registry and isinstance caches: sets of weak references to classes, in
        # C; reached through gc's referents, named together.
        for i, ref in enumerate(gc.get_referents(obj)):
            if type(ref) is set:
                out.append(("x", i, ref))
        return out
    if issubclass(t, dict):
        for k, v in dict.items(obj):
            if type(v) not in skip:
                out.append(("k", k, v))
                if len(out) >= _FANOUT:
                    break
        return out
    if issubclass(t, (list, tuple, deque)):
        # through the base type: a subclass's __iter__ is the target's code (platform's
        # uname_result runs ``uname -p`` in a subprocess)
        seq = (list.__iter__(obj) if issubclass(t, list) else
               tuple.__iter__(obj) if issubclass(t, tuple) else deque.__iter__(obj))
        for i, v in enumerate(seq):
            if i >= _FANOUT:
                break
            if type(v) not in skip:
                out.append(("i", i, v))
        return out
    if issubclass(t, type):
        try:
            items = list(type.__dict__["__dict__"].__get__(obj).items())
        except Exception:
            return out
        for name, v in items:
            if type(v) not in skip and not name.startswith("__"):
                out.append(("a", name, v))
        return out
    if issubclass(t, (set, frozenset)):
        return out
    info = info_cache.get(t)
    if info is None:
        info = info_cache[t] = _TypeInfo(t)
    if info.has_dict:
        for name, v in dict_items(obj):
            if type(v) not in skip:
                out.append(("a", name, v))
    for name, desc in info.slots:
        try:
            v = desc.__get__(obj, t)
        except Exception:
            continue
        if type(v) not in skip:
            out.append(("a", name, v))
    return out


def _text(steps: list[Step], stem: str) -> str:
    out = []
    for kind, key in steps:
        if kind == "m":
            out.append(module_display(key, stem))
        elif kind == "a":
            out.append("." + name_part(key))
        elif kind == "k":
            out.append(key_part(key))
        elif kind == "c":
            out.append(f".<closure>.{name_part(key)}")
        elif kind == "l":
            out.append(".<lru_cache>")
        elif kind == "x":
            out.append("." + ABC_CACHE)
        elif kind == "t":
            out.append(f"<thread {name_part(key)}>")
        elif kind in ("f", "v"):
            out.append(f".{name_part(key)}")
        else:
            out.append(f"[{key}]")
    return "".join(out)


def discover(
    floor: int,
    budget_s: float,
    max_nodes: int,
    max_depth: int = 7,
    skip_prefix: str = "heapwatch",
    pacer: Pacer | None = None,
) -> Found:
    """Walk from module globals; return containers with ``len >= floor`` and their paths.

    The walk allocates little (parent indexes; strings only for what it finds) because
    while tracemalloc is on every allocation of the agent is traced too. With a ``pacer``
    (the agent's own thread) it leaves the GIL to the target between short slices.
    """
    found = Found()
    deadline = time.thread_time() + budget_s  # CPU time: the GIL may be shared with a busy target
    stem = main_stem()
    visited: set[int] = set()
    info_cache = _INFO_CACHE
    parent: list[int] = []
    kinds: list[str] = []
    keys: list[Any] = []
    ranked: list[tuple[int, str, Any]] = []
    for name, mod in list(sys.modules.items()):
        if mod is None or name.startswith(skip_prefix) or not isinstance(mod, _types.ModuleType):
            continue
        name = _module_name(name, mod)
        ranked.append((-1 if name == "__main__" else _module_rank(mod), name, mod))
    ranked.sort(key=lambda r: (r[0], r[1]))
    queue: deque[tuple[Any, int, int]] = deque()
    skip = _SKIP_TYPES

    def enqueue_module(name: str, mod: Any) -> None:
        if id(mod) in visited:
            return
        visited.add(id(mod))
        try:
            items = list(mod.__dict__.items())
        except Exception:
            return
        root = len(parent)
        parent.append(-1)
        kinds.append("m")
        keys.append(name)
        for attr, v in items:
            if type(v) in skip or not isinstance(attr, str) or attr in _MODULE_META:
                continue
            if isinstance(v, type) and v.__dict__.get("__module__") != name:
                continue  # a class imported from elsewhere: named where it is defined
            parent.append(root)
            kinds.append("a")
            keys.append(attr)
            queue.append((v, len(parent) - 1, 1))

    # One group at a time (the user's code, then installed packages, then the stdlib),
    # breadth-first inside each: the time box is spent where leaks usually are.
    groups: dict[float, list[tuple[str, Any]]] = {0.5: []}  # 0.5: thread stacks
    for rank, name, mod in ranked:
        groups.setdefault(max(rank, 0), []).append((name, mod))
    try:
        for group in sorted(groups):
            if group == 0.5:
                _enqueue_stacks(queue, parent, kinds, keys)
            for name, mod in groups[group]:
                enqueue_module(name, mod)
            if not _walk(queue, found, visited, parent, kinds, keys, info_cache, deadline,
                         floor, max_nodes, max_depth, skip_prefix, stem, pacer):
                break
    finally:
        queue.clear()
        keys.clear()
    return found


def _module_name(key: str, mod: Any) -> str:
    """The name to walk ``mod`` under: its own ``__name__`` when ``sys.modules`` has it
    there too, else ``key``. A module listed under two names is walked once, under the
    first, and its classes only under the name in their ``__module__``: 3.13 lists
    ``_collections_abc`` also as ``collections.abc`` (its ``__name__``), ``_frozen_importlib``
    is ``importlib._bootstrap``; walked as the alias, their classes were never reached.
    ``__main__`` stays ``__main__`` (named after the script): a spawned multiprocessing
    child lists its main module as ``__mp_main__`` too."""
    if key == "__main__":
        return key
    try:
        own = mod.__dict__.get("__name__")
    except Exception:
        return key
    if isinstance(own, str) and own != key and sys.modules.get(own) is mod:
        return own
    return key


def _thread_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for ident, thread in list(threading._active.items()):  # type: ignore[attr-defined]
        try:
            name = next((v for k, v in dict_items(thread) if k == "_name"), None)
        except Exception:
            name = None
        names[ident] = name if isinstance(name, str) else str(ident)
    return names


def _enqueue_stacks(queue: deque[tuple[Any, int, int]], parent: list[int], kinds: list[str],
                    keys: list[Any]) -> None:
    """Roots for what only a thread's stack holds: ``<thread NAME>.function.local``."""
    me = threading.get_ident()
    names = _thread_names()
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        root = len(parent)
        parent.append(-1)
        kinds.append("t")
        keys.append(names.get(ident, str(ident)))
        depth = 0
        f: Any = frame
        while f is not None and depth < _STACK_DEPTH:
            code = f.f_code
            if not code.co_filename.startswith(_PKG_DIR) and code.co_name != "<module>":
                try:
                    local_items = list(f.f_locals.items())
                except Exception:
                    local_items = []
                fnode = len(parent)
                parent.append(root)
                kinds.append("f")
                keys.append(code.co_name)
                for name, v in local_items:
                    if type(v) in _SKIP_TYPES or not isinstance(name, str):
                        continue
                    parent.append(fnode)
                    kinds.append("v")
                    keys.append(name)
                    queue.append((v, len(parent) - 1, 2))
            f = f.f_back
            depth += 1
        del f


def _walk(
    queue: deque[tuple[Any, int, int]],
    found: Found,
    visited: set[int],
    parent: list[int],
    kinds: list[str],
    keys: list[Any],
    info_cache: weakref.WeakKeyDictionary[type, _TypeInfo],
    deadline: float,
    floor: int,
    max_nodes: int,
    max_depth: int,
    skip_prefix: str,
    stem: str,
    pacer: Pacer | None = None,
) -> bool:
    """Breadth-first from what is queued; False when the time box or node cap cut it."""
    pace = pacer.step if pacer is not None else None

    def steps_of(node: int) -> tuple[list[Step], bool]:
        out: list[Step] = []
        resolvable = True
        while node >= 0:
            k = keys[node]
            if kinds[node] in ("t", "f", "v") or (kinds[node] == "k" and type(k) not in (str, int)):
                resolvable = False
            out.append((kinds[node], k))
            node = parent[node]
        out.reverse()
        return out, resolvable

    while queue:
        obj, node, depth = queue.popleft()
        oid = id(obj)
        if oid in visited:
            continue
        if isinstance(obj, type) and not _here(obj, node, parent, kinds, keys):
            continue  # a class reached through an alias: walked and named from its module
        visited.add(oid)
        found.nodes += 1
        if found.nodes & 63 == 0:
            if pace is not None:
                pace()
            if found.nodes & 255 == 0 and time.thread_time() > deadline:
                found.complete = False
                return False
        if found.nodes >= max_nodes:
            found.complete = False
            return False
        t = type(obj)
        fn = base_len(t)
        if fn is not None and fn(obj) >= floor:
            st, ok = steps_of(node)
            text = _text(st, stem)
            if text in found.texts:
                # two hidden keys ([…]) under one owner: number them in walk order
                k = 2
                while f"{text}#{k}" in found.texts:
                    k += 1
                text = f"{text}#{k}"
            found.texts.add(text)
            found.paths[oid] = text
            found.steps[oid] = tuple(st) if ok else None
            found.objects[oid] = obj
        if depth >= max_depth:
            continue
        tmod = t.__dict__.get("__module__")
        if isinstance(tmod, str) and tmod.startswith(skip_prefix):
            continue
        try:
            kids = _children(obj, info_cache)
        except RuntimeError:
            # A target thread changed it while we read it ("dictionary changed size during
            # iteration"): not walked below this time, the walk goes on.
            continue
        for kind, key, child in kids:
            if id(child) not in visited:
                parent.append(node)
                kinds.append(kind)
                keys.append(key)
                queue.append((child, len(parent) - 1, depth + 1))
    return True


def _home(cls: type) -> tuple[str, list[str]] | None:
    """Where ``cls`` is defined, as (module, qualname parts), when following them from
    ``sys.modules`` leads back to it; None for local or dynamically made classes."""
    try:
        mod_name = cls.__dict__.get("__module__")
        qual = type.__dict__["__qualname__"].__get__(cls)
    except Exception:
        return None
    if not isinstance(mod_name, str) or not isinstance(qual, str) or "<" in qual:
        return None
    parts = qual.split(".")
    obj: Any = sys.modules.get(mod_name)
    for part in parts:
        obj = _attr(obj, part) if obj is not None else None
    return (mod_name, parts) if obj is cls else None


def _here(cls: type, node: int, parent: list[int], kinds: list[str], keys: list[Any]) -> bool:
    """True when the walk reached ``cls`` at the place it is defined, or it has no such
    place: a class is named where it is defined (``collections.abc.Hashable``), not through
    whatever alias reached it first (``typing_extensions.Hashable.__origin__``)."""
    home = _home(cls)
    if home is None:
        return True
    mod_name, parts = home
    for part in reversed(parts):
        if node < 0 or kinds[node] != "a" or keys[node] != part:
            return False
        node = parent[node]
    return node >= 0 and kinds[node] == "m" and keys[node] == mod_name


def resolve(steps: tuple[Step, ...]) -> Any:
    """Follow ``steps`` from ``sys.modules`` without running user code; None when broken."""
    obj: Any = None
    for kind, key in steps:
        if kind == "m":
            obj = sys.modules.get(key)
        elif kind == "a":
            obj = _attr(obj, key)
        elif kind == "k":
            if not issubclass(type(obj), dict):
                return None
            obj = dict.get(obj, key)
        elif kind == "c":
            obj = _cell(obj, key)
        elif kind == "l":
            obj = _lru_cache_dict(obj) if type(obj) is _LRU else None
        elif kind == "x":
            refs = gc.get_referents(obj) if type(obj) is _ABC_DATA else []
            obj = refs[key] if key < len(refs) and type(refs[key]) is set else None
            refs = []
        elif kind == "i":
            t = type(obj)
            if issubclass(t, list) and key < list.__len__(obj):
                obj = list.__getitem__(obj, key)
            elif issubclass(t, tuple) and key < tuple.__len__(obj):
                obj = tuple.__getitem__(obj, key)
            elif issubclass(t, deque) and key < deque.__len__(obj):
                obj = deque.__getitem__(obj, key)
            else:
                return None
        if obj is None:
            return None
    return obj


def bound_of(obj: Any, steps: tuple[Step, ...] | None) -> int | None:
    """The most items ``obj`` can hold when that is known without running user code: a
    deque's ``maxlen``, an ``lru_cache``'s ``maxsize`` (its C ``cache_info``), or an int
    attribute named like a size limit on the object that holds it (``_Cache__maxsize``,
    ``capacity``, ``max_size``...)."""
    try:
        if isinstance(obj, deque):
            return obj.maxlen
        if not steps or len(steps) < 2:
            return None
        holder = resolve(steps[:-1])
        if holder is None:
            return None
        if steps[-1][0] == "l":
            if type(holder) is _LRU:
                size = _LRU.cache_info(holder).maxsize
                return size if isinstance(size, int) and size > 0 else None
            return None
        if steps[-1][0] != "a":
            return None
        for name, v in _own_attrs(holder):
            if type(v) is int and v > 0 and _BOUND_NAME.search(name):
                return v
    except Exception:
        return None
    return None


def _own_attrs(obj: Any) -> list[tuple[str, Any]]:
    """An instance's ``__dict__`` items and slot values, read without running its code."""
    t = type(obj)
    if issubclass(t, (type, _types.ModuleType)):
        return []
    info = _INFO_CACHE.get(t)
    if info is None:
        info = _INFO_CACHE[t] = _TypeInfo(t)
    out: list[tuple[str, Any]] = []
    if info.has_dict:
        out.extend(dict_items(obj))
    for name, desc in info.slots:
        try:
            out.append((name, desc.__get__(obj, t)))
        except AttributeError:
            continue
    return out


def _cell(fn: Any, name: str) -> Any:
    if type(fn) is not _types.FunctionType or not fn.__closure__:
        return None
    try:
        return fn.__closure__[fn.__code__.co_freevars.index(name)].cell_contents
    except (ValueError, IndexError):
        return None


def _attr(obj: Any, name: str) -> Any:
    t = type(obj)
    if issubclass(t, _types.ModuleType):
        return obj.__dict__.get(name)
    if issubclass(t, type):
        return type.__dict__["__dict__"].__get__(obj).get(name)
    for klass in t.__mro__:
        desc = klass.__dict__.get(name)
        if isinstance(desc, _types.MemberDescriptorType):
            try:
                return desc.__get__(obj, t)
            except AttributeError:
                return None
    if _TypeInfo(t).has_dict:
        return next((v for k, v in dict_items(obj) if k == name), None)
    return None


__all__ = ["ABC_CACHE", "CONTAINER_BASES", "Found", "Step", "bound_of", "discover", "resolve"]
