"""Datasets on disk: class folders, subjects in file names, splits, pairs files, lr schedules.

The TensorFlow input pipeline lives in :mod:`facelivenet.data.tfdata` (imported on demand).
"""
