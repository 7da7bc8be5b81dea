"""The disconnect policy: what the limits are while the whole bank is blind, and when the service stops.

dbus-serialbattery's BLOCK_ON_DISCONNECT, judged for the whole bank (no pack with fresh data):
- True: charge and discharge are blocked at once; the limits are what the other rules say (0 without data).
- False: if every pack's last cells lay inside BLOCK_ON_DISCONNECT_VOLTAGE_MIN.._MAX,
  the DCL of the last tick with fresh data is kept for BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES; it never rises
  without data. Unlike serialbattery, the CCL goes to 0 at once all the same: in a parallel bank a pack that
  went silent may have opened its FETs, and then the others would take its share.

The same policy decides what the service publishes before it releases its name on any exit (stop limits):
CCL 0, the DCL as above, and the CVL no higher than the last one published. Pure: time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

from btbattery.config import Config
from btbattery.model import BankSnapshot, ChargeLimits

STOPPING = "service stopping"


@dataclass(frozen=True, slots=True)
class _Band:
    block: bool
    timeout: float  # s
    low: float
    high: float


def cells_in_band(snapshot: BankSnapshot, low: float, high: float) -> bool:
    """Every active pack's cells strictly inside the band (unknown cells are not safe)."""
    lo, hi = snapshot.min_cell_voltage, snapshot.max_cell_voltage
    return lo is not None and hi is not None and low < lo and hi < high


class DisconnectPolicy:
    """Keeps the last limits seen with fresh data, and applies the policy once no pack is fresh."""

    def __init__(self, config: Config) -> None:
        self._band = _Band(
            config.block_on_disconnect,
            config.block_on_disconnect_timeout_minutes * 60.0,
            config.block_on_disconnect_voltage_min,
            config.block_on_disconnect_voltage_max,
        )
        self._held_dcl = 0.0  # DCL of the last tick with fresh data, when the cells were in the band
        self._blind_since: float | None = None

    def apply(self, snapshot: BankSnapshot, limits: ChargeLimits, now: float) -> ChargeLimits:
        """The limits to publish this tick (``limits`` as computed by the other rules)."""
        if any(status.fresh for status in snapshot.packs):
            self._blind_since = None
            band = self._band
            safe = not band.block and cells_in_band(snapshot, band.low, band.high)
            self._held_dcl = limits.discharge_current if safe else 0.0
            return limits
        if self._blind_since is None:
            self._blind_since = now
        dcl = self._ride_through(now)
        if dcl <= limits.discharge_current and limits.charge_current == 0.0:
            return limits
        kept = dcl > limits.discharge_current
        why = "no fresh pack: last DCL kept (BLOCK_ON_DISCONNECT False)" if kept else limits.discharge_reason
        return ChargeLimits(
            limits.charge_voltage,
            0.0,
            max(dcl, limits.discharge_current),
            (*limits.reasons, why) if kept else limits.reasons,
            "no fresh pack" if limits.charge_current else limits.charge_reason,
            why,
        )

    def _ride_through(self, now: float) -> float:
        blind = 0.0 if self._blind_since is None else now - self._blind_since
        return self._held_dcl if blind < self._band.timeout else 0.0

    def stop_limits(self, limits: ChargeLimits, now: float) -> ChargeLimits:
        """What to publish before the name goes: CCL 0, DCL per the policy, CVL no higher than ``limits``."""
        dcl = min(limits.discharge_current, self._ride_through(now))
        discharge_why = limits.discharge_reason if dcl else STOPPING
        reasons = (*limits.reasons, STOPPING)
        return ChargeLimits(limits.charge_voltage, 0.0, dcl, reasons, STOPPING, discharge_why)
