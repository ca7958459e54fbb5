"""Lab 1: softmax regression and an MLP on MNIST / Fashion-MNIST (hyperparameters: MLPConfig).

The lab's MLP puts a ReLU and a softmax after its last layer and then trains it with
CrossEntropyLoss, which applies log-softmax again: the gradients through two softmaxes and
a ReLU are weak, which is why the lab's accuracy stalls near 89% on Fashion-MNIST.
`faithful: true` keeps that network; the default ends in plain logits.

`group_models` builds the networks' grouped twin, so that a configuration's seeds
(`--repeats`) can train as one computation (`ClassifierSeedBatch`; on a GPU only, see
`Trainer.seed_group`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainables.classify import ClassifierSeedBatch, ClassifierTrainer
from trainables.data import ImageData
from trainables.data import load_images as load_data  # noqa: F401  (the lab's data, for the driver)
from labspec.hparams import MLPConfig
from trainables.seeds import SeedGroup

HIDDEN = (256, 128, 64)


class SoftmaxRegression(nn.Sequential):
    """One linear layer from pixels to class scores."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(nn.Flatten(), nn.Linear(in_features, num_classes))


class MLP(nn.Sequential):
    """BN(in) -> [Linear -> ReLU -> BN] x3 -> Linear, the lab's network.

    With faithful=True the output layer is followed by ReLU and Softmax, as in the lab.
    """

    def __init__(self, in_features: int, num_classes: int, faithful: bool = False, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [nn.Flatten(), nn.BatchNorm1d(in_features)]
        width = in_features
        for hidden in HIDDEN:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.BatchNorm1d(hidden)]
            if dropout and not faithful:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        if faithful:
            layers += [nn.ReLU(), nn.Softmax(dim=1)]
        super().__init__(*layers)


# The grouped twin of the lab's networks. Inside it every seed's activations are a (features,
# batch) matrix, stacked to (N, F, B): each Linear is then one plain batched matmul
# (weights (N, out, in) @ (N, in, B)) and each BatchNorm one batch norm over the (1, N*F, B)
# view, with no copies between layers. (A (B, N, F) layout needs a transposed copy around every
# batch norm: 5 seeds took 1.2x the time of five separate models on a CPU, against 1.0-1.1x
# here; 8,192 MNIST images, 1 thread.)


class GroupedLinear(nn.Module):
    """N `nn.Linear` layers side by side on (N, in, B) -> (N, out, B), one batched matmul.

    Weights stay in nn.Linear's layout, stacked: (N, out, in) and (N, out), so seed k's slice
    of the state_dict is its Linear's.
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(-1), self.weight, x)


class GroupedBatchNorm1d(nn.Module):
    """N `nn.BatchNorm1d(F)` side by side on (N, F, B): one batch norm whose N*F channels are
    each normalised over the batch on their own, i.e. N separate batch norms.

    A (N, F, B) block is normalised as its (1, N*F, B) view; the network's input, which is
    batch-major (a permuted view of the (B, N, F) batch), as its (B, N*F) view: no copy either
    way (an evaluation batch, expanded over the seeds, is copied once in batch-major order).
    """

    def __init__(self, layers: Sequence[nn.BatchNorm1d]) -> None:
        super().__init__()
        first = layers[0]
        self.eps, self.momentum = first.eps, first.momentum
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, torch.stack([getattr(layer, name) for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        if x.is_contiguous():  # a (N, F, B) block
            return self._normalise(x.view(1, -1, x.shape[-1])).view(x.shape)
        batch_major = x.permute(2, 0, 1)  # the network's input: (B, N, F), a view (or expanded, evaluating)
        return self._normalise(batch_major.reshape(len(batch_major), -1)).view(batch_major.shape).permute(1, 2, 0)

    def _normalise(self, flat: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                            self.bias.view(-1), self.training, self.momentum, self.eps)


class GroupedDropout(nn.Module):
    """Dropout on (N, F, B), seed k's mask drawn from `streams[k]` in the (B, F) shape and order
    `nn.Dropout` draws it on a CPU: each seed gets the masks of its single-seed trial."""

    def __init__(self, p: float, streams: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.p, self.streams = p, list(streams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        seeds, features, batch = x.shape
        masks = torch.empty(seeds, batch, features, dtype=x.dtype, device=x.device)
        for mask, stream in zip(masks, self.streams):
            mask.bernoulli_(1 - self.p, generator=stream)
        return x * masks.div_(1 - self.p).transpose(1, 2)


class GroupedSequential(nn.Sequential):
    """The twins of a network's layers, on (B, N, ...) inputs and to (B, N, classes) outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(2).permute(1, 2, 0)).permute(2, 0, 1)


