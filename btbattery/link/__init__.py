"""BLE links to the packs: one state machine per pack (see :mod:`btbattery.link.machine`) on real bleak."""
