"""The dataset builder: photos in, deterministic crash-safe webdataset shards out.

- :mod:`facedeg.build.builder` plans a build (sorted inputs -> keys -> splits -> shard tasks), runs it,
  resumes it and writes the manifest;
- :mod:`facedeg.build.inputs` discovers sources (folder, list file, tar shards);
- :mod:`facedeg.build.task` is the one pure shard task every backend runs;
- :mod:`facedeg.build.backends` runs tasks inline, in joblib processes or on Dask;
- :mod:`facedeg.build.shards` holds the shard format: member names, deterministic tar writing,
  atomic files, the manifest;
- :mod:`facedeg.build.verify` checks, inspects and replays a finished build;
- :mod:`facedeg.build.lockfile` (one process per folder) and :mod:`facedeg.build.heap` (allocator
  settings for image-heavy workers) are shared with hifacegan's trainer and loader.

The degradation engine it drives (ops, recipe, plan, seeds) sits one level up, in :mod:`facedeg`.
"""

from facedeg.build.builder import BuildConfig, BuildReport, build, split_sources

__all__ = ["BuildConfig", "BuildReport", "build", "split_sources"]
