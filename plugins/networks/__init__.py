"""Encoder and decoder networks: MLP, ResNet encoder with deconvolutional decoder, PixelCNN decoder, LSTM, and the
Skip-VAE versions of the PixelCNN and LSTM decoders."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.networks.lstm import LSTMDecoder, LSTMEncoder, SkipLSTMDecoder
    from vaezoo_plugins.networks.mlp import MLPDecoder, MLPEncoder
    from vaezoo_plugins.networks.pixelcnn import PixelCNNDecoder, SkipPixelCNNDecoder
    from vaezoo_plugins.networks.resnet import DeconvDecoder, ResNetEncoder

    for network in (
        MLPEncoder,
        MLPDecoder,
        ResNetEncoder,
        DeconvDecoder,
        PixelCNNDecoder,
        SkipPixelCNNDecoder,
        LSTMEncoder,
        LSTMDecoder,
        SkipLSTMDecoder,
    ):
        register(network)
