//! The security suite: each attack of issue 21 tried as an attacker would, from another process (the test
//! process against a `kiln` child, or the reverse) or another loopback source address, asserting that it fails.
//!
//! | attack | module |
//! |---|---|
//! | a node floods the SSH output | [`flood`] |
| a hostile BMC's links point elsewhere (`//host`, `\\`, encoded, `@` userinfo) | [`redfish`] |

mod flood;
mod redfish;
