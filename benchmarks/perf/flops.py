"""The FLOPs of a workload: torch's own counter, plus the LSTM matrix products it does not see.

:func:`count_flops` runs a callable once under ``torch.utils.flop_counter.FlopCounterMode``, which counts the
floating-point operations of matrix products and convolutions (``mm``, ``addmm``, ``bmm``, ``convolution`` and
their backward passes; 2 per multiply-add), forward and backward alike. Elementwise work (activations, batch norm,
softmax, the optimiser's update) is not counted: a FLOP figure here is the arithmetic a matrix unit does, which is
what the machine's matmul peak (:mod:`vaezoo_bench.perf.peak`) measures.

On the CPU, ``nn.LSTM`` runs as oneDNN's fused ``aten::mkldnn_rnn_layer`` (and ``mkldnn_rnn_layer_backward``),
which the counter does not know: an LSTM counts 0 FLOPs by torch alone. Those two operators are counted here by
:func:`rnn_matmul_flops`, written once: every time step of every sequence multiplies the input by ``W_ih``
(``gates x input``) and the previous hidden state by ``W_hh`` (``gates x hidden``), ``gates = 4 hidden`` for an
LSTM, so ``2 rows gates (input + hidden)`` FLOPs forward, where ``rows`` is sequences times time steps. The
backward pass forms the gradients of both operands of both products, twice the forward FLOPs. (Where torch runs an
LSTM as separate matrix products instead, e.g. with oneDNN off, the counter sees those products itself.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def rnn_matmul_flops(rows: int, input_size: int, gates: int, hidden: int) -> int:
    """FLOPs of the forward matrix products of one recurrent layer over ``rows`` (sequences x time steps) inputs
    of ``input_size`` features: ``2 rows gates (input_size + hidden)`` (``gates = 4 hidden`` for an LSTM)."""
    return 2 * rows * gates * (input_size + hidden)


def _rnn_layer(input_shape: torch.Size, weight_ih: torch.Size, weight_hh: torch.Size) -> int:
    """Forward FLOPs of ``mkldnn_rnn_layer`` from the shapes of its input ``'... input'`` and weights
    ``W_ih 'gates input'``, ``W_hh 'gates hidden'``."""
    rows = math.prod(input_shape[:-1])
    return rnn_matmul_flops(rows, weight_ih[1], weight_ih[0], weight_hh[1])


def _rnn_forward(input_shape: torch.Size, weight_ih: torch.Size, weight_hh: torch.Size, *_: Any, **__: Any) -> int:
    return _rnn_layer(input_shape, weight_ih, weight_hh)


def _rnn_backward(input_shape: torch.Size, weight_ih: torch.Size, weight_hh: torch.Size, *_: Any, **__: Any) -> int:
    return 2 * _rnn_layer(input_shape, weight_ih, weight_hh)


#: Counting formulas of the operators FlopCounterMode does not know (argument shapes in, FLOPs out).
EXTRA_FORMULAS = {
    aten.mkldnn_rnn_layer: _rnn_forward,
    aten.mkldnn_rnn_layer_backward: _rnn_backward,
}


def count_flops(work: Callable[[], object]) -> int:
    """The matrix-product FLOPs of one call of ``work`` (forward and backward passes it runs), by
    FlopCounterMode with :data:`EXTRA_FORMULAS`. ``work`` runs for real, slower than untimed."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS) as counter:
        work()
    return counter.get_total_flops()


def gflops_per_s(flops: float, seconds: float) -> float:
    """Achieved GFLOP/s of ``flops`` done in ``seconds``."""
    return flops / seconds / 1e9
