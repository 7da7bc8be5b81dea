pragma Singleton
import QtQml

// uid ("dbus/<service>/<path>") -> value; a uid that is missing is invalid, like an empty D-Bus value.
QtObject {
	property var values: ({})
}
