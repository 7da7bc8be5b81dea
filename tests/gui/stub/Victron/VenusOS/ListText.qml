import QtQuick

// gui-v2's ListText: primary text, secondary text on the right (from dataItem when not set), a caption
// below; hidden when not preferredVisible.
Rectangle {
	id: root

	property string text
	property string secondaryText: dataItem.valid ? String(dataItem.value) : ""
	property string caption
	property bool preferredVisible: true
	readonly property alias dataItem: dataItem

	visible: root.preferredVisible
	width: ListView.view ? ListView.view.width : 480
	height: root.visible ? column.height + 2 * Theme.geometry_listItem_content_verticalMargin : 0
	color: Theme.color_listItem_background
	radius: Theme.geometry_listItem_radius

	Column {
		id: column
		x: Theme.geometry_page_content_horizontalMargin
		y: Theme.geometry_listItem_content_verticalMargin
		width: root.width - 2 * Theme.geometry_page_content_horizontalMargin

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
