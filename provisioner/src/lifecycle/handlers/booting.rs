//! booting → burn_in: one-time boot from disk; the installed OS's agent reports its SSH host key, which is
//! pinned; the post-image check connects with that key only and checks kernel, driver and GPU count.

use kiln_agent::AgentStep;
use kiln_inventory::{NewHealthRun, Node, NodeState, StoreError};

use super::common::{await_boot, reports_since};
use crate::lifecycle::access::{AccessError, NodeHost};
use crate::lifecycle::ctx::Ctx;
use crate::lifecycle::outcome::{Failure, FailureClass, Outcome};
use crate::lifecycle::work::{IntentKind, Work};

const WAITING_FOR: &str = "the installed OS's report";

/// Boots the disk, pins the host key, runs the post-image check.
pub async fn handle(ctx: &Ctx, node: &Node, work: &mut Work) -> Result<Outcome, StoreError> {
    let Some(intent) = work.current_intent(node).cloned() else {
        return await_boot(ctx, node, work, IntentKind::DiskBoot, WAITING_FOR).await;
    };
    let reports = reports_since(ctx, node, &intent).await?;
    let booted = reports.into_iter().rev().find_map(|step| match step {
        AgentStep::Booted {
            environment,
            ssh_host_key,
            ssh_address,
            kernel,
        } if environment == "installed" => Some((ssh_host_key, ssh_address, kernel)),
        _ => None,
    });
    let Some((host_key, address, _kernel)) = booted else {
        return await_boot(ctx, node, work, IntentKind::DiskBoot, WAITING_FOR).await;
    };
    let (Some(host_key), Some(address)) = (host_key, address) else {
        return Ok(Outcome::fail(
            FailureClass::PostImageCheck,
            "the installed OS's agent reported no SSH host key or address",
        ));
    };
    match pin_host_key(work, &host_key) {
        Pin::Mismatch(reason) => return Ok(Outcome::fail(FailureClass::HostKeyMismatch, reason)),
        Pin::Same => {}
        Pin::New => {
            ctx.store
                .record_event(
                    node.id,
                    ctx.actor(),
                    &format!(
                        "pinned SSH host key {} at {address} (image write {})",
                        fingerprint(&host_key),
                        work.images_written
                    ),
                )
                .await?;
        }
    }
    work.ssh_address = Some(address.clone());
    let host = NodeHost {
        serial: node.serial.clone(),
        address,
        host_key,
    };
    let started = ctx.store.now();
    let facts = match ctx.access.post_image_check(&host).await {
        Ok(facts) => facts,
        Err(err) => return Ok(access_trouble(ctx, work, err)),
    };
    let skus = ctx.store.list_skus().await?;
    let expected_gpus = skus
        .iter()
        .find(|s| s.id == node.sku)
        .map_or(0, |s| s.gpu_count);
    let mut problems = Vec::new();
    if facts.driver.is_none() {
        problems.push("the NVIDIA driver is not loaded".to_string());
    }
    if i64::from(facts.gpu_count) != expected_gpus {
        problems.push(format!(
            "nvidia-smi lists {} GPUs, SKU {} has {expected_gpus}",
            facts.gpu_count, node.sku
        ));
    }
    let evidence = serde_json::to_value(&facts).unwrap_or_default();
    ctx.store
        .record_health_run(&NewHealthRun {
            node: node.id,
            kind: "post_image",
            passed: problems.is_empty(),
            started_at: started,
            finished_at: Some(ctx.store.now()),
            evidence: &evidence,
        })
        .await?;
    if !problems.is_empty() {
        return Ok(Outcome::Fail(
            Failure::new(FailureClass::PostImageCheck, problems.join("; ")).with_evidence(evidence),
        ));
    }
    Ok(Outcome::to(
        NodeState::BurnIn,
        format!(
            "installed OS up: kernel {}, driver {}, {} GPUs",
            facts.kernel,
            facts.driver.as_deref().unwrap_or("-"),
            facts.gpu_count
        ),
    ))
}

