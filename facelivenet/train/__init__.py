"""Training: stage 1 (verification), stage 2 (expression), FaceLiveNet+ multi-task.

Entry points (:mod:`facelivenet.train.run`): :func:`~facelivenet.train.run.train_verification`,
:func:`~facelivenet.train.run.train_expression`, :func:`~facelivenet.train.run.train_multitask`,
each taking a frozen config from :mod:`facelivenet.train.options`.
"""
