pragma Singleton
import QtQuick

// The theme values the plugin uses, valued as gui-v2's dark theme with 5-inch (800 x 480)
// typography and geometry.
QtObject {
	readonly property color color_font_primary: "#FFFFFF"
	readonly property color color_font_secondary: "#969591"
	readonly property color color_ok: "#387DC5"
	readonly property color color_critical: "#F35C58"
	readonly property color color_listItem_background: "#141414"
	readonly property int font_size_body1: 18
	readonly property int font_size_caption: 16
	readonly property int geometry_page_content_horizontalMargin: 24
	readonly property int geometry_listItem_content_verticalMargin: 12
	readonly property int geometry_listItem_radius: 8
	readonly property int geometry_gradientList_spacing: 4
}