/// What [`pin_host_key`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Nothing was pinned since the last image write: the reported key is pinned now.
    New,
    /// The reported key is the pinned one.
    Same,
    /// Another key is pinned for this image write: the node fails with `host_key_mismatch` (the reason names
    /// both fingerprints). It is never re-pinned without a new write.
    Mismatch(String),
}

/// Pins the installed OS's reported SSH host key, once per image write: the pin is cleared when an image
/// write is accepted ([`Work::image_written`]), the first installed-OS report after it pins, and a different
/// key later (without a new write) is a mismatch, not a silent re-pin.
pub fn pin_host_key(work: &mut Work, reported: &str) -> Pin {
    match work.host_key.as_deref() {
        None => {
            work.host_key = Some(reported.to_string());
            Pin::New
        }
        Some(pinned) if pinned.trim() == reported.trim() => Pin::Same,
        Some(pinned) => Pin::Mismatch(format!(
            "the installed OS reported SSH host key {}, but {} is pinned for image write {}; a host key is \
             pinned once per image write and only a new write may change it",
            fingerprint(reported),
            fingerprint(pinned),
            work.images_written
        )),
    }
}

/// What an SSH problem means: a changed host key fails at once; an unreachable node is retried a few times.
pub fn access_trouble(ctx: &Ctx, work: &mut Work, err: AccessError) -> Outcome {
    match err {
        AccessError::HostKeyMismatch { .. } => {
            Outcome::fail(FailureClass::HostKeyMismatch, err.to_string())
        }
        AccessError::Unreachable { .. } if work.errors < super::common::BMC_ERRORS_TOLERATED => {
            work.errors += 1;
            work.last_error = Some(err.to_string());
            Outcome::wait(err.to_string(), ctx.config.recheck)
        }
        AccessError::Unreachable { .. } | AccessError::BadOutput { .. } => {
            Outcome::fail(FailureClass::PostImageCheck, err.to_string())
        }
    }
}

/// SHA-256 fingerprint of an OpenSSH public key line, or the line's start when it does not parse.
pub fn fingerprint(key_line: &str) -> String {
    match russh::keys::PublicKey::from_openssh(key_line.trim()) {
        Ok(key) => key.fingerprint(russh::keys::HashAlg::Sha256).to_string(),
        Err(_) => key_line.chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Pin, fingerprint, pin_host_key};
    use crate::lifecycle::work::Work;

    const FIRST: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5CFqdiXJXAiTWuTvq8d3n/4pIpAqSPI1WGl7Kz2xjA";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn a_different_key_without_a_new_write_is_a_mismatch_naming_both_fingerprints() {
        let mut work = Work {
            images_written: 1,
            ..Work::default()
        };
        assert_eq!(pin_host_key(&mut work, FIRST), Pin::New);
        assert_eq!(pin_host_key(&mut work, FIRST), Pin::Same);
        match pin_host_key(&mut work, OTHER) {
            Pin::Mismatch(reason) => {
                assert!(reason.contains(&fingerprint(FIRST)), "{reason}");
                assert!(reason.contains(&fingerprint(OTHER)), "{reason}");
            }
            other => panic!("re-pinned without a write: {other:?}"),
        }
        assert_eq!(work.host_key.as_deref(), Some(FIRST), "the pin is kept");
    }

    #[test]
    fn a_new_image_write_allows_one_new_pin() {
        let mut work = Work::default();
        assert_eq!(pin_host_key(&mut work, FIRST), Pin::New);
        work.images_written += 1;
        work.image_written();
        assert_eq!(pin_host_key(&mut work, OTHER), Pin::New);
        assert_eq!(work.host_key.as_deref(), Some(OTHER));
        assert!(matches!(pin_host_key(&mut work, FIRST), Pin::Mismatch(_)));
    }
}
