"""A Victron BusItem tree served by one dbus-fast message handler.

Venus clients read a service the way velib's ``vedbus.py`` serves it: ``GetItems`` on ``/`` once, then
``ItemsChanged`` on ``/`` (and ``PropertiesChanged`` on single paths) from the connection that owns the
service name. This module knows nothing about batteries: it holds paths, values and texts, answers
``GetValue``/``GetText``/``SetValue``/``GetItems`` on every path, and sends one ``ItemsChanged`` per
publish cycle carrying only what changed.

One handler registered with ``bus.add_message_handler`` serves every path, so hundreds of cell paths
cost a dict entry each rather than an exported object each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar
from xml.sax.saxutils import quoteattr

from dbus_fast import BusType, ErrorType, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag, RequestNameReply

from btbattery.dbus import writer

log = logging.getLogger(__name__)

BUSITEM = "com.victronenergy.BusItem"
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"
INVALID_TEXT = "---"

# SetValue answers, as velib defines them.
SET_OK = 0
SET_NOT_WRITABLE = 1  # read-only path, or a value of the wrong type
SET_REJECTED = 2  # right type, but the path's validator said no

Value = int | float | str | None
TextFormat = Callable[[Any], str]
Validator = Callable[[Any], bool]
ChangeCallback = Callable[[str, Any], None]


def unit_text(unit: str, decimals: int = 0) -> TextFormat:
    """Text like velib drivers show it: ``53.10V``, ``12.5A``, ``87%``."""
    spec = f"{{:.{decimals}f}}{unit}"
    return spec.format


def _normalise(value: Any) -> Value:
    """Python value -> what we store: bools become ints, non-finite floats become invalid (None)."""
    if value is None or isinstance(value, str | int | float):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    raise TypeError(f"a bus item holds int, float, str or None, not {type(value).__name__}")


def _variant(value: Value) -> Variant:
    if value is None:
        return Variant("ai", [])  # velib's "invalid"
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, float):
        return Variant("d", value)
    if -(2**31) <= value < 2**31:
        return Variant("i", value)
    return Variant("x", value)


def _same(old: Value, new: Value) -> bool:
    # 1 and 1.0 compare equal but marshal differently: a type change is a change.
    return type(old) is type(new) and old == new


@dataclass(slots=True)
class Writable:
    """How a writable path accepts ``SetValue``: the accepted types, a validator, a change callback."""

    types: tuple[type, ...]
    validate: Validator | None = None
    on_change: ChangeCallback | None = None

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, self.types):
            return SET_NOT_WRITABLE
        if self.validate is not None and not self.validate(value):
            return SET_REJECTED
        return SET_OK


# How a value shows on the bus (variant, text, the ItemsChanged entry), shared by every item with the same
# text format: a cell voltage takes a few hundred values in a day, so most changes at 1 Hz find theirs made
# (building them is most of the cost of a change). Keyed by value, checked by type (1 == 1.0 == True, yet
# they marshal differently); a format's table is emptied when it outgrows RENDERED_PER_FORMAT.
Rendering = tuple[type, Variant, str, dict[str, Variant]]
_RENDERED: dict[TextFormat | None, dict[Value, Rendering]] = {}
RENDERED_PER_FORMAT = 512


class _Item:
    __slots__ = ("entry", "path", "rendered", "signal", "text", "text_format", "value", "variant", "writable")

    def __init__(
        self, path: str, text_format: TextFormat | None, writable: Writable | None, signal: bool
    ) -> None:
        self.path = path
        self.text_format = text_format
        self.rendered = _RENDERED.setdefault(text_format, {})
        self.writable = writable
        self.signal = signal  # also send PropertiesChanged on this path
        self.value: Value = None
        self.variant = _variant(None)
        self.text = INVALID_TEXT
        self.entry: dict[str, Variant] = {}
        self.set(None)

    def set(self, value: Value) -> None:
        self.value = value
        rendered = self.rendered
        known = rendered.get(value)
        if known is None or known[0] is not type(value):
            variant = _variant(value)
            text = self._format(value)
            known = (type(value), variant, text, {"Value": variant, "Text": Variant("s", text)})
            if len(rendered) >= RENDERED_PER_FORMAT:
                rendered.clear()
            rendered[value] = known
        _, self.variant, self.text, self.entry = known

    def _format(self, value: Value) -> str:
        if value is None:
            return INVALID_TEXT
        if self.text_format is None:
            return str(value)
        try:
            return self.text_format(value)
        except (TypeError, ValueError):
            return str(value)


def _valid_path(path: str) -> bool:
    if path == "/":
        return True
    if not path.startswith("/") or path.endswith("/"):
        return False
    return all(
        part and all(c.isascii() and (c.isalnum() or c == "_") for c in part) for part in path[1:].split("/")
    )


class BusItemTree:
    """Paths and values of one Victron service, served on ``bus``.

    Add every path, then ``await register(name)``: the name is requested only then, so a client that
    reacts to the name appearing finds every path in its first ``GetItems``. Values change with
    ``tree[path] = value`` or ``tree.update({...})``; inside ``with tree.batch():`` changes collect and
    leave as a single ``ItemsChanged`` when the outermost batch ends.
    """

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._items: dict[str, _Item] = {}
        self._dirty: dict[str, None] = {}  # ordered set of changed paths since the last signal
        self._all_items: writer.CachedBody | None = None  # GetItems reply body until something changes
        self._batch_depth = 0
        self._name: str | None = None
        self._serving = False
        self._closing = False
        self._lost: asyncio.Future[BaseException] | None = None
        self._watch: asyncio.Task[None] | None = None
        self.signals_sent = 0  # ItemsChanged + PropertiesChanged, for tests and the benchmark

    # -- paths and values -------------------------------------------------------------------------

    def add(
        self,
        path: str,
        value: Any = None,
        *,
        text: TextFormat | None = None,
        writable: Writable | None = None,
        signal: bool = False,
    ) -> None:
        """Declare a path. Once serving, a new path goes out in the next ``ItemsChanged``."""
        if path == "/" or not _valid_path(path):
            raise ValueError(f"not a usable D-Bus object path: {path!r}")
        if path in self._items:
            raise ValueError(f"path already exists: {path}")
        item = _Item(path, text, writable, signal)
        item.set(_normalise(value))
        self._items[path] = item
        self._all_items = None
        if self._serving:
            self._mark(path)

    def __contains__(self, path: object) -> bool:
        return path in self._items

    def __getitem__(self, path: str) -> Value:
        return self._items[path].value

    def __setitem__(self, path: str, value: Any) -> None:
        self._set(self._items[path], value)

    def _set(self, item: _Item, value: Any) -> None:
        old = item.value
        if type(old) is type(value) and old == value:
            return  # the common case at 1 Hz: most values did not move, so check before normalising
        new = _normalise(value)
        if _same(old, new):
            return
        item.set(new)
        self._mark(item.path)

    def text(self, path: str) -> str:
        return self._items[path].text

    def paths(self) -> Iterator[str]:
        return iter(self._items)

    def update(self, values: Mapping[str, Any]) -> None:
        """Set many paths and send at most one ``ItemsChanged``."""
        items, set_value = self._items, self._set
        with self.batch():
            for path, value in values.items():
                set_value(items[path], value)

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self._flush()

    def _mark(self, path: str) -> None:
        self._dirty[path] = None
        self._all_items = None
        if self._batch_depth == 0:
            self._flush()

    # -- signals ----------------------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._dirty:
            return
        changed = [self._items[p] for p in self._dirty]
        self._dirty.clear()
        if not self._serving or not self._bus.connected:
            return  # nobody can have read the old value through us; GetItems will give the new one
        self._send("/", "ItemsChanged", "a{sa{sv}}", [{item.path: item.entry for item in changed}])
        for item in changed:
            if item.signal:
                self._send(item.path, "PropertiesChanged", "a{sv}", [item.entry])

    def _send(self, path: str, member: str, signature: str, body: list[Any]) -> None:
        self._bus.send(
            Message(
                message_type=MessageType.SIGNAL,
                flags=MessageFlag.NO_REPLY_EXPECTED,
                path=path,
                interface=BUSITEM,
                member=member,
                signature=signature,
                body=body,
            )
        )
        self.signals_sent += 1

    # -- lifetime ---------------------------------------------------------------------------------

    async def register(self, name: str) -> None:
        """Start answering calls, then own ``name``. Raises if someone else already owns it."""
        self._bus.add_message_handler(self._on_message)
        self._serving = True
        self._dirty.clear()
        self._lost = asyncio.get_running_loop().create_future()
        self._watch = asyncio.create_task(self._watch_bus(), name="busitem-watch")
        reply = await self._bus.request_name(name, NameFlag.DO_NOT_QUEUE)
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            await self.close()
            raise RuntimeError(f"D-Bus name {name} is already owned by another process ({reply.name})")
        self._name = name
        log.info("serving %d paths as %s", len(self._items), name)

    async def close(self) -> None:
        """Give the name back and stop answering. The bus connection itself belongs to the caller."""
        self._closing = True
        self._serving = False
        if self._name is not None and self._bus.connected:
            try:
                await self._bus.release_name(self._name)
            except Exception as err:  # the bus may be going away under us; nothing left to release
                log.debug("releasing %s failed: %s", self._name, err)
        self._name = None
        self._bus.remove_message_handler(self._on_message)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def wait_lost(self) -> BaseException:
        """Return when the bus connection is lost without ``close()``: the caller should exit non-zero.

        A bus that really goes away (the daemon restarted) must end the service; a full socket no longer
        does (:mod:`btbattery.dbus.writer`). A service that kept running without a bus would publish nothing
        and never be restarted.
        """
        if self._lost is None:
            raise RuntimeError("register() first")
        return await asyncio.shield(self._lost)

    async def _watch_bus(self) -> None:
        error: BaseException
        try:
            await self._bus.wait_for_disconnect()
            error = ConnectionError("D-Bus connection closed")
        except Exception as err:
            error = err
        if not self._closing and self._lost is not None and not self._lost.done():
            self._serving = False
            log.error("D-Bus connection lost: %r", error)
            self._lost.set_result(error)

    # -- incoming calls ---------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> Message | bool | None:
        # Must return None for anything that is not ours, or dbus-fast swallows replies to our own calls.
        if msg.message_type is not MessageType.METHOD_CALL:
            return None
        if msg.interface == INTROSPECTABLE and msg.member == "Introspect":
            reply = self._introspect(msg)
        elif msg.interface not in (None, BUSITEM):
            return None
        else:
            method = self._methods.get(msg.member)
            if method is None and msg.interface is None:
                # dbus-fast's own fallback reads msg.interface as a string and fails on a call without one,
                # leaving the caller without an answer until its timeout: answer here.
                reply = Message.new_error(msg, ErrorType.UNKNOWN_METHOD, f"{msg.member} is not served")
            elif method is None:
                return None  # dbus-fast answers UnknownMethod
            else:
                reply = method(self, msg)
        if msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            return True
        return reply

    def _get_items(self, msg: Message) -> Message | bool:
        if msg.path != "/":
            return _unknown_method(msg)
        if msg.signature:
            return _invalid_args(msg, "GetItems takes no arguments")
        if msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            return True
        if self._all_items is None:  # marshalled once per change, not once per caller
            body = {path: item.entry for path, item in self._items.items()}
            self._all_items = writer.CachedBody("a{sa{sv}}", [body])
        reply = self._all_items.reply(self._bus, msg)
        return True if reply is None else reply

    def _get_value(self, msg: Message) -> Message:
        if msg.signature:
            return _invalid_args(msg, "GetValue takes no arguments")
        item = self._items.get(msg.path)
        if item is not None:
            return Message.new_method_return(msg, "v", [item.variant])
        subtree = self._subtree(msg.path)
        if subtree is None:
            return _unknown_object(msg)
        values = {key: item.variant for key, item in subtree}
        return Message.new_method_return(msg, "v", [Variant("a{sv}", values)])

    def _get_text(self, msg: Message) -> Message:
        if msg.signature:
            return _invalid_args(msg, "GetText takes no arguments")
        item = self._items.get(msg.path)
        if item is not None:
            return Message.new_method_return(msg, "s", [item.text])
        subtree = self._subtree(msg.path)
        if subtree is None:
            return _unknown_object(msg)
        texts = {key: item.text for key, item in subtree}
        return Message.new_method_return(msg, "v", [Variant("a{ss}", texts)])

    def _set_value(self, msg: Message) -> Message:
        item = self._items.get(msg.path)
        if item is None:
            if self._subtree(msg.path) is None:
                return _unknown_object(msg)
            return Message.new_method_return(msg, "i", [SET_NOT_WRITABLE])
        if msg.signature != "v":
            return _invalid_args(msg, f"SetValue takes one variant, not {msg.signature!r}")
        return Message.new_method_return(msg, "i", [self._accept(item, msg.body[0].value)])

    def _accept(self, item: _Item, value: Any) -> int:
        if item.writable is None:
            return SET_NOT_WRITABLE
        try:
            result = item.writable.check(value)
        except Exception:
            log.exception("validator of %s failed on %r", item.path, value)
            result = SET_REJECTED
        if result != SET_OK:
            return result
        before = item.value
        self[item.path] = value
        if item.writable.on_change is not None and not _same(before, item.value):
            try:
                item.writable.on_change(item.path, value)
            except Exception:
                log.exception("change callback of %s failed", item.path)
        return SET_OK

    _methods: ClassVar[dict[str, Callable[[BusItemTree, Message], Message]]] = {
        "GetItems": _get_items,
        "GetValue": _get_value,
        "GetText": _get_text,
        "SetValue": _set_value,
    }

    def _subtree(self, path: str) -> list[tuple[str, _Item]] | None:
        """Items under a non-leaf path with keys relative to it (velib: no leading slash), or None."""
        prefix = "/" if path == "/" else path + "/"
        found = [(p[len(prefix) :], item) for p, item in self._items.items() if p.startswith(prefix)]
        if not found and path != "/":
            return None
        return found

    def _introspect(self, msg: Message) -> Message:
        path = msg.path
        children = _children(path, self._items)
        if path not in self._items and path != "/" and not children:
            return _unknown_object(msg)
        parts = [_INTROSPECT_DOCTYPE, "<node>", _INTROSPECT_IFACES]
        parts += [f"  <node name={quoteattr(child)}/>" for child in children]
        parts.append("</node>")
        return Message.new_method_return(msg, "s", ["\n".join(parts)])


def _children(path: str, paths: Iterable[str]) -> list[str]:
    prefix = "/" if path == "/" else path + "/"
    names = {p[len(prefix) :].split("/", 1)[0] for p in paths if p.startswith(prefix)}
    return sorted(names)


_INTROSPECT_DOCTYPE = (
    '<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">'
)
_INTROSPECT_IFACES = """  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect"><arg direction="out" type="s"/></method>
  </interface>
  <interface name="com.victronenergy.BusItem">
    <method name="GetItems"><arg direction="out" type="a{sa{sv}}"/></method>
    <method name="GetValue"><arg direction="out" type="v"/></method>
    <method name="GetText"><arg direction="out" type="v"/></method>
    <method name="SetValue"><arg direction="in" type="v"/><arg direction="out" type="i"/></method>
    <signal name="ItemsChanged"><arg type="a{sa{sv}}"/></signal>
    <signal name="PropertiesChanged"><arg type="a{sv}"/></signal>
  </interface>"""


def _invalid_args(msg: Message, text: str) -> Message:
    return Message.new_error(msg, ErrorType.INVALID_ARGS, text)


def _unknown_object(msg: Message) -> Message:
    return Message.new_error(msg, ErrorType.UNKNOWN_OBJECT, f"no such path: {msg.path}")


def _unknown_method(msg: Message) -> Message:
    return Message.new_error(msg, ErrorType.UNKNOWN_METHOD, f"{msg.member} is not served on {msg.path}")


async def connect_bus(address: str | None = None) -> MessageBus:
    """Connect where Victron's own services publish.

    An explicit address wins; otherwise the session bus when ``DBUS_SESSION_BUS_ADDRESS`` is set (tests,
    demos, a laptop), else the system bus (a GX device). Every connection gets the writer that survives a
    full socket (:mod:`btbattery.dbus.writer`).
    """
    writer.install()
    if address:
        bus = MessageBus(bus_address=address)
    elif os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        bus = MessageBus(bus_type=BusType.SESSION)
    else:
        bus = MessageBus(bus_type=BusType.SYSTEM)
    return await bus.connect()
