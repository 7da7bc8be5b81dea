// What every page of the dbus-btbattery plugin shares. Product id 0xBA77 is shared by several community
// battery drivers, so a page shows nothing but a note on a service without /Parallel/TotalBatteries.
// Every value is read through the device's serviceUid ("dbus/..." on the GX display, "mqtt/..." in the
// browser and VRM console), never through a hard-coded uid.
import QtQuick
import Victron.VenusOS

DeviceListPluginPage {
	id: root

	readonly property string serviceUid: root.device.serviceUid
	readonly property bool isBank: totalBatteries.valid
	readonly property int packCount: root.isBank ? totalBatteries.value : 0

	function uid(path: string): string {
		return root.serviceUid + path
	}

	VeQuickItem {
		id: totalBatteries
		uid: root.uid("/Parallel/TotalBatteries")
	}

	Text {
		objectName: "notABank"
		anchors.centerIn: parent
		width: parent.width - 2 * Theme.geometry_page_content_horizontalMargin
		visible: !root.isBank
		wrapMode: Text.Wrap
		horizontalAlignment: Text.AlignHCenter
		color: Theme.color_font_secondary
		font.pixelSize: Theme.font_size_body1
		text: "This battery is not a dbus-btbattery parallel bank."
	}
}
