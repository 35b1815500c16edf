"""Encoders: image (EfficientNet-Lite0, ViT), text (MiniLM through transformers, Transformer).

Importing this package registers every encoder in :data:`xmodal.registry.IMAGE_ENCODERS` and
:data:`xmodal.registry.TEXT_ENCODERS`.
"""

from xmodal.encoders import efficientnet, hf_text, text_transformer, vit
from xmodal.encoders.base import Encoder, EncoderOutput

__all__ = ["Encoder", "EncoderOutput", "efficientnet", "hf_text", "text_transformer", "vit"]
