"""One graph's builds spread over a Dask cluster: the coordinator plans, uploads each build's
inputs to the shared remote's CAS and submits a task carrying their digests; a worker
materialises them, signs again, builds and pushes (docs/cluster.md). Optional: it needs the
``cluster`` extra (Dask's ``distributed``), imported only when a build is submitted."""
