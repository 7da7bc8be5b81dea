import QtQuick

// gui-v2's components/DeviceListPluginPage.qml: what a device-list plugin page is given.
Page {
	required property Device device
}
