// Every pack of the bank, one row each.
pragma ComponentBehavior: Bound
import QtQuick
import Victron.VenusOS

BankPage {
	id: root

	title: "Packs"

	GradientListView {
		objectName: "packList"
		visible: root.isBank
		model: root.packCount
		delegate: PackRow {
			required property int index
			serviceUid: root.serviceUid
			pack: index + 1
		}
	}
}
