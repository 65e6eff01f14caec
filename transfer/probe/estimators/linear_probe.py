"""The linear probe: held-out accuracy of an L2 multinomial logistic regression on the features, with
its seeded stratified split and its L-BFGS fit (which the domain-classifier shift test reuses)."""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch
from torch import Tensor

from transfer.probe.estimators import linalg
from transfer.probe.estimators.inputs import ProbeError, check_inputs
from transfer.probe.estimators.reduction import maybe_reduce


def stratified_split(labels: Tensor, test_fraction: float = 0.25, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Seeded stratified split: (train indices, test indices), each class keeping at least one train sample.

    Every class with at least two samples puts round(test_fraction * n_c) (at least one) of them in the
    test set; single-sample classes stay in training.
    """
    labels = torch.as_tensor(labels).cpu()
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n_test = 0 if idx.numel() < 2 else min(idx.numel() - 1, max(1, round(test_fraction * idx.numel())))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values


def fit_logistic_regression(
    x: Tensor, labels: Tensor, num_classes: int, *, l2: float = 1e-3, max_iter: int = 200
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression by full-batch L-BFGS: weights (D, C) and bias (C,).

    Minimises mean cross-entropy + l2 / 2 |W|^2 (the bias is not penalised) from zeros, so the result
    is deterministic. SciPy's L-BFGS-B steps the (D + 1) x C parameters; the loss and its analytic
    gradient run in NumPy for CPU tensors (the many small steps would mostly wait on torch's thread
    synchronisation) and in torch on x's device otherwise, in x's dtype (at least float32).
    (torch.optim.LBFGS would do too, but its first step imports torch._dynamo, seconds per process.)
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    n, d = x.shape
    targets = linalg.onehot(labels.to(x.device), num_classes, dtype)
    on_cpu = x.device.type == "cpu"
    x_np, targets_np = (x.numpy(), targets.numpy()) if on_cpu else (None, None)

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        if on_cpu:
            theta = params.reshape(d + 1, num_classes).astype(x_np.dtype, copy=False)
            weight, bias = theta[:d], theta[d]
            logits = x_np @ weight + bias
            logits -= logits.max(1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            loss = -(targets_np * log_probs).sum() / n + l2 / 2 * np.square(weight).sum()
            residual = (np.exp(log_probs) - targets_np) / n  # d loss / d logits
            grad = np.concatenate([x_np.T @ residual + l2 * weight, residual.sum(0, keepdims=True)])
            return float(loss), grad.astype(np.float64).ravel()
        theta_t = torch.from_numpy(params).to(device=x.device, dtype=dtype).reshape(d + 1, num_classes)
        weight_t, bias_t = theta_t[:d], theta_t[d]
        log_probs_t = torch.log_softmax(x @ weight_t + bias_t, dim=1)
        loss_t = -(targets * log_probs_t).sum() / n + l2 / 2 * weight_t.square().sum()
        residual_t = (log_probs_t.exp() - targets) / n
        grad_t = torch.cat([x.T @ residual_t + l2 * weight_t, residual_t.sum(0, keepdim=True)])
        return float(loss_t), grad_t.double().cpu().numpy().ravel()

    result = scipy.optimize.minimize(
        loss_and_grad,
        np.zeros((d + 1) * num_classes),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-6},
    )
    theta = torch.from_numpy(result.x).to(device=x.device, dtype=dtype).reshape(d + 1, num_classes)
    return theta[:d].contiguous(), theta[d].contiguous()


def linear_probe_accuracy(
    features: Tensor,
    labels: Tensor,
    *,
    test_fraction: float = 0.25,
    l2: float = 1e-3,
    max_iter: int = 200,
    reduce: bool | None = None,
    max_dim: int = 256,
    seed: int = 0,
) -> float:
    """Held-out accuracy of a quick linear probe, in [0, 1].

    Seeded stratified split (``stratified_split``), features standardised with the training split's
    statistics, multinomial logistic regression with L2 (``fit_logistic_regression``). Features are
    cut to their principal components first when N < 2 D (fitted on all samples, labels unused).
    """
    checked = check_inputs(features, labels)
    f = maybe_reduce(checked.features, reduce, max_dim, seed)
    y = checked.labels
    train, test = stratified_split(y, test_fraction, seed)
    if test.numel() == 0:
        raise ProbeError("too few samples per class to hold out a test split for the linear probe.")
    train, test = train.to(f.device), test.to(f.device)
    x_train, x_test = f[train], f[test]
    mean, std = x_train.mean(0, keepdim=True), x_train.std(0, keepdim=True).clamp_min(1e-12)
    weight, bias = fit_logistic_regression(
        (x_train - mean) / std, y[train], checked.num_classes, l2=l2, max_iter=max_iter
    )
    predictions = (((x_test - mean) / std).to(weight.dtype) @ weight + bias).argmax(1)
    return float((predictions == y[test]).double().mean())
