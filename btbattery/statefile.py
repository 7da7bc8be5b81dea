"""The state file: a small JSON object under /data that survives restarts and firmware updates.

Several owners keep one key each in it (``CustomName`` from the D-Bus service, ``ChargeMode`` from the
pipeline). Every write merges its key into what is there and replaces the file atomically, so a power cut
never leaves half a file and no owner erases another's key. Writes are rare (a name set by the user, a charge
mode change), so flash wear does not matter.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_STATE_FILE = "/data/etc/dbus-btbattery/state.json"


def read_state(path: str | os.PathLike[str]) -> dict[str, object]:
    """The whole state; empty when the file is missing, unreadable (logged) or not a JSON object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("ignoring unreadable state file %s: %s", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def update_state(path: str | os.PathLike[str], key: str, value: object) -> None:
    """Set one key, keeping the others; atomic replace."""
    target = Path(path)
    data = read_state(target)
    data[key] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".state-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def charge_mode_io(
    path: str | os.PathLike[str], wall_clock: Callable[[], float] = time.time
) -> tuple[Callable[[float], object], Callable[[object, float], None]]:
    """(restore, save) for :func:`btbattery.pipeline.streams.build_pipeline`: the charge mode under the key
    ``ChargeMode``, its times converted between the pipeline's clock and the wall clock."""
    from btbattery.pipeline import chargemode

    def restore(now: float) -> chargemode.ChargeState:
        state = chargemode.from_saved(read_state(path).get("ChargeMode"), now, wall_clock())
        log.info("charge mode restored: %s", state.mode)
        return state

    def save(state: object, now: float) -> None:
        assert isinstance(state, chargemode.ChargeState)
        update_state(path, "ChargeMode", chargemode.to_saved(state, now, wall_clock()))

    return restore, save
