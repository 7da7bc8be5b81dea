"""Tests use the same private dbus-daemon helper as the demo."""

from btbattery.sim.privatebus import PrivateBus, bus_env

__all__ = ["PrivateBus", "bus_env"]
