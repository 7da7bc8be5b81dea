.pragma library
// Text for values that may be invalid: "--" rather than a made-up 0.

function number(item, decimals, unit) {
	return item.valid ? Number(item.value).toFixed(decimals) + unit : "--"
}

function flag(item) {
	return item.valid ? (item.value ? "yes" : "no") : "--"
}
