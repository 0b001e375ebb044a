"""Evaluation: metrics (pure numpy), the protocols, and their plots.

- :mod:`~facelivenet.eval.metrics`: distances, k-fold accuracy, ROC, AUC, EER, VAL@FAR,
  confusion matrix, precision / recall.
- :mod:`~facelivenet.eval.crops`: image files → face crops (whole, or detected and
  aligned) → network outputs, in batches.
- :mod:`~facelivenet.eval.verification`: the LFW pairs protocol.
- :mod:`~facelivenet.eval.expression`: expression accuracy and confusion, and the
  subject-independent K-fold cross-validation of stage 2.
- :mod:`~facelivenet.eval.holistic`: the holistic authentication protocol (fused decision).
- :mod:`~facelivenet.eval.embeddings`: the t-SNE identity map.
- :mod:`~facelivenet.eval.plots`: ROC, confusion matrix and identity-map PNGs.
"""
