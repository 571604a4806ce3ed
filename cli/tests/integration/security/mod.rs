//! The security suite: each attack of issue 21 tried as an attacker would, from another process (the test
//! process against a `kiln` child, or the reverse) or another loopback source address, asserting that it fails.
//!
//! | attack | module |
//! |---|---|
//! | spoofed script fetch, stolen token from another address, replayed report | [`boot`] |
//! | a node floods the SSH output | [`flood`] |
//! | a node answers burn-in with a forged passing verdict, or `{}` | [`verdict`] |
//! | a hostile BMC's links point elsewhere (`//host`, `\\`, encoded, `@` userinfo) | [`redfish`] |

mod boot;
mod flood;
mod redfish;
mod verdict;