def group_models(models: Sequence[nn.Sequential], streams: Sequence[torch.Generator]) -> GroupedSequential:
    """N `MLP`s (or `SoftmaxRegression`s) as one network on (B, N, ...) inputs.

    Layer i of the result is the twin of layer i of every model, so its state_dict keys and
    parameter order are a single model's, each tensor stacked over the seeds (the leading
    Flatten becomes the input's reshape in `GroupedSequential.forward`).
    """
    layers: list[nn.Module] = []
    for i, same in enumerate(zip(*(model.children() for model in models))):
        first: Any = same[0]
        if isinstance(first, nn.Linear):
            layers.append(GroupedLinear(same))
        elif isinstance(first, nn.BatchNorm1d):
            layers.append(GroupedBatchNorm1d(same))
        elif isinstance(first, nn.Dropout):
            layers.append(GroupedDropout(first.p, streams))
        elif isinstance(first, nn.Flatten) and i == 0 and (first.start_dim, first.end_dim) == (1, -1):
            layers.append(nn.Identity())
        elif isinstance(first, nn.Softmax) and first.dim == 1:  # over the features, dim 1 of (N, F, B) too
            layers.append(nn.Softmax(dim=1))
        elif isinstance(first, nn.ReLU):
            layers.append(nn.ReLU())
        else:
            raise TypeError(f"no grouped twin for layer {i}: {first!r}")
    return GroupedSequential(*layers)


class Trainer(ClassifierTrainer):
    cfg: MLPConfig

    @classmethod
    def seed_group(cls, cfg: Any, data: Any, device: torch.device, seeds: list[int]) -> SeedGroup:
        """The seeds batched (`ClassifierSeedBatch`) on a GPU, one after another on a CPU.

        Why not batched on the CPU too: there the MLP's step is compute-bound (one core's
        matmuls, dropout's serial random numbers and batch norm all grow with N), so batching
        saves nothing: an epoch of 5 seeds batched took 0.97x (the lab's network) and 1.02x
        (the default, with dropout) the time of 5 single-seed epochs (1 thread, MNIST;
        docs/benchmarks.md, "seeds"). One after another, each seed is also bit for bit its
        single-seed trial, where the grouped kernels round differently. On a GPU a batch-256
        MLP step is bound by kernel launches, which batching shares.
        """
        if device.type == "cuda" and len(seeds) > 1:
            return ClassifierSeedBatch(cls, cfg, data, device, seeds)
        return super().seed_group(cfg, data, device, seeds)

    def group_models(self, models: Sequence[nn.Module], streams: Sequence[torch.Generator]) -> nn.Module:
        return group_models(models, streams)  # type: ignore[arg-type]

    def build_model(self, data: ImageData) -> nn.Module:
        in_features = math.prod(data.shape)
        if self.cfg.model == "softmax":
            return SoftmaxRegression(in_features, data.num_classes)
        return MLP(in_features, data.num_classes, faithful=self.cfg.faithful, dropout=self.cfg.dropout)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # The model's outputs are treated as logits by every loss, as the lab's code does
        # (so the faithful network's softmax outputs are softmaxed again).
        if self.cfg.loss == "cross_entropy":
            return F.cross_entropy(outputs, targets)
        if self.cfg.loss == "nll":
            return F.nll_loss(F.log_softmax(outputs, dim=1), targets)
        one_hot = F.one_hot(targets, self.num_classes).to(outputs.dtype)
        return F.mse_loss(F.softmax(outputs, dim=1), one_hot)


report_figures = report_text = sample_images = None  # the parts of the lab contract (labspec.registry.LabModule) this lab leaves out
