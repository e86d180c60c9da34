"""shardkit.convert: HDF5 / DataFrame rows -> shuffled, stratified, sharded TFRecords (an Apache Beam job).

Entry points: the ``shardkit-convert`` CLI (``shardkit.convert.cli.main``), the Python API
``shardkit.convert.pipeline.convert`` and the example generators in ``shardkit.convert.examples``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shardkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
