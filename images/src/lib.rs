//! kiln-images: image catalog, content-addressed store, HTTP serving with Range, the verifying streaming writer
//! (raw, zstd, qcow2) and cloud-init NoCloud seeds. Not built yet: see the images issue.
