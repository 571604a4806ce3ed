//! cloud-init NoCloud seeds: the `meta-data`, `user-data` and `network-config` files a freshly imaged node reads
//! on first boot (from a `cidata` config partition, or over HTTP with `ds=nocloud;s=http://…/`).
//!
//! The files are YAML; every string kiln puts in them is written as a JSON string, which YAML reads verbatim,
//! so no value can break the document's structure.

use std::path::Path;

use kiln_model::MacAddr;

/// How the installed OS should run the kiln agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentService {
    /// Path of the agent binary on the imaged OS.
    pub binary: String,
    /// Provisioner base URL the agent reports to.
    pub provisioner_url: String,
    /// The node's report token.
    pub node_token: String,
}

/// One NIC to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNic {
    /// Name in the config (`prov0`, `data0`); the interface is matched by MAC, whatever the kernel names it.
    pub name: String,
    /// The NIC's MAC.
    pub mac: MacAddr,
    /// `None`: DHCP; else a static address in CIDR form (`10.0.0.5/24`).
    pub address: Option<String>,
    /// Default gateway for a static address.
    pub gateway: Option<String>,
    /// MTU, when not the default.
    pub mtu: Option<u32>,
}

/// Everything a node's seed says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCloudSeed {
    /// cloud-init instance id: change it and cloud-init runs again (kiln uses serial + image digest).
    pub instance_id: String,
    /// Hostname to set.
    pub hostname: String,
    /// The site's SSH public keys, installed for the default user.
    pub ssh_authorized_keys: Vec<String>,
    /// The kiln agent service, when the installed OS should keep reporting.
    pub agent: Option<AgentService>,
    /// NICs to configure.
    pub nics: Vec<SeedNic>,
}

fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

impl NoCloudSeed {
    /// The `meta-data` file.
    pub fn meta_data(&self) -> String {
        format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            quoted(&self.instance_id),
            quoted(&self.hostname)
        )
    }

    /// The `user-data` file (`#cloud-config`).
    pub fn user_data(&self) -> String {
        let mut out = String::from("#cloud-config\n");
        out.push_str(&format!("hostname: {}\n", quoted(&self.hostname)));
        out.push_str("ssh_pwauth: false\n");
        if !self.ssh_authorized_keys.is_empty() {
            out.push_str("ssh_authorized_keys:\n");
            for key in &self.ssh_authorized_keys {
                out.push_str(&format!("  - {}\n", quoted(key.trim())));
            }
        }
        if let Some(agent) = &self.agent {
            let unit = format!(
                "[Unit]\nDescription=kiln node agent\nAfter=network-online.target\nWants=network-online.target\n\n\
                 [Service]\nEnvironmentFile=/etc/kiln/agent.env\nExecStart={} run\nRestart=always\nRestartSec=5\n\n\
                 [Install]\nWantedBy=multi-user.target\n",
                agent.binary
            );
            let env = format!(
                "KILN_PROVISIONER_URL={}\nKILN_NODE_TOKEN={}\n",
                agent.provisioner_url, agent.node_token
            );
            out.push_str("write_files:\n");
            out.push_str("  - path: /etc/kiln/agent.env\n    permissions: \"0600\"\n");
            out.push_str(&format!("    content: {}\n", quoted(&env)));
            out.push_str(
                "  - path: /etc/systemd/system/kiln-agent.service\n    permissions: \"0644\"\n",
            );
            out.push_str(&format!("    content: {}\n", quoted(&unit)));
            out.push_str("runcmd:\n");
            out.push_str("  - [\"systemctl\", \"daemon-reload\"]\n");
            out.push_str("  - [\"systemctl\", \"enable\", \"--now\", \"kiln-agent.service\"]\n");
        }
        out
    }

    /// The `network-config` file (netplan-style version 2).
    pub fn network_config(&self) -> String {
        let mut out = String::from("version: 2\nethernets:\n");
        if self.nics.is_empty() {
            out = String::from("version: 2\nethernets: {}\n");
        }
        for nic in &self.nics {
            out.push_str(&format!("  {}:\n", quoted(&nic.name)));
            out.push_str(&format!(
                "    match:\n      macaddress: {}\n",
                quoted(&nic.mac.to_string())
            ));
            out.push_str(&format!("    set-name: {}\n", quoted(&nic.name)));
            match &nic.address {
                None => out.push_str("    dhcp4: true\n"),
                Some(address) => {
                    out.push_str("    dhcp4: false\n");
                    out.push_str(&format!("    addresses: [{}]\n", quoted(address)));
                    if let Some(gateway) = &nic.gateway {
                        out.push_str(&format!(
                            "    routes:\n      - to: default\n        via: {}\n",
                            quoted(gateway)
                        ));
                    }
                }
            }
            if let Some(mtu) = nic.mtu {
                out.push_str(&format!("    mtu: {mtu}\n"));
            }
        }
        out
    }

    /// The three files, by name.
    pub fn files(&self) -> [(&'static str, String); 3] {
        [
            ("meta-data", self.meta_data()),
            ("user-data", self.user_data()),
            ("network-config", self.network_config()),
        ]
    }

    /// Writes the three files into `dir` (created if missing); copy them onto a `cidata` vfat/iso9660 volume or
    /// serve the directory over HTTP.
    pub fn write_to_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, content) in self.files() {
            std::fs::write(dir.join(name), content)?;
        }
        Ok(())
    }
}
