"""shardkit: convert larger-than-RAM datasets to sharded TFRecords (shardkit.convert) and train on them (shardkit.train).

``shardkit.spec`` is the dataset format both halves share; it depends on numpy and TensorFlow only.
"""

__version__ = "0.1.0"
