-- The SKUs kiln knows out of the box; ids match the health crate's SKU profiles.
INSERT INTO skus (id, description, gpu_count, gpu_model, gpu_memory_gib) VALUES
    ('h100-sxm-80gb',  'HGX H100 8-GPU, SXM5 80GB HBM3',   8, 'NVIDIA H100 80GB HBM3', 80),
    ('h200-sxm-141gb', 'HGX H200 8-GPU, SXM5 141GB HBM3e', 8, 'NVIDIA H200',           141),
    ('a100-sxm-80gb',  'HGX A100 8-GPU, SXM4 80GB HBM2e',  8, 'NVIDIA A100-SXM4-80GB', 80),
    ('b200-sxm-180gb', 'HGX B200 8-GPU, SXM6 180GB HBM3e', 8, 'NVIDIA B200',           180);
