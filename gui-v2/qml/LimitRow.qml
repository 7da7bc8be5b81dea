// One DVCC limit and, when the service publishes it, the rule that sets it.
import QtQuick
import Victron.VenusOS
import "Format.js" as Format

ListText {
	id: row

	required property string valueUid
	property string reasonUid
	property int decimals: 1
	property string unit

	secondaryText: Format.number(valueItem, row.decimals, row.unit)
	caption: reasonItem.valid ? String(reasonItem.value) : ""

	VeQuickItem {
		id: valueItem
		uid: row.valueUid
	}
	VeQuickItem {
		id: reasonItem
		uid: row.reasonUid
	}
}
