import QtQml

// velib's VeQuickItem: one path of one service, by uid.
QtObject {
	property string uid
	readonly property var value: StubBackend.values[uid]
	readonly property bool valid: value !== undefined && value !== null
}
