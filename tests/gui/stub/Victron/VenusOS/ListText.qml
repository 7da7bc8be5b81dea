import QtQuick

// gui-v2's ListText: primary text, secondary text on the right (from dataItem when not set), a caption
// below, on a rounded background inset from the page edges; hidden when not preferredVisible.
Item {
	id: root

	property string text
	property string secondaryText: dataItem.valid ? String(dataItem.value) : ""
	property string caption
	property bool preferredVisible: true
	readonly property alias dataItem: dataItem
	readonly property int margin: Theme.geometry_page_content_horizontalMargin

	visible: root.preferredVisible
	width: ListView.view ? ListView.view.width : 480
	height: root.visible ? column.height + 2 * Theme.geometry_listItem_content_verticalMargin : 0

	Rectangle {
		anchors { fill: parent; leftMargin: root.margin; rightMargin: root.margin }
		color: Theme.color_listItem_background
		radius: Theme.geometry_listItem_radius
	}

	Column {
		id: column
		x: 2 * root.margin
		y: Theme.geometry_listItem_content_verticalMargin
		width: root.width - 4 * root.margin

		Item {
			width: parent.width
			height: Math.max(primary.height, secondary.height)
			Text {
				id: primary
				text: root.text
				color: Theme.color_font_primary
				font.pixelSize: Theme.font_size_body1
			}
			Text {
				id: secondary
				anchors.right: parent.right
				text: root.secondaryText
				color: Theme.color_font_secondary
				font.pixelSize: Theme.font_size_body1
			}
		}
		Text {
			width: parent.width
			visible: text.length > 0
			wrapMode: Text.Wrap
			text: root.caption
			color: Theme.color_font_secondary
			font.pixelSize: Theme.font_size_caption
		}
	}

	VeQuickItem {
		id: dataItem
	}
}
