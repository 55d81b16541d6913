#!/usr/bin/env python3
"""scipy reference for the dctk-laws benchmark.

Fits Chinchilla's law L = E + A/N^alpha + B/D^beta to Epoch AI's 240 points
(D = C/(6N), the 5 highest losses dropped) in the log-sum-exp
parameterisation with the Huber (delta = 1e-3) objective on ln residuals,
running scipy's L-BFGS-B from every point of the 4,500-start grid
(a, b in {0,5,...,25}, e in {-1,-0.5,...,1}, alpha, beta in {0,0.5,...,2}),
as Epoch's replication does, and keeps the best.

Bounds match dctk-laws' Chinchilla law (alpha, beta >= 0; a, b, e free).

--gradient numeric  : no jac, scipy's finite differences (Epoch's notebook).
--gradient analytic : numpy analytic gradient (jac=True): a stronger baseline.

Prints JSON with the best fit, the number of starts within 1e-6 relative
of the best objective, and the wall time. Single process, as Epoch ran it.
"""
import argparse
import csv
import itertools
import json
import time

import numpy as np
from scipy.optimize import minimize

DELTA = 1e-3


def load(path):
    n, c, y = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            n.append(float(row["Model Size"]))
            c.append(float(row["Training FLOP"]))
            y.append(float(row["loss"]))
    n, c, y = map(np.array, (n, c, y))
    d = c / (6.0 * n)
    cut = np.sort(y)[::-1][4]
    keep = y < cut
    return np.log(n[keep]), np.log(d[keep]), np.log(y[keep])


def objective(p, ln_n, ln_d, ln_y):
    a, b, e, alpha, beta = p
    pred = np.log(np.exp(a - alpha * ln_n) + np.exp(b - beta * ln_d) + np.exp(e))
    r = np.abs(pred - ln_y)
    return np.sum(np.where(r <= DELTA, 0.5 * r * r, DELTA * (r - 0.5 * DELTA)))


def objective_and_grad(p, ln_n, ln_d, ln_y):
    a, b, e, alpha, beta = p
    t1 = np.exp(a - alpha * ln_n)
    t2 = np.exp(b - beta * ln_d)
    t3 = np.exp(e)
    s = t1 + t2 + t3
    r = np.log(s) - ln_y
    quad = np.abs(r) <= DELTA
    f = np.sum(np.where(quad, 0.5 * r * r, DELTA * (np.abs(r) - 0.5 * DELTA)))
    psi = np.where(quad, r, DELTA * np.sign(r)) / s
    g = np.array([
        np.sum(psi * t1),
        np.sum(psi * t2),
        np.sum(psi * t3),
        -np.sum(psi * t1 * ln_n),
        -np.sum(psi * t2 * ln_d),
    ])
    return f, g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--gradient", choices=["numeric", "analytic"], default="numeric")
    ap.add_argument("--starts", type=int, default=0, help="use only the first K grid starts (0: all 4,500)")
    args = ap.parse_args()
    ln_n, ln_d, ln_y = load(args.csv)
    ab = np.arange(0, 30, 5)
    es = np.arange(-1, 1.5, 0.5)
    exps = np.arange(0, 2.5, 0.5)
    grid = list(itertools.product(ab, ab, es, exps, exps))
    if args.starts:
        grid = grid[: args.starts]
    bounds = [(None, None)] * 3 + [(0, None)] * 2
    data = (ln_n, ln_d, ln_y)
    t0 = time.perf_counter()
    c0 = time.process_time()
    results = []
    with np.errstate(all="ignore"):
        for x0 in grid:
            if args.gradient == "numeric":
                res = minimize(objective, np.array(x0, float), args=data, method="L-BFGS-B", bounds=bounds)
            else:
                res = minimize(objective_and_grad, np.array(x0, float), args=data, method="L-BFGS-B", jac=True, bounds=bounds)
            results.append(res)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    fs = np.array([r.fun if np.isfinite(r.fun) else np.inf for r in results])
    best = results[int(np.argmin(fs))]
    a, b, e, alpha, beta = best.x
    n_conv = int(np.sum(np.abs(fs - best.fun) <= 1e-6 * abs(best.fun)))
    print(json.dumps({
        "gradient": args.gradient,
        "points": int(len(ln_y)),
        "starts": len(grid),
        "wall_s": wall,
        "cpu_s": cpu,
        "objective": float(best.fun),
        "A": float(np.exp(a)), "B": float(np.exp(b)), "E": float(np.exp(e)),
        "alpha": float(alpha), "beta": float(beta),
        "starts_within_1e-6_of_best": n_conv,
        "evaluations": int(sum(r.nfev for r in results)),
    }, indent=1))


if __name__ == "__main__":
    main()
