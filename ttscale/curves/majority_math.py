"""Generating-function math of the majority curve: the expected tie-credited majority vote of N
fresh samples under a per-question posterior-predictive urn (Dirichlet classes plus Pitman-Yor new
wrong answers), exactly for finite N, and its N -> infinity limit.

Condition on the correct answer's count j: the other votes are a product of power series truncated
at j (tie credit by Gauss-Legendre in a marker y, new wrong answers by the closed form
(1 - d W(x))^(-beta/d)). No Monte Carlo: the curve is smooth in N and deterministic. The limit
maj@infinity is the probability that the correct answer has the largest posterior share (one-dimensional
quadrature).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import betaln, exp1, gammainc, gammaincc, gammaincinv, gammaln
from scipy.special import gamma as gamma_fn

_TOL = 1e-11
"""A rival (or the new wrong answers) whose chance of reaching j votes at the largest N is below
this is left unconstrained at j (error at most about N * _TOL per question)."""
_MAX_NODES = 8
"""Gauss-Legendre nodes for the tie credit: exact up to 15 answers tied at the top with 2+ votes."""
EXACT_MAX = 95
"""Largest N computed exactly (odd, like the second matching point 47, so the two-answer parity
sawtooth maj@2m = maj@2m-1 does not tilt the tail); beyond it the curve is the limit plus
a/N + b/N^2 through the exact values at N = 95 and 47."""


def _log_coef(alpha, n, logrho):
    """log[(alpha)^(n) / n!] + n log(rho) (alpha > 0)."""
    return gammaln(alpha + n) - gammaln(alpha) - gammaln(n + 1.0) + n * logrho


def _coef(alpha, n, logrho):
    """(alpha)^(n)/n! rho^n, broadcasting; alpha == 0 gives [n == 0]."""
    alpha = np.asarray(alpha, float)
    n = np.asarray(n, float)
    safe = np.where(alpha > 0, alpha, 1.0)
    out = np.exp(_log_coef(safe, n, logrho))
    return np.where(alpha > 0, out, (n == 0).astype(float))


def _bb_survival(alpha, total, nmax):
    """P(X >= j), j = 0..nmax, X ~ BetaBinomial(nmax, alpha, total - alpha); alpha (...,)."""
    alpha = np.asarray(alpha, float)[..., None]
    rest = np.asarray(total, float)[..., None] - alpha
    x = np.arange(nmax + 1, dtype=float)
    safe_a = np.where(alpha > 0, alpha, 1.0)
    safe_b = np.where(rest > 0, rest, 1.0)
    logpmf = (gammaln(nmax + 1.0) - gammaln(x + 1) - gammaln(nmax - x + 1)
              + betaln(x + safe_a, nmax - x + safe_b) - betaln(safe_a, safe_b))
    pmf = np.exp(logpmf)
    pmf = np.where(alpha > 0, np.where(rest > 0, pmf, (x == nmax)), (x == 0))
    surv = np.cumsum(pmf[..., ::-1], axis=-1)[..., ::-1]
    return np.minimum(surv, 1.0)


def _conv(acc, t):
    """Truncated product of power series along the last axis: acc (..., D+1) times t (..., e+1)."""
    e = t.shape[-1] - 1
    if e == 0:
        return acc * t
    pad = np.concatenate([np.zeros(acc.shape[:-1] + (e,)), acc], axis=-1)
    win = sliding_window_view(pad, e + 1, axis=-1)
    return np.einsum("...ni,...i->...n", win, t[..., ::-1])


def _new_wrong_series(beta, d, w, length):
    """Coefficients 0..length-1 of (1 - d W(x))^(-beta/d) (exp(beta W) for d = 0); W = sum_k w_k x^k,
    w (B, K) holding w_1..w_K. Miller's recurrence n f_n = sum_k (d (n-k) + beta k) w_k f_{n-k}:
    every term is nonnegative."""
    B, K = w.shape
    f = np.zeros((B, length))
    f[:, 0] = 1.0
    k = np.arange(1, K + 1, dtype=float)
    bk = beta[:, None] * k * w  # (B, K)
    dw = d * w
    for n in range(1, length):
        m = min(n, K)
        prev = f[:, n - 1 :: -1][:, :m]  # f_{n-1}, ..., f_{n-m}
        coef = dw[:, :m] * (n - k[:m]) + bk[:, :m]
        f[:, n] = np.einsum("bk,bk->b", coef, prev) / n
    return f


def exact_majority(alpha, flags, a_u, alpha_cu, beta, d, ks, tol=_TOL):
    """(Q, K): E[tie-credited majority of N new samples], N in ks, under the posterior predictive
    (Polya urn): Dirichlet classes `alpha` (Q, C) with correct `flags`, no-answer mass a_u (Q,),
    the correct answer while unseen alpha_cu (Q,), and new wrong answers: lumped mass beta (Q,)
    split as a Pitman-Yor(d, beta) Chinese restaurant."""
    alpha = np.asarray(alpha, float)
    flags = np.asarray(flags, bool) & (alpha > 0)
    ks = np.asarray(ks, dtype=np.int64)
    Q = alpha.shape[0]
    out = np.zeros((Q, ks.size))
    nmax = int(ks.max())
    item_q, alpha_c, rivals = _correct_items(alpha, flags, alpha_cu)
    rivals = -np.sort(-rivals, axis=1)
    width = int((rivals > 0).sum(axis=1).max()) if rivals.size else 0
    rivals = rivals[:, :width]
    A = alpha[item_q].sum(axis=1) + a_u[item_q] + alpha_cu[item_q] + beta[item_q]
    au_i, beta_i = a_u[item_q], beta[item_q]
    n_items = item_q.size
    if n_items == 0:
        return out
    logc_max = _log_coef(A, nmax, 0.0)
    logrho = -logc_max / nmax
    log_norm = _log_coef(A[:, None], ks[None, :].astype(float), logrho[:, None])  # (I, K)
    surv_c = _bb_survival(alpha_c, A, nmax)
    surv_r = _bb_survival(rivals, A[:, None], nmax)
    surv_o = _bb_survival(beta_i, A, nmax)
    win = np.zeros((n_items, ks.size))
    lw = np.arange(1, nmax + 1, dtype=float)
    logw = gammaln(1 - d + lw - 1) - gammaln(1 - d) - gammaln(lw + 1)  # (1-d)^(k-1)/k!
    for j in range(1, nmax + 1):
        sel = np.flatnonzero(surv_c[:, j] > tol)
        if sel.size == 0:
            break
        D = nmax - j
        kmask = ks >= j
        if not kmask.any():
            continue
        kk = np.flatnonzero(kmask)
        lr = logrho[sel]
        lc = _log_coef(alpha_c[sel], float(j), lr)  # (m,)
        if 2 * j > D:
            # At most one rival (or one new wrong answer) can reach j among the other N - j <= D
            # votes: the product of truncated series is the full one minus one tail at a time.
            E = A[sel] - alpha_c[sel]
            n_need = ks[kk] - j  # coefficient wanted per N
            tot = _coef(E[:, None], n_need[None, :].astype(float), lr[:, None])  # (m, K)
            L = D - j + 1  # degrees j..D of a tail
            if L >= 1 and width:
                deg = np.arange(L, dtype=float)
                ra = rivals[sel]  # (m, R)
                tails = _coef(ra[:, :, None], (j + deg)[None, None, :], lr[:, None, None])
                tails[:, :, 0] *= 0.5
                g = _coef((E[:, None] - ra)[:, :, None], deg[None, None, :], lr[:, None, None])
                prod = _conv(g, tails).sum(axis=1)  # (m, L): coefficient j + i
                ok = n_need >= j
                tot[:, ok] -= prod[:, n_need[ok] - j]
            if L >= 1:
                b = beta_i[sel]
                deg = np.arange(L, dtype=float)
                kb = j + deg
                wb = np.exp((gammaln(1 - d + kb - 1) - gammaln(1 - d) - gammaln(kb + 1))[None, :] + kb[None, :] * lr[:, None])
                wb[:, 0] *= 0.5
                g = _coef((E + d)[:, None], deg[None, :], lr[:, None])
                prod = b[:, None] * _conv(g, wb)
                ok = n_need >= j
                tot[:, ok] -= prod[:, n_need[ok] - j]
            win[np.ix_(sel, kk)] += np.maximum(tot, 0.0) * np.exp(lc[:, None] - log_norm[sel][:, kk])
            continue
        act_r = surv_r[sel, :, j] > tol if width else np.zeros((sel.size, 0), bool)
        S = int(act_r.sum(axis=1).max()) if width else 0
        act_o = (surv_o[sel, j] > tol) & (beta_i[sel] > 0)
        ties = S + (D // j if act_o.any() else 0)
        ties = min(ties, D // j)
        if j == 1:
            # Every voter has one vote: the y-degree of a term is its number of voters, so one pass
            # at y = 1 and a credit of 1/(1 + voters) per degree are exact.
            free = au_i[sel]
            voters = np.ones((sel.size, D + 1))
            voters[:, 1:] = 0.0
            for s_ in range(width):
                a1 = _coef(rivals[sel, s_], 1.0, lr)
                voters[:, 1:] = voters[:, 1:] + a1[:, None] * voters[:, :-1]
            b = beta_i[sel]
            if np.any(b > 0) and D >= 1:
                w1 = np.exp(lr)[:, None] * np.ones((1, 1))
                h = _new_wrong_series(b, d, w1, D + 1)
                voters = _conv(voters, h)
            voters /= 1.0 + np.arange(D + 1)[None, :]
            tot = _conv(_coef(free[:, None], np.arange(D + 1.0)[None, :], lr[:, None]), voters)
            win[np.ix_(sel, kk)] += tot[:, ks[kk] - j] * np.exp(lc[:, None] - log_norm[sel][:, kk])
            continue
        n_y = max(1, min((ties + 2) // 2, _MAX_NODES))
        x, wy = np.polynomial.legendre.leggauss(n_y)
        y, wy = (x + 1) / 2, wy / 2
        free = au_i[sel] + np.where(act_r, 0.0, rivals[sel]).sum(axis=1) + np.where(act_o, 0.0, beta_i[sel])
        nn = np.arange(D + 1, dtype=float)
        acc = _coef(free[:, None], nn[None, :], lr[:, None])  # (m, D+1)
        acc = np.broadcast_to(acc[:, None, :], (sel.size, n_y, D + 1)).copy()
        e = min(j, D)
        ne = np.arange(e + 1, dtype=float)
        for s in range(S):
            a_s = np.where(act_r[:, s], rivals[sel, s], 0.0)
            t = _coef(a_s[:, None], ne[None, :], lr[:, None])  # (m, e+1)
            t = np.broadcast_to(t[:, None, :], (sel.size, n_y, e + 1)).copy()
            if j <= D:
                t[:, :, j] *= y[None, :]
            acc = _conv(acc, t)
        if act_o.any():
            K = e
            if K >= 1:
                w = np.exp(logw[None, :K] + lw[None, :K] * lr[:, None])  # (m, K)
                w = np.broadcast_to(w[:, None, :], (sel.size, n_y, K)).copy()
                if j <= K:
                    w[:, :, j - 1] *= y[None, :]
                b = np.broadcast_to(np.where(act_o, beta_i[sel], 0.0)[:, None], (sel.size, n_y)).reshape(-1)
                h = _new_wrong_series(b, d, w.reshape(-1, K), D + 1).reshape(sel.size, n_y, D + 1)
                acc = _conv(acc, h)
        tot = np.einsum("myn,y->mn", acc, wy)  # (m, D+1)
        vals = tot[:, ks[kk] - j] * np.exp(lc[:, None] - log_norm[sel][:, kk])
        win[np.ix_(sel, kk)] += vals
    np.add.at(out, item_q, win)
    return out


def _correct_items(alpha: np.ndarray, flags: np.ndarray, alpha_cu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items (question, correct class), the correct answer while unseen being a class too: each item's
    question, the correct class's concentration and its rivals' (the row with the correct class zeroed)."""
    iq, ia = np.nonzero(flags)
    cu_q = np.flatnonzero(alpha_cu > 0)
    item_q = np.concatenate([iq, cu_q])
    alpha_c = np.concatenate([alpha[iq, ia], alpha_cu[cu_q]])
    rivals = alpha[item_q].copy()
    rivals[np.arange(iq.size), ia] = 0.0
    return item_q, alpha_c, rivals


