"""Keras 3 CTR models (LR, Wide&Deep, DeepFM) built from a ``FeatureLayout``.

Import the submodules directly (``model.config``, ``model.models``...): this
package stays import-light so that reading a config does not load TensorFlow.
"""
