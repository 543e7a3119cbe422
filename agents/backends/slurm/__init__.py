"""The `slurm` backend: one Slurm batch job per attempt."""
