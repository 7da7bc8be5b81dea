// One pack's cells under a header with its spread.
pragma ComponentBehavior: Bound
import QtQuick
import Victron.VenusOS
import "Format.js" as Format

Item {
	id: box

	required property string serviceUid
	required property int pack
	readonly property string base: box.serviceUid + "/Parallel/Battery" + box.pack + "/"
	readonly property int cellCount: cellCountItem.valid ? cellCountItem.value : 0
	readonly property int margin: Theme.geometry_page_content_horizontalMargin

	objectName: "cells" + box.pack
	width: ListView.view ? ListView.view.width : 0
	height: column.height + 2 * Theme.geometry_listItem_content_verticalMargin

	VeQuickItem { id: cellCountItem; uid: box.base + "CellCount" }
	VeQuickItem { id: highest; uid: box.base + "MaxCellVoltage" }
	VeQuickItem { id: lowest; uid: box.base + "MinCellVoltage" }

	// Inset from the page edges like the other list items.
	Rectangle {
		anchors { fill: parent; leftMargin: box.margin; rightMargin: box.margin }
		color: Theme.color_listItem_background
		radius: Theme.geometry_listItem_radius
	}

	Column {
		id: column
		x: 2 * box.margin
		y: Theme.geometry_listItem_content_verticalMargin
		width: box.width - 4 * box.margin
		spacing: Theme.geometry_gradientList_spacing

		Text {
			objectName: "cellsHeader" + box.pack
			width: parent.width
			color: Theme.color_font_primary
			font.pixelSize: Theme.font_size_body1
			text: "Pack " + box.pack + "  ·  " + (box.cellCount
					? box.cellCount + " cells  ·  " + Format.number(lowest, 3, "") + " – "
						+ Format.number(highest, 3, " V")
						+ (highest.valid && lowest.valid
							? "  ·  Δ " + Math.round((highest.value - lowest.value) * 1000) + " mV" : "")
					: "offline")
		}
		Flow {
			id: flow
			width: parent.width
			Repeater {
				model: box.cellCount
				delegate: CellLabel {
					required property int index
					serviceUid: box.serviceUid
					pack: box.pack
					cell: index + 1
					highestItem: highest
					lowestItem: lowest
					columnWidth: Math.floor(flow.width / 8) // 16S packs show as two rows of eight
				}
			}
		}
	}
}
