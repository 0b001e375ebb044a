"""Evaluation: metrics as pure numpy functions (:mod:`facelivenet.eval.metrics`)."""
