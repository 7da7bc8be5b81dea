"""Bank alerts that need memory or time: the BMS cable alarm, the low-SoC levels and the charge request.

Pure: time is an argument. One :class:`AlertTracker` lives in the bank cycle and is updated every tick.
- ``/Alarms/BmsCable``: 1 (warning) once any configured pack has been out of the bank for BMS_CABLE_ALARM s
  (the others carry on), 2 (alarm) once no pack has been active that long. dbus-serialbattery raises its
  warning after 60 s without its one BMS; a bank of several needs the two levels to tell "a pack is lost"
  from "the bank is blind".
- ``/Alarms/LowSoc``: 1 below SOC_LOW_WARNING, 2 below SOC_LOW_ALARM (bank SoC); kept while no SoC is known.
- ``/Info/ChargeRequest``: 1 from an under-voltage event (a pack's under-voltage protection, or a cell at or
  below CELL_UNDERVOLTAGE) until the bank is recharged: its lowest cell back at the voltage where discharge
  runs at full current again (the top point of CELL_VOLTAGES_WHILE_DISCHARGING) and its SoC above
  SOC_LOW_ALARM. Venus shows the system as "Recharging" meanwhile (dbus-systemcalc-py, systemstate.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from btbattery.config import Config
from btbattery.model import BankAlerts, BankSnapshot, Protection

OK, WARNING, ALARM = 0, 1, 2
UNDER_VOLTAGE = int(Protection.CELL_UNDERVOLTAGE | Protection.PACK_UNDERVOLTAGE)


@dataclass(frozen=True, slots=True)
class _Thresholds:
    cable_after: float  # s, 0 = off
    soc_warning: float
    soc_alarm: float
    cell_undervoltage: float
    recharged_cell: float  # V, the lowest cell at which discharge is no longer tapered


def low_soc_level(soc: float | None, warning: float, alarm: float) -> int | None:
    if soc is None:
        return None
    return ALARM if soc < alarm else WARNING if soc < warning else OK


class AlertTracker:
    """Remembers when each pack was last active and whether a charge request is pending."""

    def __init__(self, config: Config, start: float) -> None:
        self._t = _Thresholds(
            config.bms_cable_alarm,
            config.soc_low_warning,
            config.soc_low_alarm,
            config.cell_undervoltage,
            max(config.cell_voltages_while_discharging),
        )
        self._start = start
        self._pack_active: dict[int, float] = {}  # pack -> last time it was active
        self._bank_active = start
        self._charge_request = False
        self._low_soc: int | None = None

    def update(self, snapshot: BankSnapshot, now: float) -> BankAlerts:
        for status in snapshot.packs:
            if status.active:
                self._pack_active[status.pack] = now
        if snapshot.active_packs:
            self._bank_active = now
        self._charge_request = self._request(snapshot)
        if snapshot.soc is not None:  # without a SoC the last level stays: no alarm clears for want of data
            self._low_soc = low_soc_level(snapshot.soc, self._t.soc_warning, self._t.soc_alarm)
        return BankAlerts(
            bms_cable=self._cable(snapshot, now),
            low_soc=self._low_soc,
            charge_request=self._charge_request,
        )

    def _cable(self, snapshot: BankSnapshot, now: float) -> int:
        after = self._t.cable_after
        if after <= 0:
            return OK
        if now - self._bank_active >= after:
            return ALARM
        lost = (now - self._pack_active.get(s.pack, self._start) >= after for s in snapshot.packs)
        return WARNING if any(lost) else OK

    def _request(self, snapshot: BankSnapshot) -> bool:
        if not snapshot.active_packs:
            return self._charge_request  # no news: a pending request stays
        low = snapshot.min_cell_voltage
        if snapshot.protection & UNDER_VOLTAGE or (low is not None and low <= self._t.cell_undervoltage):
            return True
        if not self._charge_request:
            return False
        recharged = (
            low is not None
            and low >= self._t.recharged_cell
            and snapshot.soc is not None
            and snapshot.soc > self._t.soc_alarm
        )
        return not recharged
