//! The hall's fake BMCs: they log the boots, power-offs and TPM clears the engine asks for; a planted dead BMC
//! times out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kiln_bmc::{
    Bmc, BmcError, BootDevice, BootOverride, LogEntry, PowerAction, PowerState, SystemInventory,
    VirtualMediaSlot,
};
use kiln_inventory::Node;
use kiln_provisioner::lifecycle::BmcConnector;

use crate::lifecycle_support::Faults;

#[derive(Debug, Default)]
pub struct FakeBmcState {
    pub power: HashMap<String, PowerState>,
    pub next_boot: HashMap<String, BootDevice>,
    /// Boots not yet answered by the player: (serial, device).
    pub boots: Vec<(String, BootDevice)>,
    /// TPM clears asked, by serial.
    pub tpm_clears: HashMap<String, u32>,
    /// Power-offs asked, by serial.
    pub power_offs: HashMap<String, u32>,
}

/// The BMCs of the hall.
#[derive(Debug, Clone, Default)]
pub struct FakeBmcs {
    pub state: Arc<Mutex<FakeBmcState>>,
    pub faults: Arc<RwLock<Faults>>,
}

struct FakeBmc {
    serial: String,
    addr: String,
    state: Arc<Mutex<FakeBmcState>>,
    tpm_offered: bool,
}

fn unsupported(addr: &str, what: &str) -> BmcError {
    BmcError::Unsupported {
        addr: addr.into(),
        what: what.into(),
    }
}

#[async_trait::async_trait]
impl Bmc for FakeBmc {
    fn addr(&self) -> &str {
        &self.addr
    }
    async fn power_state(&self) -> Result<PowerState, BmcError> {
        let state = self.state.lock().expect("lock");
        Ok(*state.power.get(&self.serial).unwrap_or(&PowerState::Off))
    }
    async fn set_power(&self, action: PowerAction) -> Result<(), BmcError> {
        let mut state = self.state.lock().expect("lock");
        match action {
            PowerAction::ForceOff | PowerAction::SoftOff => {
                state.power.insert(self.serial.clone(), PowerState::Off);
                *state.power_offs.entry(self.serial.clone()).or_default() += 1;
            }
            _ => {
                state.power.insert(self.serial.clone(), PowerState::On);
                if let Some(device) = state.next_boot.remove(&self.serial) {
                    state.boots.push((self.serial.clone(), device));
                }
            }
        }
        Ok(())
    }
    async fn set_boot(&self, boot: BootOverride) -> Result<(), BmcError> {
        let mut state = self.state.lock().expect("lock");
        state.next_boot.insert(self.serial.clone(), boot.device);
        Ok(())
    }
    async fn virtual_media(&self) -> Result<Vec<VirtualMediaSlot>, BmcError> {
        Err(unsupported(&self.addr, "virtual media"))
    }
    async fn insert_media(&self, _slot: Option<&str>, _url: &str) -> Result<(), BmcError> {
        Err(unsupported(&self.addr, "virtual media"))
    }
    async fn eject_media(&self, _slot: Option<&str>) -> Result<(), BmcError> {
        Err(unsupported(&self.addr, "virtual media"))
    }
    async fn inventory(&self) -> Result<SystemInventory, BmcError> {
        Ok(SystemInventory {
            manufacturer: Some("Fake".into()),
            model: Some("HGX".into()),
            serial: Some(self.serial.clone()),
            ..SystemInventory::default()
        })
    }
    async fn read_log(&self) -> Result<Vec<LogEntry>, BmcError> {
        Ok(Vec::new())
    }
    async fn clear_log(&self) -> Result<(), BmcError> {
        Ok(())
    }
    async fn inspect(&self) -> Result<kiln_bmc::Inspection, BmcError> {
        Err(unsupported(&self.addr, "inspect"))
    }
    async fn clear_tpm(&self) -> Result<(), BmcError> {
        if !self.tpm_offered {
            return Err(unsupported(&self.addr, "TPM clear"));
        }
        let mut state = self.state.lock().expect("lock");
        *state.tpm_clears.entry(self.serial.clone()).or_default() += 1;
        Ok(())
    }
}

#[async_trait::async_trait]
impl BmcConnector for FakeBmcs {
    async fn connect(&self, node: &Node) -> Result<Box<dyn Bmc>, BmcError> {
        if self
            .faults
            .read()
            .expect("lock")
            .dead_bmc
            .contains(&node.serial)
        {
            return Err(BmcError::Timeout {
                addr: node.bmc.address.clone(),
                timeout: Duration::from_secs(10),
            });
        }
        let tpm_offered = self
            .faults
            .read()
            .expect("lock")
            .tpm_offered
            .contains(&node.serial);
        Ok(Box::new(FakeBmc {
            serial: node.serial.clone(),
            addr: node.bmc.address.clone(),
            state: self.state.clone(),
            tpm_offered,
        }))
    }
}
