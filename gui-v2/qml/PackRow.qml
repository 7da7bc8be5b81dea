// One pack in the pack table: link state, V, A, SoC, then temperature, FETs, protection and radio.
import QtQuick
import Victron.VenusOS
import "Format.js" as Format

ListText {
	id: row

	required property string serviceUid
	required property int pack
	readonly property string base: row.serviceUid + "/Parallel/Battery" + row.pack + "/"
	readonly property bool online: connected.valid && connected.value === 1

	objectName: "pack" + row.pack
	text: "Pack " + row.pack + "  ·  " + (linkState.valid ? linkState.value : "--")
	secondaryText: row.online
			? Format.number(voltage, 2, " V") + "   " + Format.number(current, 1, " A") + "   "
				+ Format.number(soc, 0, " %")
			: "offline"
	caption: [
		Format.number(temperature, 1, " °C"),
		"charge " + row.fet(chargeFet) + ", discharge " + row.fet(dischargeFet),
		protection.valid ? (protection.value.length ? protection.value : "no protection") : "protection --",
		Format.number(rssi, 0, " dBm"),
		"link " + Format.number(linkQuality, 0, " %"),
	].join("  ·  ")

	function fet(item: VeQuickItem): string {
		return item.valid ? (item.value ? "on" : "OFF") : "--"
	}

	VeQuickItem { id: connected; uid: row.base + "Connected" }
	VeQuickItem { id: linkState; uid: row.base + "LinkState" }
	VeQuickItem { id: voltage; uid: row.base + "Voltage" }
	VeQuickItem { id: current; uid: row.base + "Current" }
	VeQuickItem { id: soc; uid: row.base + "Soc" }
	VeQuickItem { id: temperature; uid: row.base + "Temperature" }
	VeQuickItem { id: chargeFet; uid: row.base + "ChargeFet" }
	VeQuickItem { id: dischargeFet; uid: row.base + "DischargeFet" }
	VeQuickItem { id: protection; uid: row.base + "Protection" }
	VeQuickItem { id: rssi; uid: row.base + "Rssi" }
	VeQuickItem { id: linkQuality; uid: row.base + "LinkQuality" }
}
