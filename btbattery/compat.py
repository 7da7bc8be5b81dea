"""Every key of dbus-serialbattery's ``config.default.ini``, so a serialbattery user's config.ini starts here.

Source: mr-manuel/venus-os_dbus-serialbattery, ``dbus-serialbattery/config.default.ini`` at commit 358d3c7
(DRIVER_VERSION 2.1.20260729dev), 121 keys in file order. Only the names are taken: what each key does here
is decided by :mod:`btbattery.config`. A key of this table that ``config.KEYS`` also knows is implemented
(same name, same meaning, except where the note says how it differs); the others are accepted and named in
one warning as unused. Keys that are neither stay errors with the nearest-key hint.

The note is empty where the meaning is the same here (or the key is unused); otherwise it says what differs,
for the default config, the README and the error messages.
"""

from __future__ import annotations

SERIALBATTERY_SOURCE = "dbus-serialbattery 2.1.20260729dev (commit 358d3c7), config.default.ini"

_PER_BANK = (
    "the whole bank's limit here (a pack's own is MAX_PACK_{}_CURRENT); one battery's in serialbattery"
)

SERIALBATTERY_KEYS: dict[str, str] = {
    "LOGGING": "",
    "MAX_BATTERY_CHARGE_CURRENT": _PER_BANK.format("CHARGE"),
    "MAX_BATTERY_DISCHARGE_CURRENT": _PER_BANK.format("DISCHARGE"),
    "MIN_CELL_VOLTAGE": (
        "the CVL floor as in serialbattery, and also the low-voltage limit here (cells x this is "
        "/Info/BatteryLowVoltage)"
    ),
    "MAX_CELL_VOLTAGE": "",
    "FLOAT_CELL_VOLTAGE": "",
    "SOC_RESET_CELL_VOLTAGE": "",
    "SOC_RESET_AFTER_DAYS": (
        "counted from the first start here; serialbattery charges at once when none was reached yet"
    ),
    "SOC_CALCULATION": "",
    "CURRENT_REPORTED_BY_BMS": "",
    "CURRENT_MEASURED_BY_USER": "",
    "BLUETOOTH_BMS": "",
    "BLUETOOTH_USE_POLLING": "",
    "BLUETOOTH_FORCE_RESET_BLE_STACK": "",
    "BLUETOOTH_USE_USB": "",
    "CAN_PORT": "",
    "SERIAL_STARTER_ENABLED": "",
    "BATTERY_ADDRESSES": (
        "the packs' Bluetooth MAC addresses here; "
        "the Modbus addresses (0x01, ...) of a daisy chain in serialbattery"
    ),
    "BLOCK_ON_DISCONNECT": (
        "judged for the whole bank here (no pack with fresh data); with False only discharge rides through, "
        "charging stops at once (a silent pack may have opened its FETs)"
    ),
    "BLOCK_ON_DISCONNECT_TIMEOUT_MINUTES": "",
    "BLOCK_ON_DISCONNECT_VOLTAGE_MIN": "",
    "BLOCK_ON_DISCONNECT_VOLTAGE_MAX": "",
    "BMS_CABLE_ALARM": "True/False as in serialbattery (alarm after 60 s), or a number of seconds here",
    "EXTERNAL_SENSOR_DBUS_DEVICE": "",
    "EXTERNAL_SENSOR_DBUS_PATH_CURRENT": "",
    "EXTERNAL_SENSOR_DBUS_PATH_SOC": "",
    "CHARGE_MODE": "",
    "CVL_RECALCULATION_EVERY": "",
    "CVL_RECALCULATION_ON_MAX_PERCENTAGE_CHANGE": "",
    "CVL_RECOVERY_HOLD_SEC": "",
    "CVL_RECOVERY_RATE_V_PER_SEC": "",
    "CVCM_ENABLE": "",
    "SWITCH_TO_FLOAT_WAIT_FOR_SEC": "",
    "SWITCH_TO_FLOAT_CELL_VOLTAGE_DIFF": "",
    "SWITCH_TO_FLOAT_CELL_VOLTAGE_DEVIATION": "",
    "SWITCH_TO_BULK_SOC_THRESHOLD": "",
    "SWITCH_TO_BULK_CELL_VOLTAGE_DIFF": "",
    "CVL_CONTROLLER_MODE": "",
    "CVL_ICONTROLLER_FACTOR": "",
    "CCCM_CV_ENABLE": "",
    "DCCM_CV_ENABLE": "",
    "CELL_VOLTAGES_WHILE_CHARGING": "applied to each pack's own highest cell here",
    "MAX_CHARGE_CURRENT_CV_FRACTION": "",
    "CELL_VOLTAGES_WHILE_DISCHARGING": "applied to each pack's own lowest cell here",
    "MAX_DISCHARGE_CURRENT_CV_FRACTION": "",
    "CCCM_T_ENABLE": "",
    "DCCM_T_ENABLE": "",
    "TEMPERATURES_WHILE_CHARGING": "",
    "MAX_CHARGE_CURRENT_T_FRACTION": "",
    "TEMPERATURES_WHILE_DISCHARGING": "",
    "MAX_DISCHARGE_CURRENT_T_FRACTION": "",
    "CCCM_T_MOSFET_ENABLE": "",
    "DCCM_T_MOSFET_ENABLE": "",
    "MOSFET_TEMPERATURES_WHILE_CHARGING": "",
    "MAX_CHARGE_CURRENT_T_MOSFET_FRACTION": "",
    "MOSFET_TEMPERATURES_WHILE_DISCHARGING": "",
    "MAX_DISCHARGE_CURRENT_T_MOSFET_FRACTION": "",
    "CCCM_SOC_ENABLE": "",
    "DCCM_SOC_ENABLE": "",
    "SOC_WHILE_CHARGING": "",
    "MAX_CHARGE_CURRENT_SOC_FRACTION": "",
    "SOC_WHILE_DISCHARGING": "",
    "MAX_DISCHARGE_CURRENT_SOC_FRACTION": "",
    "CHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT": "",
    "DISCHARGE_CURRENT_RECOVERY_THRESHOLD_PERCENT": "",
    "CCL_RECOVERY_HOLD_SEC": "",
    "CCL_RECOVERY_RATE_A_PER_SEC": "",
    "DCL_RECOVERY_HOLD_SEC": "",
    "DCL_RECOVERY_RATE_A_PER_SEC": "",
    "TIME_TO_GO_ENABLE": "",
    "TIME_TO_SOC_POINTS": "",
    "TIME_TO_SOC_VALUE_TYPE": "",
    "TIME_TO_SOC_RECALCULATE_EVERY": "",
    "TIME_TO_SOC_INC_FROM": "",
    "HISTORY_ENABLE": "",
    "BMS_TYPE": "",
    "EXCLUDED_DEVICES": "",
    "POLL_INTERVAL": "",
    "PUBLISH_CONFIG_VALUES": "",
    "PUBLISH_BATTERY_DATA_AS_JSON": "",
    "BATTERY_CELL_DATA_FORMAT": "",
    "MIDPOINT_ENABLE": "",
    "TEMPERATURE_SOURCE_BATTERY": "",
    "TEMPERATURE_1_NAME": "",
    "TEMPERATURE_2_NAME": "",
    "TEMPERATURE_3_NAME": "",
    "TEMPERATURE_4_NAME": "",
    "TEMPERATURE_1_ADJUST": "",
    "TEMPERATURE_2_ADJUST": "",
    "TEMPERATURE_3_ADJUST": "",
    "TEMPERATURE_4_ADJUST": "",
    "TEMPERATURE_MOS_ADJUST": "",
    "GUI_PARAMETERS_SHOW_ADDITIONAL_INFO": "",
    "GUI_INSTALL_CUSTOMIZATIONS": "",
    "TELEMETRY": "",
    "VOLTAGE_DROP": "",
    "USE_PORT_AS_UNIQUE_ID": "",
    "BATTERY_CAPACITY": "",
    "AUTO_RESET_SOC": "",
    "USE_BMS_DVCC_VALUES": "",
    "SOC_LOW_WARNING": "",
    "SOC_LOW_ALARM": "",
    "UP16S_REQUIRE_DIRECT_CONNECTION": "",
    "INVERT_CURRENT_MEASUREMENT": "",
    "GREENMETER_ADDRESS": "",
    "LIPRO_START_ADDRESS": "",
    "LIPRO_END_ADDRESS": "",
    "LIPRO_CELL_COUNT": "",
    "UBMS_CAN_MODULE_SERIES": "",
    "UBMS_CAN_MODULE_PARALLEL": "",
    "MQTT_TOPIC": "",
    "MQTT_BROKER_ADDRESS": "",
    "MQTT_BROKER_PORT": "",
    "MQTT_TLS_ENABLED": "",
    "MQTT_TLS_PATH_TO_CA": "",
    "MQTT_TLS_INSECURE": "",
    "MQTT_USERNAME": "",
    "MQTT_PASSWORD": "",
    "BMS_CAPTURE_RAW_DATA": "",
    "BMS_CAPTURE_RAW_DATA_MAX_SIZE_MB": "",
    "BMS_CAPTURE_RAW_DATA_BACKUP_COUNT": "",
}


# Keys that earlier releases of dbus-btbattery read and this one no longer does, with what took their place.
# A config.ini written for an earlier release must still start: each is accepted with one warning.
RETIRED_KEYS: dict[str, str] = {
    "CHARGE_VOLTAGE_RISE_RATE": "the CVL now rises by CVL_RECOVERY_HOLD_SEC and CVL_RECOVERY_RATE_V_PER_SEC",
}


# Keys serialbattery says to leave empty for its default: empty means the built-in default here too.
EMPTY_IS_DEFAULT = ("POLL_INTERVAL",)


def differs(key: str) -> str:
    """How ``key`` means something else here than in serialbattery ("" when it does not)."""
    return SERIALBATTERY_KEYS.get(key, "")
