// The cells of every pack.
pragma ComponentBehavior: Bound
import QtQuick
import Victron.VenusOS

BankPage {
	id: root

	title: "Cells"

	GradientListView {
		objectName: "cellList"
		visible: root.isBank
		model: root.packCount
		spacing: Theme.geometry_gradientList_spacing
		header: Text {
			width: parent ? parent.width : 0
			color: Theme.color_font_secondary
			font.pixelSize: Theme.font_size_caption
			horizontalAlignment: Text.AlignHCenter
			text: "bold red: highest cell of the pack  ·  bold blue: lowest  ·  underlined *: balancing"
		}
		delegate: PackCells {
			required property int index
			serviceUid: root.serviceUid
			pack: index + 1
		}
	}
}
