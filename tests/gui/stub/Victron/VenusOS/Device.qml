import QtQml

// gui-v2's Device (src/basedevice.h): the properties a device page hands to a plugin page.
QtObject {
	property string serviceUid
	property int productId
	property string name
}
