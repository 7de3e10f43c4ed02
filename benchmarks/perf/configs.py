"""The regularisers and networks the step-time benchmark compares, as raw vaezoo config fragments.

Kept apart from :mod:`benchmarks.perf.steps` (and free of torch) so that ``python -m benchmarks.perf`` can check
its options without importing torch.
"""

VARIANTS = {
    "betavae": {"regularizer": {"name": "betavae"}},
    "ncvae+gaussian": {"regularizer": {"name": "ncvae"}, "noise": {"name": "gaussian"}},
    "ncvae+decoder": {"regularizer": {"name": "ncvae"}, "noise": {"name": "decoder"}},
    # the decoder's noise pool refreshed every 10th step (refresh_every) and reused in between. It is drawn in the
    # warm-up step, so fewer than 10 timed steps never draw it: they time NC-VAE without sampling, and the
    # difference to ncvae+decoder is what drawing the noise costs per step.
    "ncvae+decoder/10": {"regularizer": {"name": "ncvae"}, "noise": {"name": "decoder", "refresh_every": 10}},
    # token data only: noise documents cut at the data batch's width (noise.lengths = batch)
    "ncvae+decoder/batch": {"regularizer": {"name": "ncvae"}, "noise": {"name": "decoder", "lengths": "batch"}},
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
