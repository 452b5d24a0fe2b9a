"""The cluster: the Slurm client, sbatch scripts, datatrove executors, prefetch and doctor."""
