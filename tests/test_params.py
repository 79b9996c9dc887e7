"""The flat parameter buffer: named views, arrays side by side in one block (the latent heads),
and the canonical order that checkpoint files hold whatever the buffer's layout."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from numpyvae.checkpoint import read_checkpoint, write_checkpoint
from numpyvae.gradcheck import numerical_gradient
from numpyvae.model import VAE
from numpyvae.params import Parameters

SHAPES = {"a.W": (3, 4), "a.b": (4,), "mu.W": (4, 2), "mu.b": (2,), "lv.W": (4, 5), "lv.b": (5,)}
GROUP = (("mu.W", "lv.W"),)


def filled(side_by_side=GROUP):
    p = Parameters(SHAPES, "float64", side_by_side=side_by_side)
    for i, name in enumerate(p):
        p[name][...] = 100 * i + np.arange(p[name].size).reshape(p[name].shape)
    return p


def test_side_by_side_views_are_the_halves_of_one_block():
    """mu.W and lv.W are columns 0..1 and 2..6 of one (4, 7) block at mu.W's place; the other
    arrays keep theirs; every view writes into the one buffer."""
    p = filled()
    block = p.blocks["mu.W"]
    assert block.shape == (4, 7) and p.blocks["lv.W"] is block
    np.testing.assert_array_equal(block, np.hstack([p["mu.W"], p["lv.W"]]))
    assert np.shares_memory(block, p.flat) and block.flags.c_contiguous
    start = 3 * 4 + 4  # after a.W and a.b
    np.testing.assert_array_equal(p.flat[start:start + 28], block.ravel())
    np.testing.assert_array_equal(p.flat[start + 28:start + 30], p["mu.b"])
    assert list(p) == list(SHAPES)  # names keep their order
    p["lv.W"][1, 2] = -1.0
    assert block[1, 4] == -1.0


def test_canonical_order_is_the_names_in_order_each_in_C_order():
    """to_canonical gives what a buffer without blocks would hold; from_canonical inverts it,
    for the parameters and for any other buffer of the layout (an optimiser moment)."""
    p, plain = filled(), filled(side_by_side=())
    expected = np.concatenate([plain[name].ravel() for name in SHAPES])
    np.testing.assert_array_equal(plain.flat, expected)
    np.testing.assert_array_equal(p.to_canonical(p.flat), expected)
    assert not np.array_equal(p.flat, expected)  # the block really changes the order
    q = Parameters(SHAPES, "float64", side_by_side=GROUP)
    q.from_canonical(expected)
    np.testing.assert_array_equal(q.flat, p.flat)
    moment = np.arange(p.size, dtype=np.float64)
    np.testing.assert_array_equal(p.from_canonical(p.to_canonical(moment), np.empty(p.size)),
                                  moment)


def test_copies_keep_the_blocks():
    p = filled()
    for twin in (copy.deepcopy(p), pickle.loads(pickle.dumps(p)), p.copy(), p.zeros_like()):
        assert twin.side_by_side == GROUP
        assert np.shares_memory(twin.blocks["mu.W"], twin.flat)
        assert np.shares_memory(twin["lv.W"], twin.blocks["mu.W"])
    np.testing.assert_array_equal(p.copy()["lv.W"], p["lv.W"])


def test_bad_groups_are_explained():
    with pytest.raises(ValueError, match="side by side"):
        Parameters(SHAPES, side_by_side=(("a.W", "mu.W"),))  # 3 rows and 4 rows
    with pytest.raises(ValueError, match="no shape"):
        Parameters(SHAPES, side_by_side=(("mu.W", "nope.W"),))


def test_numerical_gradient_perturbs_a_strided_view():
    """The finite differences of gradcheck probe each entry of a view of a block (whose
    reshape(-1) would be a copy) and leave it as it was."""
    p = filled()
    W = p["lv.W"]
    before = p.flat.copy()
    grad = numerical_gradient(lambda: float(np.sum(p.blocks["mu.W"] ** 2)), W)
    np.testing.assert_allclose(grad, 2 * W, rtol=1e-6)
    np.testing.assert_array_equal(p.flat, before)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_checkpoints_hold_the_canonical_order(tmp_path, backend):
    """A model's file holds every named array in C order, one after the other (as files did
    before the heads' block); Adam's moments too. Loading puts each back in its view, and a file
    written in that order by hand loads into the same named arrays."""
    vae = VAE(n_input=12, hidden=(6,), n_latent=3, seed=4, backend=backend)
    X = (np.random.default_rng(0).random((8, 12)) < 0.4).astype(np.float32)
    vae.step(X)
    vae.save(tmp_path / "a.npz")
    ck = read_checkpoint(tmp_path / "a.npz")
    names = list(vae.params)
    np.testing.assert_array_equal(ck.params,
                                  np.concatenate([vae.params[n].ravel() for n in names]))
    m = vae.params.zeros_like()
    m.flat[...] = vae.optimizer.m
    np.testing.assert_array_equal(ck.optimizer["m"], np.concatenate([m[n].ravel() for n in names]))
    back = VAE.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(back.params.flat, vae.params.flat)
    np.testing.assert_array_equal(back.optimizer.v, vae.optimizer.v)
    assert back.step(X) == vae.step(X)

    by_hand = np.concatenate([(np.arange(vae.params[n].size) + 1000 * i).astype(np.float32)
                              for i, n in enumerate(names)])
    write_checkpoint(tmp_path / "b.npz", vae.config, by_hand)
    loaded = VAE.load(tmp_path / "b.npz")
    for i, n in enumerate(names):
        np.testing.assert_array_equal(loaded.params[n].ravel(),
                                      np.arange(vae.params[n].size) + 1000 * i)
