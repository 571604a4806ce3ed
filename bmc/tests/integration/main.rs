//! Integration tests for kiln-bmc: the Redfish client against kiln's simulator (every vendor profile), against
//! recorded vendor resources, against hostile servers, and the fleet runner.

mod common;
mod faults;
mod firmware;
mod fixtures;
mod fleet;
mod hostile;
mod ipmi;
mod links;
mod openipmi;
mod profiles;
mod props;
mod target;
mod tls;
