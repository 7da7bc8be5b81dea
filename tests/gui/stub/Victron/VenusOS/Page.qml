import QtQuick

// gui-v2's Page: a full-screen item with a title.
FocusScope {
	property string title
}
