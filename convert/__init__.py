"""shardkit.convert: HDF5 / DataFrame rows -> shuffled, stratified, sharded TFRecords (an Apache Beam job)."""
