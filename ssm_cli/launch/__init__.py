"""Launching a grid's units through submitit (SLURM, or its local executor), and the grid's status."""
