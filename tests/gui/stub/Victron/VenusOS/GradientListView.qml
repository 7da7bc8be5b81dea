import QtQuick

// gui-v2's GradientListView: a ListView (BaseListView) that fills its parent, with faded edges.
ListView {
	width: parent ? parent.width : 0
	height: parent ? parent.height : 0
	clip: true
	spacing: Theme.geometry_gradientList_spacing
}
