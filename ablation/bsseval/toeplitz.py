"""The normal equations of the distortion filters: symmetric block Toeplitz systems,
solved by the block Levinson recursion in O(L**2) and checked against the backward
error a dense solver reaches; museval's own dense solve where the check fails."""

from __future__ import annotations

import numpy as np
import scipy.fft

# museval's regularisation of the normal equations: G + eps * I.
EPS = float(np.finfo(float).eps)
# Backward error above which the Levinson solution is not trusted to equal a
# dense solver's (a backward-stable LU reaches ~1e-15 on these systems).
BACKWARD_ERROR_TOL = 1e-11


def regularised(lags: np.ndarray) -> np.ndarray:
    """``G + eps * I`` as museval solves it: eps on the lag-0 diagonal."""
    out = lags.copy()
    out[..., 0, :, :] += EPS * np.eye(lags.shape[-1])
    return out


def verified(
    lags: np.ndarray, rhs: np.ndarray, solution: np.ndarray, solved: np.ndarray
) -> np.ndarray:
    """Keep Levinson solutions as accurate as a dense solver's; redo the others densely.

    Args:
        lags: ``(batch, L, s, s)``; rhs, solution: ``(batch, L, s, m)``;
        solved: ``(batch,)``, False where the recursion broke down.
    """
    error = _backward_error(regularised(lags), solution, rhs)
    solution = solution.copy()
    for i in np.flatnonzero(~(solved & (error < BACKWARD_ERROR_TOL))):
        solution[i] = _solve_dense(lags[i], rhs[i])
    return solution


def block_levinson(lags: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block Levinson recursion for symmetric block Toeplitz systems.

    Grows forward and backward predictors (``T_n F = [E_f, 0, ...]``,
    ``T_n B = [..., 0, E_b]``) and the solution one block at a time, in place
    in preallocated buffers.

    Args:
        lags: ``(batch, L, s, s)``: block ``(p, q)`` of ``T`` is ``lags[q - p]``
            for ``q >= p`` and ``lags[p - q].T`` otherwise.
        rhs: ``(batch, L, s, m)``.

    Returns:
        The solutions ``(batch, L, s, m)`` and ``(batch,)``, False where the
        recursion broke down on a singular prediction-error matrix.
    """
    batch, nlags, s, m = rhs.shape
    # Row n of T, blocks 0..n-1, is lags[n]^T ... lags[1]^T: stored reversed and
    # side by side so that each step reads one slice.
    row = np.ascontiguousarray(lags.swapaxes(-1, -2)[:, ::-1].transpose(0, 2, 1, 3))
    row = row.reshape(batch, s, nlags * s)
    # Blocks stacked along rows. forward: F_n in rows [0, n s); backward: B_n
    # right-aligned, ending at row (nlags + 1) s. The zero block next to each
    # is the padding of the recursion, so [F_n; 0] and [0; B_n] are views.
    forward = np.zeros((batch, nlags * s, s))
    backward = np.zeros((batch, (nlags + 1) * s, s))
    solution = np.zeros((batch, nlags * s, m))
    forward[:, :s] = np.eye(s)
    backward[:, nlags * s :] = np.eye(s)
    err_f = err_b = lags[:, 0]
    try:
        solution[:, :s] = np.linalg.solve(err_f, rhs[:, 0])
        for n in range(1, nlags):
            row_n = row[:, :, (nlags - 1 - n) * s : (nlags - 1) * s]
            delta_f = row_n @ forward[:, : n * s]
            theta = row_n @ solution[:, : n * s]
            delta_b = delta_f.swapaxes(-1, -2)
            gain_f = np.linalg.solve(err_b, delta_f)
            gain_b = np.linalg.solve(err_f, delta_b)
            f_pad = forward[:, : (n + 1) * s]
            b_pad = backward[:, (nlags - n) * s :]
            update_f = b_pad @ gain_f
            b_pad -= f_pad @ gain_b
            f_pad -= update_f
            err_f, err_b = err_f - delta_b @ gain_f, err_b - delta_f @ gain_b
            step = np.linalg.solve(err_b, rhs[:, n] - theta)
            solution[:, : (n + 1) * s] += b_pad @ step
    except np.linalg.LinAlgError:
        if batch == 1:
            return solution.reshape(rhs.shape), np.zeros(1, dtype=bool)
        # Solve the systems one by one, so one breakdown does not fail the others.
        parts = [block_levinson(lags[i : i + 1], rhs[i : i + 1]) for i in range(batch)]
        return tuple(np.concatenate(part) for part in zip(*parts, strict=True))
    solution = solution.reshape(rhs.shape)
    return solution, np.isfinite(solution).reshape(batch, -1).all(1)


def _backward_error(lags: np.ndarray, solution: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``||T X - Y|| / (||T|| ||X|| + ||Y||)`` (Frobenius norms), per batch item."""
    nlags = lags.shape[-3]
    full = _two_sided(lags)
    # (T X)[p] = sum_q full[q - p] X[q]: a convolution of the flipped lags with X.
    n_fft = scipy.fft.next_fast_len(3 * nlags - 2, real=True)
    kernel_f = scipy.fft.rfft(full[:, ::-1], n_fft, axis=1)
    solution_f = scipy.fft.rfft(solution, n_fft, axis=1)
    product = scipy.fft.irfft(kernel_f @ solution_f, n_fft, axis=1)[:, nlags - 1 : 2 * nlags - 1]
    weights = np.concatenate([np.arange(1, nlags + 1), np.arange(nlags - 1, 0, -1)])
    matrix_norm = np.sqrt(np.einsum("bkij,k->b", full**2, weights))
    return _norm(product - rhs) / (matrix_norm * _norm(solution) + _norm(rhs))


def _norm(x: np.ndarray) -> np.ndarray:
    return np.sqrt((x**2).reshape(len(x), -1).sum(1))


def _two_sided(lags: np.ndarray) -> np.ndarray:
    """Blocks for lags ``-(L-1) .. L-1``: ``lags[-k] = lags[k].T``."""
    return np.concatenate([lags[:, :0:-1].swapaxes(-1, -2), lags], axis=1)


def _solve_dense(lags: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """museval's own solve of one system, in museval's (signal, lag) order:
    ``solve(G + eps * I, D)``, ``lstsq(G, D)`` when that is singular."""
    nlags, s, m = rhs.shape
    full = _two_sided(lags[None])[0]
    index = np.arange(nlags)
    # G[(a, p), (b, q)] = full[q - p][a, b]
    gram = full[index[None, :] - index[:, None] + nlags - 1].transpose(2, 0, 3, 1)
    gram = gram.reshape(s * nlags, s * nlags)
    d = rhs.transpose(1, 0, 2).reshape(s * nlags, m)
    try:
        solution = np.linalg.solve(gram + EPS * np.eye(s * nlags), d)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(gram, d)[0]
    return solution.reshape(s, nlags, m).transpose(1, 0, 2)
