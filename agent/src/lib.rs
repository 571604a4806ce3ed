//! kiln-agent: runs on the node (ramdisk and installed OS): hardware inspection, image writes, health checks,
//! reports to the provisioner with a per-node token. Not built yet: see the images/agent issue.
