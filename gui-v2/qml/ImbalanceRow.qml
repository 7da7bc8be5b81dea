// One imbalance flag with the spread it is judged on.
import QtQuick
import Victron.VenusOS
import "Format.js" as Format

ListText {
	id: row

	required property string flagUid
	required property string spreadUid
	property real spreadScale: 1
	property int decimals: 0
	property string unit

	secondaryText: Format.flag(flagItem) + "  ·  spread "
			+ (spreadItem.valid ? (spreadItem.value * row.spreadScale).toFixed(row.decimals) + row.unit : "--")

	VeQuickItem {
		id: flagItem
		uid: row.flagUid
	}
	VeQuickItem {
		id: spreadItem
		uid: row.spreadUid
	}
}
