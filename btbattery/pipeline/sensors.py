"""Temperature sensors judged before the limits use them: which are cell sensors, which is the MOSFET's, and
which readings are faulty.

A JBD pack reports up to eight NTC readings in one list. Some boards put the MOSFET sensor first; a warm
MOSFET is not a warm cell, so it gets its own curve (MOSFET_TEMPERATURES_WHILE_*), and only the cell sensors
count for the temperature derating and the published battery temperature. A broken NTC reads nonsense
(an open circuit decodes as about -273 degC): a reading outside the plausible range, or one that jumps further
than a pack's thermal mass allows, is faulty and dropped, so one bad sensor cannot stop the whole bank. A pack
left without a plausible cell sensor is treated as "temperature unknown" by the limits.

Pure: time is an argument, the memory of last accepted values is passed in and returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from btbattery.config import Config, PackSpec

PLAUSIBLE_TEMPERATURE = (-40.0, 100.0)  # degC; outside this an NTC reading is a fault, not a temperature
# A pack has a heat capacity of tens of kJ/K: its sensors move well under 0.1 degC/s. A reading further
# than JUMP_C from the last accepted one, plus JUMP_RATE per second since then, is a glitch (a loose NTC).
JUMP_C = 5.0
JUMP_RATE = 0.5  # degC/s

# sensor number (1-based) -> (last accepted value, when)
SensorMemory = dict[int, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class PackTemperatures:
    """One pack's sensors after judgement."""

    cells: tuple[float, ...] = ()  # plausible readings of the cell sensors
    mosfet: float | None = None  # plausible MOSFET reading (None: no MOSFET sensor, or it is faulty)
    mosfet_expected: bool = False  # a MOSFET sensor is configured for this pack
    faults: tuple[int, ...] = ()  # sensor numbers whose reading was dropped as faulty

    @property
    def cells_known(self) -> bool:
        return bool(self.cells)


def sensor_roles(spec: PackSpec | None, cfg: Config, count: int) -> tuple[tuple[int, ...], int]:
    """(cell sensor numbers, MOSFET sensor number or 0) for a pack reporting ``count`` sensors."""
    mosfet = spec.mosfet_sensor if spec is not None and spec.mosfet_sensor is not None else None
    if mosfet is None:
        mosfet = cfg.mosfet_temperature_sensor
    cells = spec.cell_sensors if spec is not None and spec.cell_sensors is not None else None
    if cells is None:
        cells = cfg.cell_temperature_sensors
    if not cells:
        cells = tuple(n for n in range(1, count + 1) if n != mosfet)
    return tuple(n for n in cells if n != mosfet), mosfet


def plausible(value: float) -> bool:
    low, high = PLAUSIBLE_TEMPERATURE
    return low <= value <= high  # NaN is not


def judge_temperatures(
    temperatures: Sequence[float],
    time: float,
    roles: tuple[tuple[int, ...], int],
    memory: SensorMemory | None = None,
) -> tuple[PackTemperatures, SensorMemory]:
    """Sort one reading's sensors into cell and MOSFET readings, dropping faulty ones.

    Without ``memory`` only the range is checked (a snapshot judged on its own, as the property tests do).
    """
    cell_numbers, mosfet_number = roles
    memory = dict(memory) if memory else {}
    accepted: dict[int, float] = {}
    faults: list[int] = []
    for number, value in enumerate(temperatures, start=1):
        last = memory.get(number)
        jumped = last is not None and abs(value - last[0]) > JUMP_C + JUMP_RATE * max(time - last[1], 0.0)
        if not plausible(value) or jumped:
            faults.append(number)
            continue
        accepted[number] = value
        memory[number] = (value, time)
    cells = tuple(accepted[n] for n in cell_numbers if n in accepted)
    mosfet = accepted.get(mosfet_number) if mosfet_number else None
    result = PackTemperatures(cells, mosfet, mosfet_number > 0, tuple(faults))
    return result, memory
