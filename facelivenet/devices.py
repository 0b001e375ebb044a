"""Choosing the compute device (``--device CPU|GPU``) for the Keras backend in use."""

from __future__ import annotations

from facelivenet.errors import InputError


def select_device(name: str) -> str:
    """Make the backend use ``name`` ("CPU" or "GPU"); call before building any model.

    ``GPU`` needs a GPU the backend can see, else :class:`InputError` says so; ``CPU``
    hides the GPUs. Returns a description of the device chosen.
    """
    import keras

    name = name.upper()
    if name not in ("CPU", "GPU"):
        raise InputError(f"--device must be CPU or GPU. Received: {name}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if name == "GPU":
            if not gpus:
                raise InputError(
                    "--device GPU: TensorFlow sees no GPU on this machine (install a CUDA build of "
                    "TensorFlow and its driver, or use --device CPU)"
                )
            return f"GPU ({gpus[0].name})"
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # devices already initialised: placement scope instead
            pass
        return "CPU"
    if backend == "jax":
        import jax

        if name == "GPU":
            try:
                return f"GPU ({jax.devices('gpu')[0]})"
            except RuntimeError:
                raise InputError("--device GPU: JAX sees no GPU on this machine") from None
        jax.config.update("jax_platforms", "cpu")
        return "CPU"
    if name == "GPU":
        raise InputError(f"--device GPU is not supported on the {backend} backend here")
    return "CPU"
