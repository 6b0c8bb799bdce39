"""Serving side of the project: the HTTP API over the trained models (see `service.app`).

numpy's BLAS runs single-threaded here: the only matrix products the service computes are the
out-of-distribution scores of a batch (`ml.ood`, well under a millisecond on one core), and a
BLAS thread pool that spins between them takes a core from the other worker processes and the
inference threads (measured: a third of the throughput at 64 connections). Set before numpy is
first imported, which reads it.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
