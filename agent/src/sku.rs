//! Comparing what inspection found with what the node's SKU promises (the comparison lives in kiln-model, shared
//! with the provisioner).

pub use kiln_model::{Mismatch, SkuExpectation, compare, describe};
