"""``ctrflow preprocess``: analyze training data with tf.Transform, split, transform and write gzip TFRecords."""
