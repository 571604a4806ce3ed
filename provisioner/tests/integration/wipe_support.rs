//! The fake agent's wipe mode: one NVMe disk without sanitize, whose erase chain (format crypto, format user
//! data, overwrite) runs past the methods the boot's `kiln.erase_skip` names; a planted "stuck" method fails
//! verification and ends the chain, as a real erase that did not take would.

use chrono::{DateTime, Utc};
use kiln_agent::AgentStep;
use kiln_agent::cmdline::RamdiskArgs;
use kiln_inventory::{
    EraseMethod, EraseRecord, EraseResult, EraseVerification, Node, Store, TriedMethod,
};

const CHAIN: [EraseMethod; 4] = [
    EraseMethod::NvmeSanitizeCrypto,
    EraseMethod::NvmeFormatCrypto,
    EraseMethod::NvmeFormatUserData,
    EraseMethod::Overwrite,
];

/// The erase methods the node's wipe script skips, read back through the agent's own parser.
pub async fn wipe_boot_skip(store: &Store, node: &Node) -> Vec<EraseMethod> {
    let extra = kiln_provisioner::boot::decision::wipe_args(store, node)
        .await
        .expect("wipe args");
    let line = format!("kiln.url=http://p kiln.token=t kiln.mode=wipe{extra}");
    RamdiskArgs::parse(&line)
        .expect("the agent parses the wipe args")
        .erase_skip
}

/// The report of one wipe run.
pub fn wipe_answer(skip: &[EraseMethod], stuck: &[EraseMethod], now: DateTime<Utc>) -> AgentStep {
    let mut tried = Vec::new();
    let mut record = EraseRecord {
        device: "/dev/nvme0n1".into(),
        model: "Fake NVMe".into(),
        serial: "FAKE0".into(),
        bytes: 1 << 30,
        method: None,
        nist: None,
        tried: Vec::new(),
        started_at: now,
        finished_at: now,
        verified: false,
        result: EraseResult::Failed,
        error: None,
        verification: None,
    };
    for method in CHAIN.into_iter().filter(|m| !skip.contains(m)) {
        if method == EraseMethod::NvmeSanitizeCrypto {
            tried.push(TriedMethod {
                method,
                error: "not supported by the device".into(),
            });
            continue;
        }
        record.method = Some(method);
        if stuck.contains(&method) {
            record.error = Some(format!(
                "{method}: verification failed: sampled ranges read as before the erase"
            ));
        } else {
            record.nist = Some(method.nist());
            record.verified = true;
            record.result = EraseResult::Ok;
            record.verification = Some(EraseVerification {
                check: if method.is_crypto() {
                    "changed"
                } else {
                    "zeros"
                }
                .into(),
                ranges: 10,
                bytes_read: 10 << 20,
            });
        }
        break;
    }
    if record.method.is_none() {
        record.error = Some("no erase method left to try".into());
    }
    record.tried = tried;
    if record.is_ok() {
        AgentStep::Wiped {
            disks: vec!["nvme0n1".into()],
            records: vec![record],
        }
    } else {
        let error = record.summary();
        AgentStep::WipeFailed {
            records: vec![record],
            error,
        }
    }
}
