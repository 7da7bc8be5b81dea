"""btbattery: several JBD Bluetooth BMS packs in parallel, published as one Victron battery on D-Bus."""

__version__ = "0.1.0"
