//! kiln-sim against a stub provisioner on loopback: boots, reports, images, SSH, faults, outages.

mod access;
mod boot;
mod faults;
mod scale;
mod script;
mod ssh;
mod stub;
mod support;
mod wipe;
