"""shardkit.train: tf.data readers and tf.distribute Keras training over shardkit datasets."""
