import QtQuick

// gui-v2's GradientListView is a ListView with faded edges.
ListView {
	clip: true
	spacing: Theme.geometry_gradientList_spacing
}
