"""The regularisers and networks the step-time benchmark compares, as raw vaezoo config fragments.

Kept apart from :mod:`vaezoo_bench.perf.steps` (and free of torch) so that ``python -m benchmarks.perf`` can check
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
    # the decoder noise of earlier versions: documents end only where the decoder ends them (an untrained one runs
    # to max_len), drawn in float32; the defaults cut them at the batch's width and draw text in bfloat16
    "ncvae+decoder/uncut": {
        "regularizer": {"name": "ncvae"},
        "noise": {"name": "decoder", "lengths": "decoder", "precision": "fp32"},
    },
    "infovae": {"regularizer": {"name": "infovae"}},
    "aae": {"regularizer": {"name": "aae"}},
    # the remedies of posterior collapse (docs/maths.md section 8). aggressive is timed in its aggressive phase:
    # each step is encoder updates until their loss stops falling, then one decoder update
    "aggressive": {"strategy": {"name": "aggressive"}},
    "savae/5": {"transform": {"name": "savae", "steps": 5}},
    "savae/10": {"transform": {"name": "savae", "steps": 10}},
    "savae/20": {"transform": {"name": "savae", "steps": 20}},
    # SA-VAE differentiated by Kim et al.'s finite-difference reverse pass rather than the exact double backward
    "savae-fd/5": {"transform": {"name": "savae", "steps": 5, "backward": "finite_difference"}},
    "savae-fd/10": {"transform": {"name": "savae", "steps": 10, "backward": "finite_difference"}},
    "bnvae": {"transform": {"name": "bnvae"}},
    "deltavae": {"transform": {"name": "deltavae"}},
    "fb_masked": {"regularizer": {"name": "fb_masked"}},
    "skip": {"decoder": {"name": "skip_{decoder}"}},
}
NETWORKS = {
    "pixelcnn": {"encoder": {"name": "resnet"}, "decoder": {"name": "pixelcnn"}},
    "deconv": {"encoder": {"name": "resnet"}, "decoder": {"name": "deconv"}},
    "mlp": {"encoder": {"name": "mlp"}, "decoder": {"name": "mlp"}},
    "lstm": {"encoder": {"name": "lstm"}, "decoder": {"name": "lstm"}},
}
TEXT_NETWORKS = ("lstm",)
#: The components of each network that take an ``arch`` (he2019: He et al.'s networks).
ARCH_COMPONENTS = {
    "pixelcnn": ("encoder", "decoder"),
    "deconv": ("encoder",),
    "mlp": (),
    "lstm": ("encoder", "decoder"),
}
TEXT_DATA = {"name": "yahoo", "source": "shipped"}

#: Arithmetic precisions of the training step (``train.precision``): float32, or bfloat16 through torch.autocast.
PRECISIONS = ("fp32", "bf16")

#: The networks the yardstick part sets against plain PyTorch (:mod:`vaezoo_bench.perf.yardstick`): vaezoo's encoder
#: and decoder, and the training settings of the paper's runs (He et al. 2019: SGD at lr 1 for text, Adam at 1e-3
#: for Omniglot, the gradient norm clipped to 5; vaezoo's defaults for the MLP).
YARDSTICK_NETWORKS = {
    "text": {"networks": ("lstm", "lstm"), "train": {"optimizer": "sgd", "lr": 1.0, "grad_clip": 5.0}},
    "omniglot": {"networks": ("resnet", "pixelcnn"), "train": {"optimizer": "adam", "lr": 1e-3, "grad_clip": 5.0}},
    "mlp": {"networks": ("mlp", "mlp"), "train": {}},
}
#: Examples per step of each yardstick network (He et al.'s batches for text and Omniglot; vaezoo's default).
YARDSTICK_BATCH = {"text": 32, "omniglot": 50, "mlp": 64}
#: The ``arch`` of the text and Omniglot networks: He et al.'s reference networks, or vaezoo's own (text only).
YARDSTICK_ARCHS = ("he2019", "vaezoo")
#: Timed rounds of each yardstick network, and with ``--quick`` (an MLP step takes milliseconds, the others seconds).
YARDSTICK_REPEATS = {"text": 10, "omniglot": 10, "mlp": 100}
YARDSTICK_QUICK_REPEATS = {"text": 3, "omniglot": 3, "mlp": 30}
#: The speeds the project must reach on an idle machine (2 threads, side by side in one run). ``SPEED_TARGETS``:
#: vaezoo's speed relative to the yardstick at the same precision; ``BF16_TARGETS``: vaezoo's bf16 speed relative
#: to the fp32 yardstick; ``IWNLL_TARGET``: the fraction of the fp32 FLOP floor IW-NLL reaches with k = 500.
SPEED_TARGETS = {("text", "fp32"): 0.95, ("omniglot", "fp32"): 0.95, ("mlp", "fp32"): 0.9}
BF16_TARGETS = {"text": 1.6, "omniglot": 1.5}
IWNLL_TARGET = 0.9
