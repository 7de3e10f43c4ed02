"""The regularisers and networks the step-time benchmark compares, as raw vaezoo config fragments.

Kept apart from :mod:`benchmarks.perf.steps` (and free of torch) so that ``python -m benchmarks.perf`` can check
its options without importing torch.
"""

VARIANTS = {
    "betavae": {"regularizer": {"name": "betavae"}},
    "ncvae+gaussian": {"regularizer": {"name": "ncvae"}, "noise": {"name": "gaussian"}},
    "ncvae+decoder": {"regularizer": {"name": "ncvae"}, "noise": {"name": "decoder"}},
    "infovae": {"regularizer": {"name": "infovae"}},
    "aae": {"regularizer": {"name": "aae"}},
}
NETWORKS = {
    "pixelcnn": {"encoder": {"name": "resnet"}, "decoder": {"name": "pixelcnn"}},
    "deconv": {"encoder": {"name": "resnet"}, "decoder": {"name": "deconv"}},
    "mlp": {"encoder": {"name": "mlp"}, "decoder": {"name": "mlp"}},
    "lstm": {"encoder": {"name": "lstm"}, "decoder": {"name": "lstm"}},
}
TEXT_NETWORKS = ("lstm",)
TEXT_DATA = {"name": "yahoo", "source": "shipped"}
