"""Fault-injection tools shared by the reliability tests and the fault benchmarks.

Everything here runs the real thing: ``python -m fkd generate`` in a subprocess on
Fashion-MNIST PNGs (read from the Debian IDX files), a tiny seeded conv net as the
teacher (a ``module:factory`` spec written into a folder on ``PYTHONPATH``), real
SIGKILLs of the whole process group, and comparisons of the store's chunk files, byte
for byte, with an uninterrupted reference run.  One module per idea:

- ``fashion_mnist``: the images, as PNG class folders;
- ``tiny_teacher``: the teacher module's source, written where a subprocess finds it;
- ``generate_command``: the ``fkd generate`` command (``Setup``) and its environment;
- ``process_groups``: start in a session of its own, SIGKILL the group, find the
  processes a campaign tagged and the orphans a kill left;
- ``store_files``: a store as files on disk (a block's chunk files and digest, commit
  markers, debris of killed writes, array-by-array comparison);
- ``campaign_result``: the figures of a kill/resume campaign and its report;
- ``campaign``: the kill/resume campaign (``Campaign``), one process group per run;
- ``dask_campaign``: what the dask campaigns share (the cluster size, the token);
- ``dask_client_campaign`` / ``dask_worker_campaign``: the campaign with dask as the
  runner (the client killed with its cluster, or the cluster's workers killed);
- ``loader_soak``: ``make_loader`` read for a while, with the memory of its processes.
"""
