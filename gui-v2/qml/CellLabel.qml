// One cell: its voltage, bold red when it is the pack's highest, bold blue when the lowest, underlined
// with a star while the BMS balances it.
import QtQuick
import Victron.VenusOS

Text {
	id: label

	required property string serviceUid
	required property int pack
	required property int cell
	required property VeQuickItem highestItem
	required property VeQuickItem lowestItem
	required property real columnWidth
	readonly property bool highest: voltage.valid && label.highestItem.valid && voltage.value === label.highestItem.value
	readonly property bool lowest: voltage.valid && label.lowestItem.valid && voltage.value === label.lowestItem.value
	readonly property bool balancing: balance.valid && balance.value === 1

	objectName: "cell" + label.pack + "_" + label.cell
	width: label.columnWidth
	text: (voltage.valid ? Number(voltage.value).toFixed(3) : "--") + (label.balancing ? "*" : "")
	font.pixelSize: Theme.font_size_caption
	font.bold: label.highest || label.lowest
	font.underline: label.balancing
	color: label.highest ? Theme.color_critical : label.lowest ? Theme.color_ok : Theme.color_font_primary

	VeQuickItem {
		id: voltage
		uid: label.serviceUid + "/Voltages/Cell" + label.pack + "_" + label.cell
	}
	VeQuickItem {
		id: balance
		uid: label.serviceUid + "/Balances/Cell" + label.pack + "_" + label.cell
	}
}
