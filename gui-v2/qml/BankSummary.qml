// The bank: packs active, imbalance flags with their spreads, the DVCC limits with their reasons and the
// charge mode (those two appear once the service publishes them).
import QtQuick
import Victron.VenusOS

BankPage {
	id: root

	title: "Parallel bank"

	GradientListView {
		objectName: "bankList"
		visible: root.isBank
		model: VisibleItemModel {
			ListText {
				objectName: "activePacks"
				text: "Packs active"
				secondaryText: (active.valid ? active.value : "--") + " / " + root.packCount

				VeQuickItem {
					id: active
					uid: root.uid("/Parallel/ActiveBatteries")
				}
			}
			ListText {
				objectName: "chargeMode"
				text: "Charge mode"
				dataItem.uid: root.uid("/Info/ChargeMode")
				preferredVisible: dataItem.valid
			}
			ImbalanceRow {
				objectName: "voltageImbalance"
				text: "Voltage imbalance"
				flagUid: root.uid("/Parallel/VoltageImbalance")
				spreadUid: root.uid("/Parallel/VoltageSpread")
				decimals: 3
				unit: " V"
			}
			ImbalanceRow {
				objectName: "currentImbalance"
				text: "Current imbalance"
				flagUid: root.uid("/Parallel/CurrentImbalance")
				spreadUid: root.uid("/Parallel/CurrentSpread")
				spreadScale: 100 // published as a fraction of the capacity share
				decimals: 1
				unit: " %"
			}
			ImbalanceRow {
				objectName: "socImbalance"
				text: "SoC imbalance"
				flagUid: root.uid("/Parallel/SocImbalance")
				spreadUid: root.uid("/Parallel/SocSpread")
				decimals: 0
				unit: " %"
			}
			LimitRow {
				objectName: "cvl"
				text: "Charge voltage limit (CVL)"
				valueUid: root.uid("/Info/MaxChargeVoltage")
				decimals: 2
				unit: " V"
			}
			LimitRow {
				objectName: "ccl"
				text: "Charge current limit (CCL)"
				valueUid: root.uid("/Info/MaxChargeCurrent")
				reasonUid: root.uid("/Info/ChargeLimitation")
				unit: " A"
			}
			LimitRow {
				objectName: "dcl"
				text: "Discharge current limit (DCL)"
				valueUid: root.uid("/Info/MaxDischargeCurrent")
				reasonUid: root.uid("/Info/DischargeLimitation")
				unit: " A"
			}
		}
	}
}
