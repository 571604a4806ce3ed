//! `#ComputerSystem.Decommission` (Redfish 2023.3, e.g. Dell iDRAC10): kiln uses it to clear the TPM between
//! tenants, and only where the System's Actions advertise it (a BMC without it is "not offered", never guessed).

use reqwest::Method;
use serde_json::json;
use tracing::info;

use super::RedfishClient;
use crate::BmcError;

/// The decommission type that clears the TPM.
const TPM: &str = "Tpm";

impl RedfishClient {
    /// POSTs `{"DecommissionTypes": ["Tpm"]}` to the System's Decommission action and waits for its task.
    /// Unsupported when the System has no such action, or lists the types it accepts without `Tpm`.
    pub(super) async fn decommission_tpm(&self) -> Result<(), BmcError> {
        let (system, _) = self.system().await?;
        let Some(action) = system.actions.and_then(|a| a.decommission) else {
            return Err(self.unsupported("TPM clear (no ComputerSystem.Decommission action)"));
        };
        if !action.allowable_types.is_empty()
            && !action
                .allowable_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(TPM))
        {
            return Err(self.unsupported(format!(
                "TPM clear (Decommission offers {} but not Tpm)",
                action.allowable_types.join(", ")
            )));
        }
        let target = match action.target {
            Some(target) => target,
            None => format!(
                "{}/Actions/ComputerSystem.Decommission",
                self.discovery().await?.system.trim_end_matches('/')
            ),
        };
        let t = &self.transport;
        info!(bmc = %t.addr(), "decommission: TPM clear");
        let body = json!({ "DecommissionTypes": [TPM] });
        let operation = "decommission Tpm";
        let response = t
            .send_ok(Method::POST, &target, Some(&body), None, operation)
            .await?;
        self.finish(response, operation).await
    }
}
