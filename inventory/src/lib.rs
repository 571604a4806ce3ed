//! kiln-inventory (being built).
