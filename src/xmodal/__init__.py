"""xmodal: multimodal deep learning — align, connect and evaluate models that see, read and hear.

The Python API follows open_clip's habits::

    import xmodal
    model, preprocess = xmodal.create_model("clip-effnet-minilm")
    z_img = model.encode_image(preprocess(pil_image)[None])
    z_txt = model.encode_text(["a cat face"])
    model, preprocess = xmodal.load_checkpoint("runs/demo/model")
"""

from xmodal import data, encoders, losses
from xmodal.models.factory import create_model, list_models
from xmodal.models.io import load_checkpoint

__version__ = "0.1.0"
__all__ = ["create_model", "data", "encoders", "list_models", "load_checkpoint", "losses"]
