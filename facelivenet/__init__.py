"""facelivenet: face verification fused with expression challenge-response liveness.

Public entry points (imported lazily so that ``import facelivenet`` stays cheap)::

    from facelivenet import FaceAuth
    auth = FaceAuth()                    # the bundled default model (or FaceAuth("my.keras"))
    auth.analyze("photo.jpg")            # every face: box, landmarks, embedding, expressions
    auth.verify("a.jpg", "b.jpg").same   # same person? (distance, threshold, both faces)
    auth.identify("probe.jpg", "gallery.flg").name
    auth.authenticate("clip.mp4", "ref.jpg", challenge="surprise").accepted

    from facelivenet import load_model   # the network alone, on face crops
    model = load_model()                 # bundled default, or load_model("my.keras")
    result = model.analyze(faces)        # (N, H, W, 3) uint8 RGB face crops
    result.embeddings, result.expressions, model.expression_classes, model.config
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["FaceAuth", "load_model", "new_model", "FaceModel", "Analysis", "NetworkConfig", "__version__"]


def __getattr__(name: str):
    if name in ("load_model", "new_model", "FaceModel", "Analysis"):
        from facelivenet import api

        return getattr(api, name)
    if name in ("FaceAuth", "FaceAnalysis", "Verification", "Identification"):
        from facelivenet import facade

        return getattr(facade, name)
    if name == "NetworkConfig":
        from facelivenet.config import NetworkConfig

        return NetworkConfig
    raise AttributeError(f"module 'facelivenet' has no attribute {name!r}")
