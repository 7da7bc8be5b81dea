import QtQml.Models

// gui-v2's VisibleItemModel: an ObjectModel that leaves out items that are not preferredVisible.
ObjectModel {
}
