"""Numba kernels: the maths of ``numpyvae.ops``, fused into single passes over memory.

    fused.py     the training step's kernels (bias + activation, losses, latent layer, Adam)
    ksample.py   the k-sample objectives' latent layer and importance weights (IWAE)
    binary.py    the first layer's products on 0/1 data, as sums of rows
    binarize.py  a batch of dynamically binarised data in one pass
    vmath.py     vectorisable float32 exp / log1p / tanh used inside them
    pool.py      running them on BLAS's own threads (gotoblas_pthread)
    handoff.py   how far apart those threads are: one cache line's trip between them
    teaching.py  a hand-written matrix product, for teaching and benchmarks (never in training)
"""

from .binarize import gather_binarize
from .binary import binary_bias_act, binary_rows, binary_weight_grad
from .fused import (
    ACTIVATION_CODES,
    adam_step,
    backward_bias,
    backward_bias_transposed,
    bernoulli_loss_grad,
    bernoulli_rows,
    bias_act,
    bias_relu,
    bias_softplus,
    bias_tanh,
    column_sum,
    gaussian_floor_loss_grad,
    gaussian_loss_grad,
    latent_backward,
    latent_forward,
    mean64,
)
from .ksample import iwae_weights, latent_backward_k, latent_forward_k, scale_rows
from .teaching import matmul
from .vmath import exp_array, log1p_array, tanh_array, vexp, vlog1p, vtanh

__all__ = [
    "ACTIVATION_CODES", "binary_bias_act", "binary_rows", "binary_weight_grad", "bias_act",
    "gather_binarize",
    "adam_step", "backward_bias", "backward_bias_transposed",
    "bernoulli_loss_grad", "bias_relu", "bias_softplus",
    "bias_tanh", "bernoulli_rows", "column_sum", "gaussian_floor_loss_grad",
    "gaussian_loss_grad", "iwae_weights",
    "latent_backward", "latent_backward_k", "latent_forward", "latent_forward_k", "mean64",
    "matmul", "scale_rows",
    "exp_array", "log1p_array", "tanh_array", "vexp", "vlog1p", "vtanh",
]