def limit_majority(alpha, flags, a_u, alpha_cu, beta, d, nodes=200):
    """(Q,) maj@infinity: P(the correct answer has the largest probability) under the posterior."""
    alpha = np.asarray(alpha, float)
    flags = np.asarray(flags, bool) & (alpha > 0)
    Q = alpha.shape[0]
    item_q, alpha_c, rivals = _correct_items(alpha, flags, alpha_cu)
    b = beta[item_q]
    x, w = np.polynomial.legendre.leggauss(nodes)
    u, w = (x + 1) / 2, w / 2
    g = gammaincinv(alpha_c[:, None], u[None, :])  # (I, nodes)
    logf = np.zeros_like(g)
    for r in range(rivals.shape[1]):
        a = rivals[:, r][:, None]
        with np.errstate(divide="ignore"):
            logf += np.where(a > 0, np.log(gammainc(np.where(a > 0, a, 1.0), g)), 0.0)
    gs = np.maximum(g, 1e-300)
    if d > 0:
        upper = (gs ** (-d) * np.exp(-gs) - gammaincc(1 - d, gs) * gamma_fn(1 - d)) / d / gamma_fn(1 - d)
    else:
        upper = exp1(gs)
    logf -= b[:, None] * upper
    val = (np.exp(logf) * w).sum(axis=1)
    out = np.zeros(Q)
    np.add.at(out, item_q, val)
    return out
